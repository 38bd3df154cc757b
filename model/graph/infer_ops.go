package graph

import (
	"fmt"
	"slices"
)

// maxAttr bounds size-like attributes (kernel, strides, pads, dilations) so that
// shape arithmetic cannot overflow.
const maxAttr = 1 << 32

// intsAttr returns the INTS attribute name with n entries (def when absent, nil
// def meaning fill with fill), each within [lo, maxAttr].
func intsAttr(node *Node, name string, n int, fill, lo int64) ([]int64, error) {
	v, err := node.AttrInts(name, nil)
	if err != nil {
		return nil, err
	}
	if v == nil {
		v = make([]int64, n)
		for i := range v {
			v[i] = fill
		}
	}
	return v, checkInts(node, name, v, n, lo)
}

// checkInts checks that v has n values within [lo, maxAttr].
func checkInts(node *Node, name string, v []int64, n int, lo int64) error {
	if len(v) != n {
		return fmt.Errorf("%s: attribute %q has %d values, want %d", node.Ref(), name, len(v), n)
	}
	for _, x := range v {
		if x < lo || x > maxAttr {
			return fmt.Errorf("%s: attribute %q: %v out of range", node.Ref(), name, v)
		}
	}
	return nil
}

// ConvGeometry is the spatial geometry of a Conv or pooling node with its
// defaults filled in: Pads holds the begin pads of every spatial axis then the
// end pads (ONNX order), resolved from auto_pad when the input size is known.
type ConvGeometry struct {
	AutoPad   string
	Kernel    []int64
	Strides   []int64
	Dilations []int64
	Pads      []int64
	CeilMode  bool
}

// Geometry returns the geometry of a Conv, MaxPool or AveragePool node with
// spatial rank sr; kernel is the weight's spatial shape for a Conv without a
// kernel_shape attribute.
func (n *Node) Geometry(sr int, kernel []int64) (ConvGeometry, error) {
	var g ConvGeometry
	var err error
	if g.AutoPad, err = n.AttrString("auto_pad", "NOTSET"); err != nil {
		return g, err
	}
	if k, err := n.AttrInts("kernel_shape", nil); err != nil {
		return g, err
	} else if k != nil {
		kernel = k
	}
	if kernel == nil {
		return g, fmt.Errorf("%s: no kernel_shape", n.Ref())
	}
	if err = checkInts(n, "kernel_shape", kernel, sr, 1); err != nil {
		return g, err
	}
	g.Kernel = kernel
	if g.Strides, err = intsAttr(n, "strides", sr, 1, 1); err != nil {
		return g, err
	}
	if g.Dilations, err = intsAttr(n, "dilations", sr, 1, 1); err != nil {
		return g, err
	}
	if g.Pads, err = intsAttr(n, "pads", 2*sr, 0, 0); err != nil {
		return g, err
	}
	ceil, err := n.AttrInt("ceil_mode", 0)
	g.CeilMode = ceil != 0
	switch g.AutoPad {
	case "NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER", "":
	default:
		return g, fmt.Errorf("%s: auto_pad %q", n.Ref(), g.AutoPad)
	}
	return g, err
}

// OutSize returns the output size of spatial axis i for an input of size in
// (static), resolving auto_pad into g.Pads.
func (g *ConvGeometry) OutSize(i int, in int64) (int64, error) {
	sr := len(g.Kernel)
	k := (g.Kernel[i]-1)*g.Dilations[i] + 1
	s := g.Strides[i]
	switch g.AutoPad {
	case "SAME_UPPER", "SAME_LOWER":
		out := (in + s - 1) / s
		total := max((out-1)*s+k-in, 0)
		small, big := total/2, total-total/2
		if g.AutoPad == "SAME_UPPER" {
			g.Pads[i], g.Pads[i+sr] = small, big
		} else {
			g.Pads[i], g.Pads[i+sr] = big, small
		}
		return out, nil
	case "VALID":
		g.Pads[i], g.Pads[i+sr] = 0, 0
	}
	span := in + g.Pads[i] + g.Pads[i+sr] - k
	if span < 0 {
		return 0, fmt.Errorf("kernel %d (dilated) larger than padded input %d", k, in+g.Pads[i]+g.Pads[i+sr])
	}
	out := span/s + 1
	if g.CeilMode && span%s != 0 {
		out++
		if (out-1)*s >= in+g.Pads[i] { // the last window would start in the end padding
			out--
		}
	}
	return out, nil
}

