package model

import (
	"fmt"
	"math"
	"math/big"
	"slices"
	"strconv"

	"github.com/faultline/faultline/model/graph"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// opFunc computes a node's outputs from its inputs (in the node's input order,
// nil for an omitted optional input). The inputs are borrowed: an op never drops
// them, and it returns one of them only when own allows it to work in place on
// in[0] (then it returns in[0] itself).
type opFunc func(r *pass, in []*ts.Tensor, own bool) ([]*ts.Tensor, error)

// compiled is what compiling one node gives: its function and how its outputs
// relate to its first input.
type compiled struct {
	run opFunc
	// alias says an output may share memory with in[0] (a view: Reshape,
	// Transpose, Slice, ...), so it is writable only when in[0] was.
	alias bool
	// inPlace says run works in place on in[0] when own is set.
	inPlace bool
}

// one wraps a single-output function.
func one(f func(r *pass, in []*ts.Tensor, own bool) (*ts.Tensor, error)) opFunc {
	return func(r *pass, in []*ts.Tensor, own bool) ([]*ts.Tensor, error) {
		y, err := f(r, in, own)
		if err != nil {
			return nil, err
		}
		return []*ts.Tensor{y}, nil
	}
}

// fresh compiles an op whose output is newly allocated.
func fresh(f func(r *pass, in []*ts.Tensor) (*ts.Tensor, error)) compiled {
	return compiled{run: one(func(r *pass, in []*ts.Tensor, _ bool) (*ts.Tensor, error) { return f(r, in) })}
}

// view compiles an op whose output may alias its first input.
func view(f func(r *pass, in []*ts.Tensor) (*ts.Tensor, error)) compiled {
	c := fresh(f)
	c.alias = true
	return c
}

// compileTimeInputs lists, per op, the inputs that must be constant and are read
// when the node is compiled (shapes, axes, pads, bounds) rather than passed to
// libtorch.
var compileTimeInputs = map[string][]int{
	"Reshape": {1}, "Clip": {1, 2}, "Pad": {1, 2, 3}, "Split": {1}, "Slice": {1, 2, 3, 4},
	"Squeeze": {1}, "Unsqueeze": {1}, "ReduceMean": {1}, "Dropout": {1, 2}, "Gather": {1},
}

// isCompileTimeInput reports whether input i of op is read at compile time.
func isCompileTimeInput(op string, i int) bool { return slices.Contains(compileTimeInputs[op], i) }

// attrFloat64 returns a FLOAT attribute as the float64 a PyTorch user wrote:
// ONNX stores float32, and its shortest decimal form is taken (epsilon 1e-5
// gives 1e-5, not 9.99999974737875e-06), so libtorch gets the same double as
// from PyTorch.
func attrFloat64(n *graph.Node, name string, def float64) (float64, error) {
	if _, ok := n.Attrs[name]; !ok {
		return def, nil
	}
	f, err := n.AttrFloat(name, 0)
	if err != nil {
		return 0, err
	}
	return decimal(f), nil
}

// decimal returns float32 f's shortest decimal representation as a float64.
func decimal(f float32) float64 {
	v, err := strconv.ParseFloat(strconv.FormatFloat(float64(f), 'g', -1, 32), 64)
	if err != nil {
		return float64(f)
	}
	return v
}

// oneMinus returns 1 - f computed on f's shortest decimal form, so that ONNX's
// BatchNormalization momentum 0.9 gives PyTorch's momentum 0.1 exactly.
func oneMinus(f float32) float64 {
	r, ok := new(big.Rat).SetString(strconv.FormatFloat(float64(f), 'g', -1, 32))
	if !ok {
		return 1 - float64(f)
	}
	v, _ := new(big.Rat).Sub(big.NewRat(1, 1), r).Float64()
	return v
}

// compile compiles node n (not a Constant).
func (c *compiler) compile(n *graph.Node) (compiled, error) {
	switch n.Op {
	case "Conv":
		return c.conv(n)
	case "Gemm":
		return c.gemm(n)
	case "MatMul":
		return fresh(func(_ *pass, in []*ts.Tensor) (*ts.Tensor, error) { return in[0].Matmul(in[1], false) }), nil
	case "Add", "Sub", "Mul", "Div":
		return c.arith(n)
	case "BatchNormalization":
		return c.batchNorm(n)
	case "Relu":
		return compiled{inPlace: true, run: one(func(_ *pass, in []*ts.Tensor, own bool) (*ts.Tensor, error) {
			if !own {
				return in[0].Relu(false)
			}
			if err := in[0].Relu_(); err != nil {
				return nil, err
			}
			return in[0], nil
		})}, nil
	case "LeakyRelu":
		alpha, err := attrFloat64(n, "alpha", 0.01)
		if err != nil {
			return compiled{}, err
		}
		a := ts.FloatScalar(alpha)
		return fresh(func(_ *pass, in []*ts.Tensor) (*ts.Tensor, error) {
			neg, err := in[0].MulScalar(a, false)
			if err != nil {
				return nil, err
			}
			return negativePart(in[0], neg)
		}), nil
	case "PRelu":
		return fresh(func(_ *pass, in []*ts.Tensor) (*ts.Tensor, error) {
			neg, err := in[0].Mul(in[1], false)
			if err != nil {
				return nil, err
			}
			return negativePart(in[0], neg)
		}), nil
	case "Clip":
		return c.clip(n)
	case "Sigmoid":
		return fresh(func(_ *pass, in []*ts.Tensor) (*ts.Tensor, error) { return in[0].Sigmoid(false) }), nil
	case "Tanh":
		return fresh(func(_ *pass, in []*ts.Tensor) (*ts.Tensor, error) { return in[0].Tanh(false) }), nil
	case "HardSigmoid":
		return c.hardSigmoid(n)
	case "HardSwish":
		return fresh(func(_ *pass, in []*ts.Tensor) (*ts.Tensor, error) { return in[0].Hardswish(false) }), nil
	case "Softmax":
		return c.softmax(n)
	case "MaxPool", "AveragePool":
		return c.pool(n)
	case "GlobalAveragePool":
		return c.globalAveragePool(n)
	case "Flatten":
		return c.flatten(n)
	case "Reshape":
		return c.reshape(n)
	case "Transpose":
		return c.transpose(n)
	case "Concat":
		return c.concat(n)
	case "Split":
		return c.split(n)
	case "Slice":
		return c.slice(n)
	case "Pad":
		return c.pad(n)
	case "ReduceMean":
		return c.reduceMean(n)
	case "Squeeze", "Unsqueeze":
		return c.squeeze(n)
	case "Identity":
		return view(func(_ *pass, in []*ts.Tensor) (*ts.Tensor, error) { return in[0].ShallowClone() }), nil
	case "Dropout":
		// Identity at inference, and in training too: an imported graph is an
		// inference graph (Fold bypasses its Dropout nodes) and the zoo has none.
		if len(n.Outputs) > 1 && n.Outputs[1] != "" {
			return compiled{}, fmt.Errorf("Dropout's mask output is not supported")
		}
		return view(func(_ *pass, in []*ts.Tensor) (*ts.Tensor, error) { return in[0].ShallowClone() }), nil
	case "Cast":
		return c.cast(n)
	case "Gather":
		return c.gather(n)
	}
	return compiled{}, fmt.Errorf("op %s cannot be executed (supported: Conv, Gemm, MatMul, Add, Sub, Mul, Div, "+
		"BatchNormalization, Relu, LeakyRelu, PRelu, Clip, Sigmoid, HardSigmoid, HardSwish, Tanh, Softmax, MaxPool, "+
		"AveragePool, GlobalAveragePool, Flatten, Reshape, Transpose, Concat, Split, Slice, Pad, ReduceMean, Squeeze, "+
		"Unsqueeze, Identity, Dropout, Cast, Gather; shape computations must be folded by graph.Fold)", n.Op)
}

// negativePart returns x where x >= 0 and neg elsewhere (LeakyRelu, PRelu); it
// drops neg.
func negativePart(x, neg *ts.Tensor) (*ts.Tensor, error) {
	defer neg.Drop()
	pos, err := x.Ge(zeroScalar, false)
	if err != nil {
		return nil, err
	}
	defer pos.Drop()
	return x.WhereSelf(pos, neg, false)
}

// zeroScalar is the scalar 0 (gotch cannot free scalars: made once).
var zeroScalar = ts.FloatScalar(0)

// conv compiles a 2-D convolution; asymmetric pads are applied by an explicit
// zero pad before it.
func (c *compiler) conv(n *graph.Node) (compiled, error) {
	w, err := c.shapeOf(n.Input(1))
	if err != nil {
		return compiled{}, err
	}
	x, err := c.shapeOf(n.Input(0))
	if err != nil {
		return compiled{}, err
	}
	if len(w) != 4 || len(x) != 4 {
		return compiled{}, fmt.Errorf("input %v and weight %v: only 2-D convolutions are supported", x, w)
	}
	geo, err := n.Geometry(2, w[2:])
	if err != nil {
		return compiled{}, err
	}
	for i := range 2 {
		if _, err := geo.OutSize(i, x[2+i]); err != nil {
			return compiled{}, err
		}
	}
	groups, err := n.AttrInt("group", 1)
	if err != nil {
		return compiled{}, err
	}
	if groups < 1 {
		return compiled{}, fmt.Errorf("group %d", groups)
	}
	pads := geo.Pads // [top, left, bottom, right]
	strides, dil := geo.Strides, geo.Dilations
	none := c.m.none
	if pads[0] == pads[2] && pads[1] == pads[3] {
		padding := []int64{pads[0], pads[1]}
		return fresh(func(_ *pass, in []*ts.Tensor) (*ts.Tensor, error) {
			return ts.Conv2d(in[0], in[1], orNone(in, 2, none), strides, padding, dil, groups)
		}), nil
	}
	explicit := []int64{pads[1], pads[3], pads[0], pads[2]}
	zero := []int64{0, 0}
	return fresh(func(_ *pass, in []*ts.Tensor) (*ts.Tensor, error) {
		xp, err := in[0].ConstantPadNd(explicit, false)
		if err != nil {
			return nil, err
		}
		defer xp.Drop()
		return ts.Conv2d(xp, in[1], orNone(in, 2, none), strides, zero, dil, groups)
	}), nil
}

// orNone returns in[i], or none (an undefined tensor) when the input is omitted.
func orNone(in []*ts.Tensor, i int, none *ts.Tensor) *ts.Tensor {
	if i < len(in) && in[i] != nil {
		return in[i]
	}
	return none
}

// gemm compiles Y = alpha * A' B' + beta * C. The common form (transB = 1,
// alpha = beta = 1, a vector bias) is libtorch's linear, as nn.Linear computes.
func (c *compiler) gemm(n *graph.Node) (compiled, error) {
	g, err := n.Gemm()
	if err != nil {
		return compiled{}, err
	}
	// The float64s a PyTorch user wrote (see attrFloat64).
	alpha, beta := decimal(g.Alpha), decimal(g.Beta)
	ta, tb := g.TransA, g.TransB
	w, err := c.shapeOf(n.Input(1))
	if err != nil {
		return compiled{}, err
	}
	if len(w) != 2 {
		return compiled{}, fmt.Errorf("B of shape %v: want a matrix", w)
	}
	vecBias := true
	if b := n.Input(2); b != "" {
		bs, err := c.shapeOf(b)
		if err != nil {
			return compiled{}, err
		}
		vecBias = len(bs) == 1 && bs[0] == w[0]
	}
	none := c.m.none
	if alpha == 1 && beta == 1 && !ta && tb && vecBias {
		return fresh(func(_ *pass, in []*ts.Tensor) (*ts.Tensor, error) {
			return ts.Linear(in[0], in[1], orNone(in, 2, none))
		}), nil
	}
	as, bs := ts.FloatScalar(alpha), ts.FloatScalar(beta)
	return fresh(func(_ *pass, in []*ts.Tensor) (*ts.Tensor, error) {
		var sc scope
		defer sc.drop()
		a, b := in[0], in[1]
		var err error
		if ta {
			if a, err = sc.keep(a.Permute([]int64{1, 0}, false)); err != nil {
				return nil, err
			}
		}
		if tb {
			if b, err = sc.keep(b.Permute([]int64{1, 0}, false)); err != nil {
				return nil, err
			}
		}
		y, err := a.Matmul(b, false)
		if err != nil {
			return nil, err
		}
		if alpha != 1 {
			if y, err = y.MulScalar(as, true); err != nil {
				return nil, err
			}
		}
		if len(in) < 3 || in[2] == nil {
			return y, nil
		}
		cb := in[2]
		if beta != 1 {
			if cb, err = sc.keep(cb.MulScalar(bs, false)); err != nil {
				_ = y.Drop()
				return nil, err
			}
		}
		return y.Add(cb, true)
	}), nil
}

// scope drops the intermediate tensors of an op.
type scope []*ts.Tensor

func (s *scope) keep(t *ts.Tensor, err error) (*ts.Tensor, error) {
	if err != nil {
		return nil, err
	}
	*s = append(*s, t)
	return t, nil
}

func (s *scope) drop() {
	for _, t := range *s {
		_ = t.Drop()
	}
	*s = nil
}

// arith compiles the broadcasting binary operations.
func (c *compiler) arith(n *graph.Node) (compiled, error) {
	if n.Op == "Div" {
		if v, ok := c.g.Value(n.Outputs[0]); ok && v.DType.IsInteger() {
			return compiled{}, fmt.Errorf("integer Div is not supported")
		}
	}
	f := map[string]func(a, b *ts.Tensor) (*ts.Tensor, error){
		"Add": func(a, b *ts.Tensor) (*ts.Tensor, error) { return a.Add(b, false) },
		"Sub": func(a, b *ts.Tensor) (*ts.Tensor, error) { return a.Sub(b, false) },
		"Mul": func(a, b *ts.Tensor) (*ts.Tensor, error) { return a.Mul(b, false) },
		"Div": func(a, b *ts.Tensor) (*ts.Tensor, error) { return a.Div(b, false) },
	}[n.Op]
	return fresh(func(_ *pass, in []*ts.Tensor) (*ts.Tensor, error) { return f(in[0], in[1]) }), nil
}

// batchNorm compiles BatchNormalization: inference uses the running
// statistics; a training pass uses the batch's and updates the running ones
// with PyTorch's momentum 1 - m (ONNX's running = m * running + (1 - m) *
// batch).
func (c *compiler) batchNorm(n *graph.Node) (compiled, error) {
	eps, err := attrFloat64(n, "epsilon", 1e-5)
	if err != nil {
		return compiled{}, err
	}
	momentum := 0.1
	if _, ok := n.Attrs["momentum"]; ok {
		m, err := n.AttrFloat("momentum", 0.9)
		if err != nil {
			return compiled{}, err
		}
		momentum = oneMinus(m)
	}
	for i := 1; i <= 4; i++ {
		if _, ok := c.consts[n.Input(i)]; !ok {
			return compiled{}, fmt.Errorf("input %d (%q) must be an initializer", i, n.Input(i))
		}
	}
	return fresh(func(r *pass, in []*ts.Tensor) (*ts.Tensor, error) {
		return ts.BatchNorm(in[0], in[1], in[2], in[3], in[4], r.train, momentum, eps, false)
	}), nil
}

// clip compiles Clip with constant bounds (inputs since opset 11; absent
// bounds do not clip).
func (c *compiler) clip(n *graph.Node) (compiled, error) {
	var bounds [2]*ts.Scalar
	var vals [2]float64
	for i := range 2 {
		name := n.Input(i + 1)
		if name == "" {
			continue
		}
		v, err := c.constFloats(n, i+1)
		if err != nil {
			return compiled{}, err
		}
		if len(v) != 1 {
			return compiled{}, fmt.Errorf("bound %q has %d values, want 1", name, len(v))
		}
		vals[i] = float64(v[0])
		bounds[i] = ts.FloatScalar(vals[i])
	}
	lo, hi := bounds[0], bounds[1]
	if lo == nil && hi == nil {
		return view(func(_ *pass, in []*ts.Tensor) (*ts.Tensor, error) { return in[0].ShallowClone() }), nil
	}
	return fresh(func(_ *pass, in []*ts.Tensor) (*ts.Tensor, error) {
		switch {
		case lo == nil:
			return in[0].ClampMax(hi, false)
		case hi == nil:
			return in[0].ClampMin(lo, false)
		}
		return in[0].Clamp(lo, hi, false)
	}), nil
}

// hardSigmoid compiles max(0, min(1, alpha x + beta)): libtorch's hardsigmoid
// for PyTorch's alpha 1/6, beta 1/2.
func (c *compiler) hardSigmoid(n *graph.Node) (compiled, error) {
	alpha, err := n.AttrFloat("alpha", 0.2)
	if err != nil {
		return compiled{}, err
	}
	beta, err := n.AttrFloat("beta", 0.5)
	if err != nil {
		return compiled{}, err
	}
	if alpha == float32(1.0/6) && beta == 0.5 {
		return fresh(func(_ *pass, in []*ts.Tensor) (*ts.Tensor, error) { return in[0].Hardsigmoid(false) }), nil
	}
	a, b := ts.FloatScalar(decimal(alpha)), ts.FloatScalar(decimal(beta))
	one := ts.FloatScalar(1)
	return fresh(func(_ *pass, in []*ts.Tensor) (*ts.Tensor, error) {
		y, err := in[0].MulScalar(a, false)
		if err != nil {
			return nil, err
		}
		if y, err = y.AddScalar(b, true); err != nil {
			return nil, err
		}
		return y.Clamp(zeroScalar, one, true)
	}), nil
}

// softmax compiles Softmax: along axis from opset 13, and before that over the
// input flattened to 2-D at axis (default 1).
func (c *compiler) softmax(n *graph.Node) (compiled, error) {
	def := int64(-1)
	if c.g.Opset < 13 {
		def = 1
	}
	axis, x, err := c.axis(n, def)
	if err != nil {
		return compiled{}, err
	}
	if c.g.Opset >= 13 || axis == int64(len(x))-1 {
		return fresh(func(_ *pass, in []*ts.Tensor) (*ts.Tensor, error) { return in[0].Softmax(axis, gotch.Float, false) }), nil
	}
	inner := int64(1)
	for _, d := range x[axis:] {
		if d < 0 {
			return compiled{}, fmt.Errorf("axis %d: the batch dimension cannot be reduced", axis)
		}
		inner *= d
	}
	return fresh(func(_ *pass, in []*ts.Tensor) (*ts.Tensor, error) {
		shape, err := in[0].Size()
		if err != nil {
			return nil, err
		}
		flat, err := in[0].Reshape([]int64{-1, inner}, false)
		if err != nil {
			return nil, err
		}
		y, err := flat.Softmax(1, gotch.Float, true)
		if err != nil {
			return nil, err
		}
		return y.Reshape(shape, true)
	}), nil
}

// normAxis resolves a negative axis against rank.
func normAxis(axis int64, rank int) (int64, error) {
	if axis < 0 {
		axis += int64(rank)
	}
	if axis < 0 || axis >= int64(rank) {
		return 0, fmt.Errorf("axis %d out of range for rank %d", axis, rank)
	}
	return axis, nil
}

// axes returns n's axes, unresolved (nil when none): the constant input 1
// when present (since opset 13), else the "axes" attribute; and the shape of
// n's first input.
func (c *compiler) axes(n *graph.Node) (axes, shape []int64, err error) {
	if shape, err = c.shapeOf(n.Input(0)); err != nil {
		return nil, nil, err
	}
	if axes, err = n.AttrInts("axes", nil); err != nil {
		return nil, nil, err
	}
	if n.Input(1) != "" {
		if axes, err = c.constInts(n, 1); err != nil {
			return nil, nil, err
		}
	}
	return axes, shape, nil
}

// normAxes resolves every axis of axes against rank, in place.
func normAxes(axes []int64, rank int) error {
	for i := range axes {
		a, err := normAxis(axes[i], rank)
		if err != nil {
			return err
		}
		axes[i] = a
	}
	return nil
}

// axis returns n's "axis" attribute (def when absent) resolved against the
// rank of n's first input, and that input's shape.
func (c *compiler) axis(n *graph.Node, def int64) (axis int64, shape []int64, err error) {
	if shape, err = c.shapeOf(n.Input(0)); err != nil {
		return 0, nil, err
	}
	if axis, err = n.AttrInt("axis", def); err != nil {
		return 0, nil, err
	}
	if axis, err = normAxis(axis, len(shape)); err != nil {
		return 0, nil, err
	}
	return axis, shape, nil
}

// pool compiles 2-D MaxPool and AveragePool. Pads libtorch cannot take
// (asymmetric, or more than half the kernel) are applied explicitly: -inf for
// max pooling, zeros for average pooling, whose divisor is then the count of
// real elements unless count_include_pad.
func (c *compiler) pool(n *graph.Node) (compiled, error) {
	x, err := c.shapeOf(n.Input(0))
	if err != nil {
		return compiled{}, err
	}
	if len(x) != 4 {
		return compiled{}, fmt.Errorf("input %v: only 2-D pooling is supported", x)
	}
	if len(n.Outputs) > 1 && n.Outputs[1] != "" {
		return compiled{}, fmt.Errorf("MaxPool's indices output is not supported")
	}
	geo, err := n.Geometry(2, nil)
	if err != nil {
		return compiled{}, err
	}
	for i := range 2 {
		if _, err := geo.OutSize(i, x[2+i]); err != nil {
			return compiled{}, err
		}
	}
	k, s, d, p := geo.Kernel, geo.Strides, geo.Dilations, geo.Pads
	ceil := geo.CeilMode
	implicit := p[0] == p[2] && p[1] == p[3] && 2*p[0] <= k[0] && 2*p[1] <= k[1]
	padding := []int64{p[0], p[1]}
	explicit := []int64{p[1], p[3], p[0], p[2]}
	zero := []int64{0, 0}
	if n.Op == "MaxPool" {
		if implicit {
			return fresh(func(_ *pass, in []*ts.Tensor) (*ts.Tensor, error) {
				return in[0].MaxPool2d(k, s, padding, d, ceil, false)
			}), nil
		}
		negInf := ts.FloatScalar(math.Inf(-1))
		return fresh(func(_ *pass, in []*ts.Tensor) (*ts.Tensor, error) {
			xp, err := in[0].ConstantPadNdWithVal(explicit, negInf, false)
			if err != nil {
				return nil, err
			}
			return xp.MaxPool2d(k, s, zero, d, ceil, true)
		}), nil
	}
	if d[0] != 1 || d[1] != 1 {
		return compiled{}, fmt.Errorf("AveragePool with dilations %v is not supported", d)
	}
	cip, err := n.AttrInt("count_include_pad", 0)
	if err != nil {
		return compiled{}, err
	}
	include := cip != 0
	if implicit {
		return fresh(func(_ *pass, in []*ts.Tensor) (*ts.Tensor, error) {
			return in[0].AvgPool2d(k, s, padding, ceil, include, nil, false)
		}), nil
	}
	if include {
		return fresh(func(_ *pass, in []*ts.Tensor) (*ts.Tensor, error) {
			xp, err := in[0].ConstantPadNd(explicit, false)
			if err != nil {
				return nil, err
			}
			return xp.AvgPool2d(k, s, zero, ceil, true, nil, true)
		}), nil
	}
	// The mean over the real elements of each window: the average of the
	// zero-padded input divided by that of a zero-padded mask of ones.
	ones, err := ts.Ones([]int64{1, 1, x[2], x[3]}, gotch.Float, c.dev)
	if err != nil {
		return compiled{}, err
	}
	mp, err := ones.ConstantPadNd(explicit, true)
	if err != nil {
		return compiled{}, err
	}
	count, err := mp.AvgPool2d(k, s, zero, ceil, true, nil, true)
	if err != nil {
		return compiled{}, err
	}
	c.m.keep = append(c.m.keep, count)
	return fresh(func(_ *pass, in []*ts.Tensor) (*ts.Tensor, error) {
		xp, err := in[0].ConstantPadNd(explicit, false)
		if err != nil {
			return nil, err
		}
		y, err := xp.AvgPool2d(k, s, zero, ceil, true, nil, true)
		if err != nil {
			return nil, err
		}
		return y.Div(count, true)
	}), nil
}

// globalAveragePool compiles GlobalAveragePool (libtorch's adaptive average
// pool to 1x1 for 2-D inputs, as PyTorch's models use).
func (c *compiler) globalAveragePool(n *graph.Node) (compiled, error) {
	x, err := c.shapeOf(n.Input(0))
	if err != nil {
		return compiled{}, err
	}
	if len(x) < 3 {
		return compiled{}, fmt.Errorf("input of rank %d", len(x))
	}
	if len(x) == 4 {
		return fresh(func(_ *pass, in []*ts.Tensor) (*ts.Tensor, error) {
			return in[0].AdaptiveAvgPool2d([]int64{1, 1}, false)
		}), nil
	}
	var dims []int64
	for i := 2; i < len(x); i++ {
		dims = append(dims, int64(i))
	}
	return fresh(func(_ *pass, in []*ts.Tensor) (*ts.Tensor, error) {
		return in[0].MeanDim(dims, true, gotch.Float, false)
	}), nil
}

// flatten compiles Flatten to 2-D at axis.
func (c *compiler) flatten(n *graph.Node) (compiled, error) {
	x, err := c.shapeOf(n.Input(0))
	if err != nil {
		return compiled{}, err
	}
	axis, err := n.AttrInt("axis", 1)
	if err != nil {
		return compiled{}, err
	}
	if axis < 0 {
		axis += int64(len(x))
	}
	if axis < 0 || axis > int64(len(x)) {
		return compiled{}, fmt.Errorf("axis %d for rank %d", axis, len(x))
	}
	switch axis {
	case 0:
		return view(func(_ *pass, in []*ts.Tensor) (*ts.Tensor, error) { return in[0].Reshape([]int64{1, -1}, false) }), nil
	case 1:
		if len(x) == 1 {
			break
		}
		return view(func(_ *pass, in []*ts.Tensor) (*ts.Tensor, error) { return in[0].Flatten(1, -1, false) }), nil
	}
	inner := int64(1)
	for _, d := range x[axis:] {
		if d < 0 {
			return compiled{}, fmt.Errorf("axis %d: cannot flatten the batch dimension into the second part", axis)
		}
		inner *= d
	}
	return view(func(_ *pass, in []*ts.Tensor) (*ts.Tensor, error) { return in[0].Reshape([]int64{-1, inner}, false) }), nil
}

// reshape compiles Reshape to a constant target (-1 for the batch after Fold;
// 0 copies the input's dimension unless allowzero).
func (c *compiler) reshape(n *graph.Node) (compiled, error) {
	target, err := c.constInts(n, 1)
	if err != nil {
		return compiled{}, err
	}
	allowZero, err := n.AttrInt("allowzero", 0)
	if err != nil {
		return compiled{}, err
	}
	copies := allowZero == 0 && slices.Contains(target, 0)
	return view(func(_ *pass, in []*ts.Tensor) (*ts.Tensor, error) {
		t := target
		if copies {
			shape, err := in[0].Size()
			if err != nil {
				return nil, err
			}
			t = slices.Clone(target)
			for i, v := range t {
				if v == 0 {
					if i >= len(shape) {
						return nil, fmt.Errorf("target %v copies dimension %d of %v", target, i, shape)
					}
					t[i] = shape[i]
				}
			}
		}
		return in[0].Reshape(t, false)
	}), nil
}

// transpose compiles Transpose (reversed axes by default).
func (c *compiler) transpose(n *graph.Node) (compiled, error) {
	x, err := c.shapeOf(n.Input(0))
	if err != nil {
		return compiled{}, err
	}
	perm, err := n.AttrInts("perm", nil)
	if err != nil {
		return compiled{}, err
	}
	if perm == nil {
		for i := len(x) - 1; i >= 0; i-- {
			perm = append(perm, int64(i))
		}
	}
	if len(perm) != len(x) {
		return compiled{}, fmt.Errorf("perm %v for rank %d", perm, len(x))
	}
	return view(func(_ *pass, in []*ts.Tensor) (*ts.Tensor, error) { return in[0].Permute(perm, false) }), nil
}

// concat compiles Concat.
func (c *compiler) concat(n *graph.Node) (compiled, error) {
	axis, _, err := c.axis(n, 0)
	if err != nil {
		return compiled{}, err
	}
	return fresh(func(_ *pass, in []*ts.Tensor) (*ts.Tensor, error) { return ts.Cat(in, axis) }), nil
}

// split compiles Split into static sizes: from the split input (opset 13) or
// attribute, else equal parts.
func (c *compiler) split(n *graph.Node) (compiled, error) {
	axis, x, err := c.axis(n, 0)
	if err != nil {
		return compiled{}, err
	}
	dim := x[axis]
	if dim < 0 {
		return compiled{}, fmt.Errorf("cannot split the batch dimension")
	}
	var sizes []int64
	if n.Input(1) != "" {
		if sizes, err = c.constInts(n, 1); err != nil {
			return compiled{}, err
		}
	} else if sizes, err = n.AttrInts("split", nil); err != nil {
		return compiled{}, err
	}
	if sizes == nil {
		k := int64(len(n.Outputs))
		if k == 0 || dim%k != 0 {
			return compiled{}, fmt.Errorf("cannot split %d into %d equal parts", dim, k)
		}
		for range k {
			sizes = append(sizes, dim/k)
		}
	}
	var sum int64
	for _, s := range sizes {
		sum += s
	}
	if sum != dim || len(sizes) != len(n.Outputs) {
		return compiled{}, fmt.Errorf("split %v of dimension %d into %d outputs", sizes, dim, len(n.Outputs))
	}
	return compiled{alias: true, run: func(_ *pass, in []*ts.Tensor, _ bool) ([]*ts.Tensor, error) {
		return in[0].SplitWithSizes(sizes, axis)
	}}, nil
}

// slice compiles Slice with constant starts, ends, axes and steps, clamped as
// ONNX specifies.
func (c *compiler) slice(n *graph.Node) (compiled, error) {
	x, err := c.shapeOf(n.Input(0))
	if err != nil {
		return compiled{}, err
	}
	starts, err := c.constInts(n, 1)
	if err != nil {
		return compiled{}, err
	}
	ends, err := c.constInts(n, 2)
	if err != nil {
		return compiled{}, err
	}
	if len(starts) != len(ends) {
		return compiled{}, fmt.Errorf("%d starts, %d ends", len(starts), len(ends))
	}
	axes := make([]int64, len(starts))
	for i := range axes {
		axes[i] = int64(i)
	}
	if n.Input(3) != "" {
		if axes, err = c.constInts(n, 3); err != nil {
			return compiled{}, err
		}
	}
	steps := make([]int64, len(starts))
	for i := range steps {
		steps[i] = 1
	}
	if n.Input(4) != "" {
		if steps, err = c.constInts(n, 4); err != nil {
			return compiled{}, err
		}
	}
	if len(axes) != len(starts) || len(steps) != len(starts) {
		return compiled{}, fmt.Errorf("%d starts, %d axes, %d steps", len(starts), len(axes), len(steps))
	}
	for i := range axes {
		if axes[i], err = normAxis(axes[i], len(x)); err != nil {
			return compiled{}, err
		}
		if steps[i] == 0 {
			return compiled{}, fmt.Errorf("step 0")
		}
	}
	return view(func(_ *pass, in []*ts.Tensor) (*ts.Tensor, error) {
		shape, err := in[0].Size()
		if err != nil {
			return nil, err
		}
		y, err := in[0].ShallowClone()
		if err != nil {
			return nil, err
		}
		for i, a := range axes {
			if y, err = sliceAxis(y, a, shape[a], starts[i], ends[i], steps[i]); err != nil {
				return nil, err
			}
		}
		return y, nil
	}), nil
}

// sliceAxis slices axis a (of size dim) of x as ONNX's Slice does; it drops x.
func sliceAxis(x *ts.Tensor, a, dim, start, end, step int64) (*ts.Tensor, error) {
	clampTo := func(v, lo, hi int64) int64 { return max(lo, min(v, hi)) }
	if start < 0 {
		start += dim
	}
	if end < 0 {
		end += dim
	}
	if step > 0 {
		start, end = clampTo(start, 0, dim), clampTo(end, 0, dim)
		end = max(end, start)
		return x.Slice(a, []int64{start}, []int64{end}, step, true)
	}
	start, end = clampTo(start, -1, dim-1), clampTo(end, -1, dim-1)
	var idx []int64
	for i := start; i > end; i += step {
		idx = append(idx, i)
	}
	if len(idx) == 0 {
		return x.Slice(a, []int64{0}, []int64{0}, 1, true)
	}
	defer x.Drop()
	dev, err := x.Device()
	if err != nil {
		return nil, err
	}
	it, err := ts.OfSlice(idx)
	if err != nil {
		return nil, err
	}
	if dev != gotch.CPU {
		if it, err = it.To(dev, true); err != nil {
			return nil, err
		}
	}
	defer it.Drop()
	return x.IndexSelect(a, it, false)
}

// pad compiles Pad in constant mode (pads and value constant).
func (c *compiler) pad(n *graph.Node) (compiled, error) {
	mode, err := n.AttrString("mode", "constant")
	if err != nil {
		return compiled{}, err
	}
	if mode != "constant" {
		return compiled{}, fmt.Errorf("mode %q is not supported", mode)
	}
	if n.Input(3) != "" {
		return compiled{}, fmt.Errorf("the axes input is not supported")
	}
	x, err := c.shapeOf(n.Input(0))
	if err != nil {
		return compiled{}, err
	}
	pads, err := c.constInts(n, 1)
	if err != nil {
		return compiled{}, err
	}
	r := len(x)
	if len(pads) != 2*r {
		return compiled{}, fmt.Errorf("%d pads for rank %d", len(pads), r)
	}
	value := 0.0
	if n.Input(2) != "" {
		v, err := c.constFloats(n, 2)
		if err != nil {
			return compiled{}, err
		}
		if len(v) != 1 {
			return compiled{}, fmt.Errorf("constant_value has %d values", len(v))
		}
		value = float64(v[0])
	}
	// libtorch: (begin, end) pairs from the last dimension, as far as needed.
	var tp []int64
	last := -1
	for d := r - 1; d >= 0; d-- {
		tp = append(tp, pads[d], pads[d+r])
		if pads[d] != 0 || pads[d+r] != 0 {
			last = len(tp)
		}
	}
	if last < 0 {
		return view(func(_ *pass, in []*ts.Tensor) (*ts.Tensor, error) { return in[0].ShallowClone() }), nil
	}
	tp = tp[:last]
	if value == 0 {
		return fresh(func(_ *pass, in []*ts.Tensor) (*ts.Tensor, error) { return in[0].ConstantPadNd(tp, false) }), nil
	}
	v := ts.FloatScalar(value)
	return fresh(func(_ *pass, in []*ts.Tensor) (*ts.Tensor, error) { return in[0].ConstantPadNdWithVal(tp, v, false) }), nil
}

// reduceMean compiles ReduceMean over constant axes (all when none).
func (c *compiler) reduceMean(n *graph.Node) (compiled, error) {
	axes, x, err := c.axes(n)
	if err != nil {
		return compiled{}, err
	}
	keep, err := n.AttrInt("keepdims", 1)
	if err != nil {
		return compiled{}, err
	}
	if len(axes) == 0 {
		for i := range x {
			axes = append(axes, int64(i))
		}
	}
	if err := normAxes(axes, len(x)); err != nil {
		return compiled{}, err
	}
	return fresh(func(_ *pass, in []*ts.Tensor) (*ts.Tensor, error) {
		return in[0].MeanDim(axes, keep != 0, gotch.Float, false)
	}), nil
}

// squeeze compiles Squeeze and Unsqueeze (axes from the input since opset 13,
// before from the attribute; Squeeze without axes drops every static 1).
func (c *compiler) squeeze(n *graph.Node) (compiled, error) {
	axes, x, err := c.axes(n)
	if err != nil {
		return compiled{}, err
	}
	rank := len(x)
	if n.Op == "Unsqueeze" {
		rank += len(axes)
	}
	if n.Op == "Squeeze" && len(axes) == 0 {
		for i, d := range x {
			if d == 1 {
				axes = append(axes, int64(i))
			}
		}
	}
	if err := normAxes(axes, rank); err != nil {
		return compiled{}, err
	}
	slices.Sort(axes)
	if n.Op == "Squeeze" {
		slices.Reverse(axes)
	}
	unsq := n.Op == "Unsqueeze"
	return view(func(_ *pass, in []*ts.Tensor) (*ts.Tensor, error) {
		y, err := in[0].ShallowClone()
		for _, a := range axes {
			if err != nil {
				return nil, err
			}
			if unsq {
				y, err = y.Unsqueeze(a, true)
			} else {
				y, err = y.SqueezeDim(a, true)
			}
		}
		return y, err
	}), nil
}

// cast compiles Cast to a float or integer type.
func (c *compiler) cast(n *graph.Node) (compiled, error) {
	to, err := n.AttrInt("to", 0)
	if err != nil {
		return compiled{}, err
	}
	dt, ok := map[graph.DType]gotch.DType{
		graph.Float32: gotch.Float, graph.Float64: gotch.Double, graph.Float16: gotch.Half,
		graph.Int64: gotch.Int64, graph.Int32: gotch.Int, graph.Int8: gotch.Int8, graph.Uint8: gotch.Uint8,
		graph.Int16: gotch.Int16, graph.Bool: gotch.Bool,
	}[graph.DType(to)]
	if !ok {
		return compiled{}, fmt.Errorf("cast to %v is not supported", graph.DType(to))
	}
	return view(func(_ *pass, in []*ts.Tensor) (*ts.Tensor, error) { return in[0].Totype(dt, false) }), nil
}

// gather compiles Gather with constant scalar or 1-D indices.
func (c *compiler) gather(n *graph.Node) (compiled, error) {
	axis, x, err := c.axis(n, 0)
	if err != nil {
		return compiled{}, err
	}
	t := c.g.Initializer(n.Input(1))
	if t == nil {
		return compiled{}, fmt.Errorf("indices %q must be an initializer", n.Input(1))
	}
	idx, err := t.Int64s()
	if err != nil {
		return compiled{}, err
	}
	dim := x[axis]
	for i, v := range idx {
		if dim < 0 {
			return compiled{}, fmt.Errorf("cannot gather along the batch dimension")
		}
		if v < 0 {
			v += dim
		}
		if v < 0 || v >= dim {
			return compiled{}, fmt.Errorf("index %d out of range for dimension %d", idx[i], dim)
		}
		idx[i] = v
	}
	switch len(t.Shape) {
	case 0:
		i := idx[0]
		return view(func(_ *pass, in []*ts.Tensor) (*ts.Tensor, error) { return in[0].Select(axis, i, false) }), nil
	case 1:
		it, err := ts.OfSlice(idx)
		if err != nil {
			return compiled{}, err
		}
		if c.dev != gotch.CPU {
			if it, err = it.To(c.dev, true); err != nil {
				return compiled{}, err
			}
		}
		c.m.keep = append(c.m.keep, it)
		return fresh(func(_ *pass, in []*ts.Tensor) (*ts.Tensor, error) { return in[0].IndexSelect(axis, it, false) }), nil
	}
	return compiled{}, fmt.Errorf("indices of rank %d are not supported", len(t.Shape))
}
