package graph

import (
	"fmt"
	"math"
	"slices"
)

func inferSlice(n *Node, x info, consts []*Tensor, out []info) ([]info, error) {
	for i := 1; i < len(n.Inputs); i++ {
		if n.Inputs[i] != "" && (i >= len(consts) || consts[i] == nil) {
			return out, nil // bounds computed at run time
		}
	}
	starts, ends, axes, steps, err := sliceArgs(n, consts)
	if err != nil {
		return nil, err
	}
	m, err := sliceAxes(len(x.shape), starts, ends, axes, steps)
	if err != nil {
		return nil, err
	}
	shape := slices.Clone(x.shape)
	for a, s := range m {
		d := x.shape[a]
		switch {
		case d >= 0:
			shape[a] = sliceLen(d, s[0], s[1], s[2])
		case s[2] == 1 && s[0] == 0 && s[1] >= math.MaxInt32:
			// the whole dynamic dimension
		default:
			shape[a] = dimUnknown
		}
	}
	out[0].shape, out[0].ranked = shape, true
	return out, nil
}

// padsOf returns a Pad node's pads: input 1 (opset 11+) or the "pads" attribute.
func padsOf(n *Node, padsIn *Tensor) ([]int64, bool, error) {
	if padsIn != nil {
		p, err := padsIn.Int64s()
		return p, true, err
	}
	if len(n.Inputs) > 1 && n.Inputs[1] != "" {
		return nil, false, nil // computed at run time
	}
	p, err := n.AttrInts("pads", nil)
	return p, p != nil, err
}

func inferPad(n *Node, x info, padsIn *Tensor, out []info) ([]info, error) {
	pads, ok, err := padsOf(n, padsIn)
	if err != nil || !ok {
		return out, err
	}
	r := len(x.shape)
	if len(pads) != 2*r {
		return nil, fmt.Errorf("%d pads for rank %d", len(pads), r)
	}
	shape := slices.Clone(x.shape)
	for i, d := range x.shape {
		pb, pe := pads[i], pads[i+r]
		if pb < -maxAttr || pb > maxAttr || pe < -maxAttr || pe > maxAttr {
			return nil, fmt.Errorf("pads %v out of range", pads)
		}
		switch {
		case pb == 0 && pe == 0:
		case d >= 0:
			if shape[i] = d + pb + pe; shape[i] < 0 {
				return nil, fmt.Errorf("pads %v make dimension %d negative", pads, i)
			}
		default:
			shape[i] = dimUnknown
		}
	}
	out[0].shape, out[0].ranked = shape, true
	return out, nil
}

func inferReduce(n *Node, x info, consts []*Tensor, out []info) ([]info, error) {
	if len(n.Inputs) > 1 && n.Inputs[1] != "" && (len(consts) < 2 || consts[1] == nil) {
		return out, nil
	}
	axes, err := axesOf(n, consts)
	if err != nil {
		return nil, err
	}
	keep, err := n.AttrInt("keepdims", 1)
	if err != nil {
		return nil, err
	}
	noop, err := n.AttrInt("noop_with_empty_axes", 0)
	if err != nil {
		return nil, err
	}
	if len(axes) == 0 && noop != 0 {
		out[0].shape, out[0].ranked = slices.Clone(x.shape), true
		return out, nil
	}
	reduce := make([]bool, len(x.shape))
	for _, a := range axes {
		ax, err := normAxis(a, len(x.shape))
		if err != nil {
			return nil, err
		}
		reduce[ax] = true
	}
	shape := []int64{}
	for i, d := range x.shape {
		switch {
		case len(axes) > 0 && !reduce[i]:
			shape = append(shape, d)
		case keep != 0:
			shape = append(shape, 1)
		}
	}
	out[0].shape, out[0].ranked = shape, true
	return out, nil
}

func inferGather(n *Node, x, idx info, out []info) ([]info, error) {
	if !idx.ranked {
		return out, nil
	}
	axis, err := n.AttrInt("axis", 0)
	if err != nil {
		return nil, err
	}
	ax, err := normAxis(axis, len(x.shape))
	if err != nil {
		return nil, err
	}
	shape := append(append(append([]int64{}, x.shape[:ax]...), idx.shape...), x.shape[ax+1:]...)
	out[0].shape, out[0].ranked = shape, true
	return out, nil
}
