package graph

import (
	"fmt"
	"math"
)

// foldable lists the ops Fold evaluates when all their inputs are constant.
var foldable = map[string]bool{
	"Constant": true, "ConstantOfShape": true, "Gather": true, "Unsqueeze": true,
	"Squeeze": true, "Concat": true, "Slice": true, "Reshape": true, "Flatten": true,
	"Cast": true, "Identity": true, "Dropout": true, "Transpose": true, "Div": true,
	"Mul": true, "Add": true, "Sub": true, "Range": true, "Equal": true, "Where": true,
}

// layoutOps are the foldable ops that only move elements: Fold also evaluates
// them on shape vectors holding the (unknown) batch size.
var layoutOps = map[string]bool{
	"Gather": true, "Unsqueeze": true, "Squeeze": true, "Concat": true, "Slice": true,
	"Identity": true, "Cast": true,
}

// ints returns a constant input's elements as int64 (nil for an omitted input).
func ints(t *Tensor) ([]int64, error) {
	if t == nil {
		return nil, nil
	}
	return t.Int64s()
}

// axesOf returns the axes of Squeeze/Unsqueeze/ReduceMean-style ops: input 1 when
// present (opset 13+), else the "axes" attribute (nil when neither).
func axesOf(n *Node, in []*Tensor) ([]int64, error) {
	if len(in) > 1 && in[1] != nil {
		return in[1].Int64s()
	}
	return n.AttrInts("axes", nil)
}

// evalNode computes the outputs of n from its constant inputs (nil where an
// optional input is omitted). It returns errNoFold for what it does not handle.
func evalNode(n *Node, in []*Tensor) ([]*Tensor, error) {
	arg := func(i int) *Tensor {
		if i < len(in) {
			return in[i]
		}
		return nil
	}
	need := func(k int) error {
		for i := 0; i < k; i++ {
			if arg(i) == nil {
				return fmt.Errorf("input %d is missing", i)
			}
		}
		return nil
	}
	one := func(t *Tensor, err error) ([]*Tensor, error) {
		if err != nil {
			return nil, err
		}
		return []*Tensor{t}, nil
	}
	if !foldable[n.Op] || n.Domain != "" {
		return nil, errNoFold
	}
	if n.Op != "Constant" && n.Op != "Range" && n.Op != "Where" {
		if err := need(1); err != nil {
			return nil, err
		}
	}
	x := arg(0)
	switch n.Op {
	case "Constant":
		return one(constantValue(n))
	case "Identity":
		return one(x, nil)
	case "Dropout":
		if len(n.Outputs) > 1 && n.Outputs[1] != "" {
			return nil, errNoFold // the mask is wanted
		}
		if t := arg(2); t != nil {
			if v, err := t.Int64s(); err != nil || len(v) != 1 || v[0] != 0 {
				return nil, errNoFold // training mode
			}
		}
		return one(x, nil)
	case "ConstantOfShape":
		v, err := n.AttrTensor("value")
		if err != nil {
			return nil, err
		}
		return one(constantOfShape(x, v))
	case "Gather":
		if err := need(2); err != nil {
			return nil, err
		}
		axis, err := n.AttrInt("axis", 0)
		if err != nil {
			return nil, err
		}
		return one(gather(x, arg(1), axis))
	case "Unsqueeze":
		axes, err := axesOf(n, in)
		if err != nil {
			return nil, err
		}
		shape, err := unsqueezeShape(x.Shape, axes)
		if err != nil {
			return nil, err
		}
		return one(reshaped(x, shape))
	case "Squeeze":
		axes, err := axesOf(n, in)
		if err != nil {
			return nil, err
		}
		shape, err := squeezeShape(x.Shape, axes)
		if err != nil {
			return nil, err
		}
		return one(reshaped(x, shape))
	case "Concat":
		axis, err := n.AttrInt("axis", math.MinInt64)
		if err != nil {
			return nil, err
		}
		if axis == math.MinInt64 {
			return nil, fmt.Errorf("Concat without an axis")
		}
		var ts []*Tensor
		for _, t := range in {
			if t != nil {
				ts = append(ts, t)
			}
		}
		return one(concat(ts, axis))
	case "Slice":
		starts, ends, axes, steps, err := sliceArgs(n, in)
		if err != nil {
			return nil, err
		}
		return one(slice(x, starts, ends, axes, steps))
	case "Reshape":
		if err := need(2); err != nil {
			return nil, err
		}
		target, err := arg(1).Int64s()
		if err != nil {
			return nil, err
		}
		allowZero, err := n.AttrInt("allowzero", 0)
		if err != nil {
			return nil, err
		}
		shape, err := reshapeStatic(x.Shape, target, allowZero != 0)
		if err != nil {
			return nil, err
		}
		return one(reshaped(x, shape))
	case "Flatten":
		axis, err := n.AttrInt("axis", 1)
		if err != nil {
			return nil, err
		}
		ax, err := normAxis(axis, len(x.Shape)+1)
		if err != nil {
			return nil, err
		}
		return one(reshaped(x, []int64{prod(x.Shape[:ax]), prod(x.Shape[ax:])}))
	case "Cast":
		to, err := n.AttrInt("to", 0)
		if err != nil {
			return nil, err
		}
		return one(cast(x, DType(to)))
	case "Transpose":
		perm, err := n.AttrInts("perm", nil)
		if err != nil {
			return nil, err
		}
		return one(transpose(x, perm))
	case "Add", "Sub", "Mul", "Div", "Equal":
		if err := need(2); err != nil {
			return nil, err
		}
		return one(elementwise(n.Op, x, arg(1)))
	case "Where":
		if err := need(3); err != nil {
			return nil, err
		}
		return one(where(x, arg(1), arg(2)))
	case "Range":
		if err := need(3); err != nil {
			return nil, err
		}
		return one(rangeOp(x, arg(1), arg(2)))
	}
	return nil, errNoFold
}

