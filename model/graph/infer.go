package graph

import (
	"fmt"
	"slices"
)

// Fold's shapes: a dimension is a size (>= 0), dimBatch (the dynamic batch
// size) or dimUnknown (anything else not known statically).
const (
	dimBatch   = -1
	dimUnknown = -2
)

// info is what shape inference knows about a value.
type info struct {
	dt     DType
	shape  []int64 // valid when ranked
	ranked bool
}

func ranked(dt DType, shape []int64) info { return info{dt: dt, shape: shape, ranked: true} }

// static reports whether every dimension is known.
func (i info) static() bool {
	return i.ranked && !slices.ContainsFunc(i.shape, func(d int64) bool { return d < 0 })
}

// elementwiseOps keep their first input's shape and type.
var elementwiseOps = map[string]bool{
	"Relu": true, "LeakyRelu": true, "PRelu": true, "Clip": true, "Sigmoid": true,
	"HardSigmoid": true, "HardSwish": true, "Tanh": true, "Softmax": true,
	"LogSoftmax": true, "Identity": true, "Dropout": true, "BatchNormalization": true,
	"Elu": true, "Selu": true, "Softplus": true, "Erf": true, "Exp": true, "Log": true,
	"Neg": true, "Abs": true, "Sqrt": true, "Reciprocal": true, "Floor": true, "Ceil": true,
	"Not": true, "Sign": true, "Round": true, "LRN": true, "InstanceNormalization": true,
}

// broadcastOps broadcast their inputs (numpy rules).
var broadcastOps = map[string]bool{
	"Add": true, "Sub": true, "Mul": true, "Div": true, "Pow": true, "Max": true,
	"Min": true, "Sum": true, "Mean": true, "Equal": true, "Less": true, "Greater": true,
	"And": true, "Or": true, "Where": true,
}

// broadcastDims combines two dimensions under broadcasting.
func broadcastDims(a, b int64) (int64, error) {
	switch {
	case a == b || b == 1:
		return a, nil
	case a == 1:
		return b, nil
	case a >= 0 && b >= 0:
		return 0, fmt.Errorf("dimensions %d and %d do not broadcast", a, b)
	case a >= 0:
		return a, nil // b dynamic: must be a at run time
	case b >= 0:
		return b, nil
	}
	return dimUnknown, nil // batch and unknown
}

// inferBroadcast returns the broadcast shape of ranked inputs.
func inferBroadcast(ins []info) ([]int64, bool, error) {
	r := 0
	for _, in := range ins {
		if !in.ranked {
			return nil, false, nil
		}
		r = max(r, len(in.shape))
	}
	out := make([]int64, r)
	for i := range out {
		out[i] = 1
	}
	for _, in := range ins {
		for i, d := range in.shape {
			j := r - len(in.shape) + i
			var err error
			if out[j], err = broadcastDims(out[j], d); err != nil {
				return nil, false, err
			}
		}
	}
	return out, true, nil
}

// mulDims multiplies dimensions: static products stay static, the batch times 1
// stays the batch, anything else is unknown.
func mulDims(dims []int64) int64 {
	p, batches := int64(1), 0
	for _, d := range dims {
		switch {
		case d == dimBatch:
			batches++
		case d < 0:
			return dimUnknown
		case d != 0 && p > maxElems/d:
			return dimUnknown
		default:
			p *= d
		}
	}
	switch {
	case batches == 0:
		return p
	case p == 0:
		return 0
	case batches == 1 && p == 1:
		return dimBatch
	}
	return dimUnknown
}