func inferConvPool(n *Node, x, w info, out []info) ([]info, error) {
	if len(x.shape) < 3 {
		return nil, fmt.Errorf("input of rank %d", len(x.shape))
	}
	sr := len(x.shape) - 2
	var kernel []int64
	if n.Op == "Conv" && w.ranked && len(w.shape) == sr+2 {
		kernel = w.shape[2:]
	}
	geo, err := n.Geometry(sr, kernel)
	if err != nil {
		return nil, err
	}
	shape := slices.Clone(x.shape)
	if n.Op == "Conv" {
		shape[1] = dimUnknown
		if w.ranked && len(w.shape) > 0 {
			shape[1] = w.shape[0]
		}
	}
	for i := 0; i < sr; i++ {
		if x.shape[i+2] < 0 {
			shape[i+2] = dimUnknown
			continue
		}
		if shape[i+2], err = geo.OutSize(i, x.shape[i+2]); err != nil {
			return nil, fmt.Errorf("%s: %w", n.Ref(), err)
		}
	}
	out[0].shape, out[0].ranked = shape, true
	if n.Op == "MaxPool" && len(out) > 1 {
		out[1] = info{dt: Int64, shape: shape, ranked: true}
	}
	return out, nil
}

func inferGemm(n *Node, a, b info, out []info) ([]info, error) {
	if !b.ranked {
		return out, nil
	}
	if len(a.shape) != 2 || len(b.shape) != 2 {
		return nil, fmt.Errorf("Gemm of ranks %d and %d", len(a.shape), len(b.shape))
	}
	g, err := n.Gemm()
	if err != nil {
		return nil, err
	}
	m, nn := a.shape[0], b.shape[1]
	if g.TransA {
		m = a.shape[1]
	}
	if g.TransB {
		nn = b.shape[0]
	}
	out[0].shape, out[0].ranked = []int64{m, nn}, true
	return out, nil
}

func inferMatMul(a, b info, out []info) ([]info, error) {
	if !b.ranked || len(a.shape) == 0 || len(b.shape) == 0 {
		return out, nil
	}
	as, bs := a.shape, b.shape
	if len(as) == 1 {
		as = []int64{1, as[0]}
	}
	if len(bs) == 1 {
		bs = []int64{bs[0], 1}
	}
	batch, ok, err := inferBroadcast([]info{{shape: as[:len(as)-2], ranked: true}, {shape: bs[:len(bs)-2], ranked: true}})
	if err != nil || !ok {
		return out, err
	}
	shape := batch
	if len(a.shape) > 1 {
		shape = append(shape, as[len(as)-2])
	}
	if len(b.shape) > 1 {
		shape = append(shape, bs[len(bs)-1])
	}
	out[0].shape, out[0].ranked = shape, true
	return out, nil
}

func inferConcat(n *Node, ins []info, out []info) ([]info, error) {
	axis, err := n.AttrInt("axis", 0)
	if err != nil {
		return nil, err
	}
	var shape []int64
	var ax int
	for _, in := range ins {
		if !in.ranked {
			return out, nil
		}
		if shape == nil {
			if ax, err = normAxis(axis, len(in.shape)); err != nil {
				return nil, err
			}
			shape = slices.Clone(in.shape)
			continue
		}
		if len(in.shape) != len(shape) {
			return nil, fmt.Errorf("Concat of ranks %d and %d", len(shape), len(in.shape))
		}
		for i, d := range in.shape {
			switch {
			case i == ax && shape[i] >= 0 && d >= 0:
				shape[i] += d
			case i == ax:
				shape[i] = dimUnknown
			case shape[i] < 0 && d >= 0:
				shape[i] = d
			}
		}
	}
	if shape == nil {
		return out, nil
	}
	out[0].shape, out[0].ranked = shape, true
	return out, nil
}

func inferSplit(n *Node, x info, splitIn *Tensor, out []info) ([]info, error) {
	axis, err := n.AttrInt("axis", 0)
	if err != nil {
		return nil, err
	}
	ax, err := normAxis(axis, len(x.shape))
	if err != nil {
		return nil, err
	}
	split, err := n.AttrInts("split", nil)
	if err != nil {
		return nil, err
	}
	if splitIn != nil {
		if split, err = splitIn.Int64s(); err != nil {
			return nil, err
		}
	} else if len(n.Inputs) > 1 && n.Inputs[1] != "" {
		return out, nil // sizes computed at run time
	}
	d := x.shape[ax]
	if split == nil && d >= 0 {
		if d%int64(len(out)) != 0 {
			return nil, fmt.Errorf("Split of %d into %d equal parts", d, len(out))
		}
		for range out {
			split = append(split, d/int64(len(out)))
		}
	}
	if split != nil && len(split) != len(out) {
		return nil, fmt.Errorf("Split sizes %v for %d outputs", split, len(out))
	}
	for i := range out {
		shape := slices.Clone(x.shape)
		shape[ax] = dimUnknown
		if split != nil {
			if split[i] < 0 || split[i] > maxElems {
				return nil, fmt.Errorf("Split sizes %v", split)
			}
			shape[ax] = split[i]
		}
		out[i] = info{dt: x.dt, shape: shape, ranked: true}
	}
	return out, nil
}