// constantValue returns a Constant node's value.
func constantValue(n *Node) (*Tensor, error) {
	for name, a := range n.Attrs {
		switch name {
		case "value":
			return n.AttrTensor(name)
		case "value_float":
			return FromFloat32s("", nil, []float32{a.Float})
		case "value_floats":
			return FromFloat32s("", []int64{int64(len(a.Floats))}, a.Floats)
		case "value_int":
			return FromInt64s("", nil, []int64{a.Int})
		case "value_ints":
			return FromInt64s("", []int64{int64(len(a.Ints))}, a.Ints)
		}
	}
	return nil, errNoFold // value_string(s), sparse_value
}

// sliceArgs returns Slice's starts, ends, axes and steps: from inputs 1-4 (opset
// 10+) or from attributes (opset 1-9).
func sliceArgs(n *Node, in []*Tensor) (starts, ends, axes, steps []int64, err error) {
	if len(n.Inputs) <= 1 {
		if starts, err = n.AttrInts("starts", nil); err == nil {
			if ends, err = n.AttrInts("ends", nil); err == nil {
				axes, err = n.AttrInts("axes", nil)
			}
		}
		return
	}
	for i, dst := range []*[]int64{&starts, &ends, &axes, &steps} {
		if i+1 < len(in) {
			if *dst, err = ints(in[i+1]); err != nil {
				return
			}
		}
	}
	if starts == nil || ends == nil {
		err = fmt.Errorf("Slice without starts or ends")
	}
	return
}

// unsqueezeShape inserts 1s at axes (of the output's rank).
func unsqueezeShape(shape, axes []int64) ([]int64, error) {
	r := len(shape) + len(axes)
	ones := make([]bool, r)
	for _, a := range axes {
		ax, err := normAxis(a, r)
		if err != nil {
			return nil, err
		}
		if ones[ax] {
			return nil, fmt.Errorf("Unsqueeze axis %d repeated", a)
		}
		ones[ax] = true
	}
	out := make([]int64, 0, r)
	k := 0
	for _, one := range ones {
		if one {
			out = append(out, 1)
		} else {
			out = append(out, shape[k])
			k++
		}
	}
	return out, nil
}

// squeezeShape removes the axes (all dimensions of size 1 when axes is empty).
// Dimensions may be dynamic (negative); a squeezed one must be 1.
func squeezeShape(shape, axes []int64) ([]int64, error) {
	drop := make([]bool, len(shape))
	for _, a := range axes {
		ax, err := normAxis(a, len(shape))
		if err != nil {
			return nil, err
		}
		if shape[ax] != 1 {
			return nil, fmt.Errorf("Squeeze axis %d of shape %v is not 1", a, shape)
		}
		drop[ax] = true
	}
	out := []int64{}
	for i, d := range shape {
		if len(axes) == 0 && d == 1 || drop[i] {
			continue
		}
		out = append(out, d)
	}
	return out, nil
}

// reshapeStatic resolves a Reshape target (0 copies the input dimension unless
// allowZero, -1 is inferred) for a static input shape.
func reshapeStatic(in, target []int64, allowZero bool) ([]int64, error) {
	out := make([]int64, len(target))
	infer := -1
	known := int64(1)
	for i, d := range target {
		switch {
		case d == 0 && !allowZero:
			if i >= len(in) {
				return nil, fmt.Errorf("Reshape target %v copies dimension %d of %v", target, i, in)
			}
			out[i] = in[i]
		case d == -1:
			if infer >= 0 {
				return nil, fmt.Errorf("Reshape target %v has two -1", target)
			}
			infer = i
			continue
		case d < -1:
			return nil, fmt.Errorf("Reshape target %v", target)
		default:
			out[i] = d
		}
		if out[i] != 0 && known > maxElems/out[i] {
			return nil, fmt.Errorf("Reshape target %v too large", target)
		}
		known *= out[i]
	}
	total, err := NumElems(in)
	if err != nil {
		return nil, err
	}
	if infer >= 0 {
		if known == 0 || total%known != 0 {
			return nil, fmt.Errorf("cannot reshape %v to %v", in, target)
		}
		out[infer] = total / known
	} else if known != total {
		return nil, fmt.Errorf("cannot reshape %v to %v", in, target)
	}
	return out, nil
}