// infer computes the types and shapes of n's outputs from its inputs' (consts
// holds the constant inputs, nil elsewhere). Unknown ops give unranked outputs.
func infer(n *Node, ins []info, consts []*Tensor) ([]info, error) {
	out := make([]info, len(n.Outputs))
	in := func(i int) info {
		if i < len(ins) {
			return ins[i]
		}
		return info{}
	}
	cst := func(i int) *Tensor {
		if i < len(consts) {
			return consts[i]
		}
		return nil
	}
	x := in(0)
	if len(out) > 0 {
		out[0].dt = x.dt
	}
	if n.Domain != "" || len(out) == 0 {
		return out, nil
	}
	set := func(shape []int64) ([]info, error) {
		for _, d := range shape {
			if d < dimUnknown {
				return nil, fmt.Errorf("inferred shape %v", shape)
			}
		}
		out[0].shape, out[0].ranked = shape, true
		return out, nil
	}
	switch {
	case elementwiseOps[n.Op]:
		if n.Op == "Dropout" && len(out) > 1 {
			out[1] = info{dt: Bool, shape: x.shape, ranked: x.ranked}
		}
		if !x.ranked {
			return out, nil
		}
		return set(slices.Clone(x.shape))
	case broadcastOps[n.Op]:
		if n.Op == "Where" {
			out[0].dt = in(1).dt
		}
		if n.Op == "Equal" || n.Op == "Less" || n.Op == "Greater" {
			out[0].dt = Bool
		}
		shape, ok, err := inferBroadcast(ins)
		if err != nil || !ok {
			return out, err
		}
		return set(shape)
	}
	if !x.ranked && n.Op != "Constant" && n.Op != "ConstantOfShape" && n.Op != "Range" {
		return out, nil
	}
	switch n.Op {
	case "Conv", "MaxPool", "AveragePool":
		return inferConvPool(n, x, in(1), out)
	case "GlobalAveragePool", "GlobalMaxPool":
		if len(x.shape) < 2 {
			return nil, fmt.Errorf("input of rank %d", len(x.shape))
		}
		shape := slices.Clone(x.shape)
		for i := 2; i < len(shape); i++ {
			shape[i] = 1
		}
		return set(shape)
	case "Gemm":
		return inferGemm(n, x, in(1), out)
	case "MatMul":
		return inferMatMul(x, in(1), out)
	case "Flatten":
		axis, err := n.AttrInt("axis", 1)
		if err != nil {
			return nil, err
		}
		ax, err := normAxis(axis, len(x.shape)+1)
		if err != nil {
			return nil, err
		}
		return set([]int64{mulDims(x.shape[:ax]), mulDims(x.shape[ax:])})
	case "Transpose":
		perm, err := n.AttrInts("perm", nil)
		if err != nil {
			return nil, err
		}
		if perm == nil {
			for i := len(x.shape) - 1; i >= 0; i-- {
				perm = append(perm, int64(i))
			}
		}
		if len(perm) != len(x.shape) {
			return nil, fmt.Errorf("perm %v for rank %d", perm, len(x.shape))
		}
		shape := make([]int64, len(perm))
		for i, p := range perm {
			if p < 0 || p >= int64(len(x.shape)) {
				return nil, fmt.Errorf("perm %v", perm)
			}
			shape[i] = x.shape[p]
		}
		return set(shape)
	case "Concat":
		return inferConcat(n, ins, out)
	case "Split":
		return inferSplit(n, x, cst(1), out)
	case "Slice":
		return inferSlice(n, x, consts, out)
	case "Pad":
		return inferPad(n, x, cst(1), out)
	case "ReduceMean", "ReduceMax", "ReduceSum", "ReduceMin":
		return inferReduce(n, x, consts, out)
	case "Squeeze", "Unsqueeze":
		axes, err := axesOf(n, consts)
		if err != nil || (axes == nil && len(n.Inputs) > 1 && n.Inputs[1] != "") {
			return out, err // axes computed at run time
		}
		var shape []int64
		if n.Op == "Squeeze" {
			shape, err = squeezeShape(x.shape, axes)
		} else {
			shape, err = unsqueezeShape(x.shape, axes)
		}
		if err != nil {
			return nil, err
		}
		return set(shape)
	case "Gather":
		return inferGather(n, x, in(1), out)
	case "Reshape":
		t := cst(1)
		if t == nil {
			return out, nil
		}
		target, err := t.Int64s()
		if err != nil {
			return nil, err
		}
		allowZero, err := n.AttrInt("allowzero", 0)
		if err != nil {
			return nil, err
		}
		shape, err := reshapeDims(x, target, allowZero != 0)
		if err != nil {
			return nil, err
		}
		return set(shape)
	case "Shape":
		out[0].dt = Int64
		return set([]int64{int64(len(x.shape))})
	case "Cast":
		to, err := n.AttrInt("to", 0)
		if err != nil {
			return nil, err
		}
		out[0].dt = DType(to)
		return set(slices.Clone(x.shape))
	case "Constant":
		t, err := constantValue(n)
		if err != nil {
			return out, nil
		}
		out[0].dt = t.DType
		return set(slices.Clone(t.Shape))
	}
	return out, nil
}
