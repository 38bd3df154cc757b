package gorgonnx

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/faultline/faultline/model/graph"
)

// maxExpandedWeights bounds the elements of a weight built by a rewrite (a
// grouped convolution's dense weight, an average pool's or a channel slice's
// convolution weight): 2^26 float32s, 256 MiB.
const maxExpandedWeights = 1 << 26

// rewriter turns a folded graph into one that onnx-go's gorgonnx backend
// runs as the ONNX graph would, for a fixed batch size: every node is either
// copied, rewritten into ops gorgonnx executes correctly, or recorded as
// unsupported.
type rewriter struct {
	src   *graph.Graph
	batch int64

	nodes  []graph.Node
	inits  map[string]*graph.Tensor
	order  []string // initializer names in creation order
	shapes map[string][]int64
	dtypes map[string]graph.DType
	used   map[string]bool // value and node names

	bad      map[string][]string // "Op(reason)" -> node names
	badOrder []string
	tainted  map[string]bool // outputs of nodes not rewritten
}

// prepare rewrites the folded graph g for a batch of size batch. It returns
// the graph to encode for gorgonnx, or an *UnsupportedError listing every node
// gorgonnx cannot run (named as in g).
func prepare(model string, g *graph.Graph, batch int64) (*graph.Graph, error) {
	r := &rewriter{
		src: g, batch: batch,
		inits:   map[string]*graph.Tensor{},
		shapes:  map[string][]int64{},
		dtypes:  map[string]graph.DType{},
		used:    map[string]bool{},
		bad:     map[string][]string{},
		tainted: map[string]bool{},
	}
	ins := g.DataInputs()
	if len(ins) != 1 {
		return nil, fmt.Errorf("gorgonnx: %s: %d data inputs, want 1", model, len(ins))
	}
	if len(g.Outputs) != 1 {
		return nil, fmt.Errorf("gorgonnx: %s: %d outputs, want 1 (the logits)", model, len(g.Outputs))
	}
	for _, t := range g.Initializers {
		r.inits[t.Name] = t
		r.order = append(r.order, t.Name)
		r.shapes[t.Name] = t.Shape
		r.dtypes[t.Name] = t.DType
		r.used[t.Name] = true
	}
	values := append(append(append([]graph.Value{}, ins...), g.ValueInfo...), g.Outputs...)
	for _, v := range values {
		r.used[v.Name] = true
		if _, ok := r.inits[v.Name]; ok || v.Shape == nil {
			continue
		}
		s := slices.Clone(v.Shape)
		if len(s) > 0 && s[0] == -1 {
			s[0] = batch
		}
		r.shapes[v.Name] = s
		r.dtypes[v.Name] = v.DType
	}
	for _, n := range g.Nodes {
		r.used[n.Name] = true
		for _, o := range n.Outputs {
			r.used[o] = true
		}
	}
	in, out := ins[0], g.Outputs[0]
	if s := r.shapes[in.Name]; len(s) != 4 || in.DType != graph.Float32 {
		return nil, fmt.Errorf("gorgonnx: %s: input %q is %v %v, want float32 [N C H W]", model, in.Name, in.DType, in.Shape)
	}
	if s := r.shapes[out.Name]; len(s) != 2 || out.DType != graph.Float32 || s[0] != batch {
		return nil, fmt.Errorf("gorgonnx: %s: output %q is %v %v, want float32 [N classes]", model, out.Name, out.DType, out.Shape)
	}
	for i := range g.Nodes {
		n := &g.Nodes[i]
		if err := r.safeNode(n); err != nil {
			return nil, fmt.Errorf("gorgonnx: %s: %s (%s): %w", model, n.Ref(), n.Op, err)
		}
	}
	if len(r.badOrder) > 0 {
		e := &UnsupportedError{Model: model}
		for _, op := range r.badOrder {
			e.Ops = append(e.Ops, graph.UnsupportedOp{Op: op, Nodes: r.bad[op]})
		}
		return nil, e
	}
	return r.graph(in, out)
}

// graph assembles the rewritten graph: a static batch in the interface, only
// the initializers still read, no value_info (gorgonnx infers shapes itself).
func (r *rewriter) graph(in, out graph.Value) (*graph.Graph, error) {
	read := map[string]bool{}
	for _, n := range r.nodes {
		for _, v := range n.Inputs {
			read[v] = true
		}
	}
	h := &graph.Graph{
		Name: r.src.Name, Opset: r.src.Opset, DomainOpsets: r.src.DomainOpsets,
		IRVersion: r.src.IRVersion, Nodes: r.nodes,
	}
	in.Shape, in.DimNames = r.shapes[in.Name], nil
	out.Shape, out.DimNames = r.shapes[out.Name], nil
	h.Inputs, h.Outputs = []graph.Value{in}, []graph.Value{out}
	for _, name := range r.order {
		if read[name] {
			h.Initializers = append(h.Initializers, r.inits[name])
		}
	}
	if err := h.Validate(); err != nil {
		return nil, fmt.Errorf("gorgonnx: rewritten graph: %w", err)
	}
	return h, nil
}

// unsupported records that gorgonnx cannot run n; reason (may be empty) says
// which form of the op.
func (r *rewriter) unsupported(n *graph.Node, reason string) {
	op := n.Op
	if n.Domain != "" {
		op = n.Domain + "." + op
	}
	if reason != "" {
		op += "(" + reason + ")"
	}
	if _, ok := r.bad[op]; !ok {
		r.badOrder = append(r.badOrder, op)
	}
	name := n.Name
	if name == "" && len(n.Outputs) > 0 {
		name = n.Outputs[0]
	}
	r.bad[op] = append(r.bad[op], name)
}

// fresh returns an unused name derived from base and reserves it.
func (r *rewriter) fresh(base string) string {
	name := base
	for i := 2; r.used[name]; i++ {
		name = fmt.Sprintf("%s_%d", base, i)
	}
	r.used[name] = true
	return name
}

// constant adds a float32 initializer and returns its name.
func (r *rewriter) constant(base string, shape []int64, vals []float32) (string, error) {
	name := r.fresh(base)
	t, err := graph.FromFloat32s(name, shape, vals)
	if err != nil {
		return "", err
	}
	r.addInit(t)
	return name, nil
}

func (r *rewriter) addInit(t *graph.Tensor) {
	r.inits[t.Name] = t
	r.order = append(r.order, t.Name)
	r.shapes[t.Name] = t.Shape
	r.dtypes[t.Name] = t.DType
	r.used[t.Name] = true
}

// scalar adds a constant holding v that gorgonnx broadcasts against a value of
// rank rank: shape [1] (gorgonnx reshapes a one-element vector to all ones),
// or, for a vector, the vector's shape.
func (r *rewriter) scalar(base string, v float32, like []int64) (string, error) {
	if len(like) == 1 {
		vals := make([]float32, like[0])
		for i := range vals {
			vals[i] = v
		}
		return r.constant(base, like, vals)
	}
	return r.constant(base, []int64{1}, []float32{v})
}

// emit appends a node computing out (of the given shape, float32), giving
// a node that reads one value twice distinct copies (Identity nodes): the
// gonum graph onnx-go builds keeps one edge per pair of nodes, so a repeated
// input would be lost.
func (r *rewriter) emit(name, op string, inputs []string, out string, shape []int64, attrs map[string]graph.Attr) {
	inputs = slices.Clone(inputs)
	seen := map[string]bool{}
	for i, v := range inputs {
		if seen[v] {
			c := r.fresh(v + "/copy")
			r.nodes = append(r.nodes, graph.Node{Name: r.fresh(name + "/copy"), Op: "Identity", Inputs: []string{v}, Outputs: []string{c}})
			r.shapes[c], r.dtypes[c] = r.shapes[v], r.dtypes[v]
			inputs[i] = c
		}
		seen[v] = true
	}
	if attrs == nil {
		attrs = map[string]graph.Attr{}
	}
	r.nodes = append(r.nodes, graph.Node{Name: name, Op: op, Inputs: inputs, Outputs: []string{out}, Attrs: attrs})
	r.shapes[out] = shape
	if _, ok := r.dtypes[out]; !ok {
		r.dtypes[out] = graph.Float32
	}
}

// sub names an intermediate node or value of a rewrite of n.
func (r *rewriter) sub(n *graph.Node, what string) string {
	base := n.Name
	if base == "" {
		base = n.Outputs[0]
	}
	return r.fresh(base + "/gorgonnx/" + what)
}

// unary ops gorgonnx v0.5.0 registers under their ONNX names, with ONNX's
// semantics for float32 tensors of any shape.
var unary = map[string]bool{
	"Relu": true, "Sigmoid": true, "Tanh": true, "Exp": true, "Log": true, "Abs": true,
	"Neg": true, "Sqrt": true, "Softplus": true, "Floor": true, "Ceil": true,
	"Sin": true, "Cos": true,
}

// binary ops gorgonnx runs with its own broadcasting (see broadcast).
var binary = map[string]bool{"Add": true, "Sub": true, "Mul": true, "Div": true}

// safeNode rewrites n, turning a panic on a malformed node (attributes or
// shapes of the wrong length) into an error.
func (r *rewriter) safeNode(n *graph.Node) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("malformed node: %v", p)
		}
	}()
	return r.node(n)
}

// node rewrites one node of the source graph.
func (r *rewriter) node(n *graph.Node) error {
	if n.Domain != "" && n.Domain != "ai.onnx" {
		r.unsupported(n, "")
		r.taint(n)
		return nil
	}
	inputs := slices.Clone(n.Inputs)
	for len(inputs) > 0 && inputs[len(inputs)-1] == "" {
		inputs = inputs[:len(inputs)-1]
	}
	if !known[n.Op] {
		r.unsupported(n, "")
		r.taint(n)
		return nil
	}
	for i, v := range inputs {
		if v == "" && !(n.Op == "Clip" && i == 1) {
			r.unsupported(n, "omitted input")
			r.taint(n)
			return nil
		}
	}
	for _, v := range inputs {
		if r.tainted[v] {
			// The input comes from an unsupported node: its shape may be
			// unknown, and the op type is one gorgonnx has.
			r.taint(n)
			return nil
		}
	}
	outs := slices.DeleteFunc(slices.Clone(n.Outputs), func(s string) bool { return s == "" })
	if len(outs) != 1 || n.Outputs[0] == "" {
		r.unsupported(n, "several outputs")
		r.taint(n)
		return nil
	}
	out := outs[0]
	oshape, ok := r.shapes[out]
	if !ok || slices.Contains(oshape, -1) {
		r.unsupported(n, "output shape unknown")
		r.taint(n)
		return nil
	}
	if r.dtypes[out] != graph.Float32 {
		r.unsupported(n, r.dtypes[out].String()+" output")
		return nil
	}
	for i, v := range inputs {
		if v == "" {
			continue
		}
		s, ok := r.shapes[v]
		if !ok || slices.Contains(s, -1) {
			r.unsupported(n, "input shape unknown")
			return nil
		}
		if r.dtypes[v] != graph.Float32 && !shapeInput(n.Op, i) {
			r.unsupported(n, r.dtypes[v].String()+" input")
			return nil
		}
	}
	name := n.Name
	if name == "" {
		name = r.fresh(n.Op + "/" + out)
	}
	switch {
	case unary[n.Op]:
		r.emit(name, n.Op, inputs, out, oshape, nil)
		return nil
	case binary[n.Op]:
		return r.broadcast(n, name, inputs, out, oshape)
	}
	switch n.Op {
	case "Identity", "Dropout":
		r.emit(name, "Identity", inputs[:1], out, oshape, nil)
		return nil
	case "LeakyRelu":
		alpha, err := n.AttrFloat("alpha", 0.01)
		if err != nil {
			return err
		}
		r.emit(name, n.Op, inputs, out, oshape, map[string]graph.Attr{"alpha": graph.Float(alpha)})
		return nil
	case "Flatten", "Reshape", "Squeeze", "Unsqueeze":
		return r.reshape(name, inputs[0], out, oshape)
	case "Transpose":
		return r.transpose(n, name, inputs, out, oshape)
	case "Concat":
		return r.concat(n, name, inputs, out, oshape)
	case "Conv":
		return r.conv(n, name, inputs, out, oshape)
	case "MaxPool":
		return r.maxPool(n, name, inputs, out, oshape)
	case "AveragePool":
		return r.averagePool(n, name, inputs, out, oshape)
	case "GlobalAveragePool":
		if len(r.shapes[inputs[0]]) != 4 {
			r.unsupported(n, "rank≠4")
			return nil
		}
		r.emit(name, n.Op, inputs, out, oshape, nil)
		return nil
	case "ReduceMean":
		return r.reduceMean(n, name, inputs, out, oshape)
	case "Gemm":
		return r.gemm(n, name, inputs, out, oshape)
	case "MatMul":
		if len(r.shapes[inputs[0]]) != 2 || len(r.shapes[inputs[1]]) != 2 {
			r.unsupported(n, "rank≠2")
			return nil
		}
		r.emit(name, n.Op, inputs, out, oshape, nil)
		return nil
	case "BatchNormalization":
		return r.batchNorm(n, name, inputs, out, oshape)
	case "Softmax":
		axis, err := n.AttrInt("axis", -1)
		if err != nil {
			return err
		}
		if n.Attrs["axis"].Kind == graph.AttrUndefined && r.src.Opset < 13 {
			axis = 1
		}
		if len(oshape) != 2 || (axis != 1 && axis != -1) {
			r.unsupported(n, "not over the last axis of a matrix")
			return nil
		}
		r.emit(name, n.Op, inputs, out, oshape, map[string]graph.Attr{"axis": graph.Int(1)})
		return nil
	case "Clip":
		return r.clip(n, name, inputs, out, oshape)
	case "HardSigmoid", "HardSwish":
		return r.hardSigmoid(n, name, inputs, out, oshape)
	case "Pad":
		return r.pad(n, name, inputs, out, oshape)
	case "Slice":
		return r.slice(n, name, inputs, out, oshape)
	}
	return fmt.Errorf("no rewrite for known op %s", n.Op)
}

// known lists the op types node handles (in some forms).
var known = func() map[string]bool {
	m := map[string]bool{}
	for _, op := range []string{
		"Identity", "Dropout", "LeakyRelu", "Flatten", "Reshape", "Squeeze", "Unsqueeze",
		"Transpose", "Concat", "Conv", "MaxPool", "AveragePool", "GlobalAveragePool",
		"ReduceMean", "Gemm", "MatMul", "BatchNormalization", "Softmax", "Clip",
		"HardSigmoid", "HardSwish", "Pad", "Slice",
	} {
		m[op] = true
	}
	for op := range unary {
		m[op] = true
	}
	for op := range binary {
		m[op] = true
	}
	return m
}()

// taint marks n's outputs as computed by a node that is not rewritten.
func (r *rewriter) taint(n *graph.Node) {
	for _, o := range n.Outputs {
		r.tainted[o] = true
	}
}

// shapeInput reports whether input i of op is an integer shape or index
// operand rather than data.
func shapeInput(op string, i int) bool {
	switch op {
	case "Reshape", "Squeeze", "Unsqueeze", "Pad":
		return i == 1
	case "Slice":
		return i >= 1
	}
	return false
}

// reshape replaces Flatten, Squeeze, Unsqueeze and Reshape by a Reshape to
// the output's static shape: gorgonnx's Reshape miscomputes a -1 dimension,
// and its Squeeze/Unsqueeze read the axes attribute of opsets before 13.
func (r *rewriter) reshape(name, x, out string, oshape []int64) error {
	if prod(r.shapes[x]) != prod(oshape) {
		return fmt.Errorf("reshape of %v to %v", r.shapes[x], oshape)
	}
	sname := r.fresh(out + "/shape")
	t, err := graph.FromInt64s(sname, []int64{int64(len(oshape))}, oshape)
	if err != nil {
		return err
	}
	r.addInit(t)
	r.emit(name, "Reshape", []string{x, sname}, out, oshape, nil)
	return nil
}

func prod(s []int64) int64 {
	p := int64(1)
	for _, d := range s {
		p *= d
	}
	return p
}

// transpose makes the default permutation (reversed axes) explicit: gorgonnx
// requires the perm attribute.
func (r *rewriter) transpose(n *graph.Node, name string, inputs []string, out string, oshape []int64) error {
	rank := len(r.shapes[inputs[0]])
	def := make([]int64, rank)
	for i := range def {
		def[i] = int64(rank - 1 - i)
	}
	perm, err := n.AttrInts("perm", def)
	if err != nil {
		return err
	}
	r.emit(name, "Transpose", inputs, out, oshape, map[string]graph.Attr{"perm": graph.Ints(perm...)})
	return nil
}

// concat normalises a negative axis (gorgonia's Concat takes axes >= 0).
func (r *rewriter) concat(n *graph.Node, name string, inputs []string, out string, oshape []int64) error {
	axis, err := n.AttrInt("axis", 0)
	if err != nil {
		return err
	}
	if axis < 0 {
		axis += int64(len(oshape))
	}
	if axis < 0 || axis >= int64(len(oshape)) {
		return fmt.Errorf("axis %d of a rank-%d output", axis, len(oshape))
	}
	r.emit(name, "Concat", inputs, out, oshape, map[string]graph.Attr{"axis": graph.Int(axis)})
	return nil
}

// broadcastShape returns numpy's broadcast of a and b, or false.
func broadcastShape(a, b []int64) ([]int64, bool) {
	n := max(len(a), len(b))
	s := make([]int64, n)
	for i := range n {
		da, db := int64(1), int64(1)
		if j := i - (n - len(a)); j >= 0 {
			da = a[j]
		}
		if j := i - (n - len(b)); j >= 0 {
			db = b[j]
		}
		switch {
		case da == db || db == 1:
			s[i] = da
		case da == 1:
			s[i] = db
		default:
			return nil, false
		}
	}
	return s, true
}

// gorgonnxBroadcasts reports whether gorgonnx's broadcasting of operands of
// shapes a and b is numpy's: equal shapes, a one-element vector against a
// tensor of another rank, or numpy-compatible shapes of ranks 2 and 2, or 3 and
// 4 (gorgonnx prepends a 1 to the rank-3 one). Other cases gorgonnx either
// rejects or, for a longer vector, guesses the axis by its size.
func gorgonnxBroadcasts(a, b []int64) bool {
	if slices.Equal(a, b) {
		return true
	}
	if _, ok := broadcastShape(a, b); !ok {
		return false
	}
	switch {
	case len(a) == 1 && a[0] == 1 && len(b) != 1, len(b) == 1 && b[0] == 1 && len(a) != 1:
		return true
	case len(a) == 2 && len(b) == 2, len(a) == 3 && len(b) == 4, len(a) == 4 && len(b) == 3:
		return true
	}
	return false
}

// broadcast emits an elementwise binary op, reshaping a constant operand into
// a form gorgonnx broadcasts as numpy does (a one-element vector, or a
// rank-3 tensor against a rank-4 one, or a matrix against a matrix), and
// expanding a rank-4 computed operand with fewer elements than the output (a
// squeeze-and-excitation scale [N C 1 1]) by multiplying it with ones.
func (r *rewriter) broadcast(n *graph.Node, name string, inputs []string, out string, oshape []int64) error {
	ops := slices.Clone(inputs)
	for i, v := range ops {
		s := r.shapes[v]
		if slices.Equal(s, oshape) {
			continue
		}
		if t, ok := r.inits[v]; ok {
			shape := constantShape(s, oshape)
			if !slices.Equal(shape, s) {
				c := r.fresh(v + "/gorgonnx")
				u, err := graph.NewTensor(c, t.DType, shape, t.Raw())
				if err != nil {
					return err
				}
				r.addInit(u)
				ops[i] = c
			}
			continue
		}
		if len(s) == 4 && len(oshape) == 4 && s[0] == oshape[0] && prod(s) < prod(oshape) {
			if _, ok := broadcastShape(s, oshape); !ok {
				break
			}
			ones := make([]float32, prod(oshape[1:]))
			for j := range ones {
				ones[j] = 1
			}
			c, err := r.constant(r.sub(n, "ones"), oshape[1:], ones)
			if err != nil {
				return err
			}
			e := r.sub(n, "expand")
			r.emit(r.sub(n, "Expand"), "Mul", []string{v, c}, e, oshape, nil)
			ops[i] = e
		}
	}
	if !gorgonnxBroadcasts(r.shapes[ops[0]], r.shapes[ops[1]]) {
		r.unsupported(n, fmt.Sprintf("broadcast %v with %v", r.shapes[inputs[0]], r.shapes[inputs[1]]))
		return nil
	}
	r.emit(name, n.Op, ops, out, oshape, nil)
	return nil
}

// constantShape returns the shape a constant of shape s broadcast to out is
// given: [1] for a single element, rank 3 against rank 4 (without a leading 1,
// or with one prepended), rank 2 against rank 2.
func constantShape(s, out []int64) []int64 {
	if prod(s) == 1 && len(out) != 1 {
		return []int64{1}
	}
	full := s
	for len(full) < len(out) {
		full = append([]int64{1}, full...)
	}
	if len(out) == 4 && len(full) == 4 && full[0] == 1 {
		return full[1:]
	}
	return full
}

// spatialGeometry resolves a Conv or pooling node's geometry for an input of
// shape in (kernel: a Conv weight's spatial size, nil for a pooling node):
// explicit pads (auto_pad resolved) and the output size it gives, which must
// be that of oshape. ok is false, and n recorded as unsupported, when the
// input is not 4-D (2-D convolution or pooling) or n has dilations (gorgonnx's
// Conv passes them on, its MaxPool refuses them).
func (r *rewriter) spatialGeometry(n *graph.Node, in, kernel, oshape []int64) (g graph.ConvGeometry, outs []int64, ok bool, err error) {
	if len(in) != 4 {
		r.unsupported(n, "not 2-D")
		return g, nil, false, nil
	}
	if g, err = n.Geometry(2, kernel); err != nil {
		return g, nil, false, err
	}
	outs = make([]int64, 2)
	for i := range 2 {
		if outs[i], err = g.OutSize(i, in[2+i]); err != nil {
			return g, nil, false, err
		}
	}
	if !slices.Equal(outs, oshape[2:]) {
		return g, nil, false, fmt.Errorf("output %v, geometry gives %v", oshape, outs)
	}
	if !allOnes(g.Dilations) {
		r.unsupported(n, "dilations")
		return g, nil, false, nil
	}
	return g, outs, true, nil
}

func allOnes(v []int64) bool {
	for _, d := range v {
		if d != 1 {
			return false
		}
	}
	return true
}

// conv emits a Conv gorgonnx computes as ONNX does. gorgonnx v0.5.0 requires
// kernel_shape, reads pads as [pad_h, _, pad_w, _] after checking
// pads[0]==pads[1] and pads[2]==pads[3] (ONNX's order is h_begin, w_begin,
// h_end, w_end), ignores group and passes dilations on; so the rewrite writes
// kernel_shape, pads as [h, h, w, w] (symmetric pads only), and expands a
// grouped convolution into a dense one whose weight is zero between groups.
func (r *rewriter) conv(n *graph.Node, name string, inputs []string, out string, oshape []int64) error {
	x, w := r.shapes[inputs[0]], r.shapes[inputs[1]]
	if len(w) != 4 {
		r.unsupported(n, "not 2-D")
		return nil
	}
	g, _, ok, err := r.spatialGeometry(n, x, w[2:], oshape)
	if err != nil || !ok {
		return err
	}
	if g.Pads[0] != g.Pads[2] || g.Pads[1] != g.Pads[3] {
		r.unsupported(n, "asymmetric pads")
		return nil
	}
	group, err := n.AttrInt("group", 1)
	if err != nil {
		return err
	}
	ins := slices.Clone(inputs)
	if group != 1 {
		t, ok := r.inits[inputs[1]]
		if !ok {
			r.unsupported(n, "group>1 with a computed weight")
			return nil
		}
		cin := x[1]
		if group <= 0 || cin%group != 0 || w[0]%group != 0 || w[1]*group != cin {
			return fmt.Errorf("group %d for input %v and weight %v", group, x, w)
		}
		if w[0]*cin*w[2]*w[3] > maxExpandedWeights {
			r.unsupported(n, "group>1 too large to expand")
			return nil
		}
		dense, err := expandGroups(t, group, cin, r.fresh(inputs[1]+"/dense"))
		if err != nil {
			return err
		}
		r.addInit(dense)
		ins[1] = dense.Name
	}
	attrs := map[string]graph.Attr{
		"kernel_shape": graph.Ints(g.Kernel...),
		"strides":      graph.Ints(g.Strides...),
		"pads":         graph.Ints(g.Pads[0], g.Pads[0], g.Pads[1], g.Pads[1]),
	}
	r.emit(name, "Conv", ins, out, oshape, attrs)
	return nil
}

// expandGroups returns the dense weight [out, cin, kh, kw] equivalent to the
// grouped weight t [out, cin/group, kh, kw]: zero outside each group's block.
func expandGroups(t *graph.Tensor, group, cin int64, name string) (*graph.Tensor, error) {
	w, err := t.Float32s()
	if err != nil {
		return nil, err
	}
	cout, cg, k := t.Shape[0], t.Shape[1], t.Shape[2]*t.Shape[3]
	dense := make([]float32, cout*cin*k)
	perGroup := cout / group
	for o := range cout {
		base := (o / perGroup) * cg
		for c := range cg {
			copy(dense[(o*cin+base+c)*k:(o*cin+base+c+1)*k], w[(o*cg+c)*k:(o*cg+c+1)*k])
		}
	}
	return graph.FromFloat32s(name, []int64{cout, cin, t.Shape[2], t.Shape[3]}, dense)
}

// maxPool emits a MaxPool gorgonnx computes as ONNX does. gorgonnx v0.5.0
// passes pads unchanged to gorgonia's MaxPool2D, which (v0.9.18) reads them
// as [a, b, c, d] with b and d the top and left pads and a+b, c+d the total
// padding; it refuses ceil_mode=1 and any dilations attribute. So the rewrite
// writes pads as [h_end, h_begin, w_end, w_begin], and replaces ceil_mode by
// the end padding that gives the same output size (padding never wins a max).
func (r *rewriter) maxPool(n *graph.Node, name string, inputs []string, out string, oshape []int64) error {
	x := r.shapes[inputs[0]]
	g, outs, ok, err := r.spatialGeometry(n, x, nil, oshape)
	if err != nil || !ok {
		return err
	}
	var ends [2]int64
	for i := range 2 {
		ends[i] = (outs[i]-1)*g.Strides[i] + g.Kernel[i] - x[2+i] - g.Pads[i]
		if ends[i] < g.Pads[2+i] {
			ends[i] = g.Pads[2+i]
		}
		if g.Pads[i] >= g.Kernel[i] {
			r.unsupported(n, "pads not smaller than the kernel")
			return nil
		}
	}
	attrs := map[string]graph.Attr{
		"kernel_shape": graph.Ints(g.Kernel...),
		"strides":      graph.Ints(g.Strides...),
		"pads":         graph.Ints(ends[0], g.Pads[0], ends[1], g.Pads[1]),
	}
	r.emit(name, "MaxPool", inputs[:1], out, oshape, attrs)
	return nil
}

// averagePool emits an AveragePool as a Conv whose weight is 1/(kh*kw) on the
// diagonal of the channels (gorgonnx has no AveragePool). Padding is
// supported only where it is counted (count_include_pad=1), as a Conv's zero
// padding is, and symmetric; ceil_mode only where it does not change the
// output size.
func (r *rewriter) averagePool(n *graph.Node, name string, inputs []string, out string, oshape []int64) error {
	x := r.shapes[inputs[0]]
	g, outs, ok, err := r.spatialGeometry(n, x, nil, oshape)
	if err != nil || !ok {
		return err
	}
	padded := slices.ContainsFunc(g.Pads, func(p int64) bool { return p != 0 })
	cip, err := n.AttrInt("count_include_pad", 0)
	if err != nil {
		return err
	}
	if padded && (cip == 0 || g.Pads[0] != g.Pads[2] || g.Pads[1] != g.Pads[3]) {
		r.unsupported(n, "uncounted or asymmetric pads")
		return nil
	}
	for i := range 2 {
		if (x[2+i]+g.Pads[i]+g.Pads[2+i]-g.Kernel[i])/g.Strides[i]+1 != outs[i] {
			r.unsupported(n, "ceil_mode")
			return nil
		}
	}
	c := x[1]
	k := g.Kernel[0] * g.Kernel[1]
	if c*c*k > maxExpandedWeights {
		r.unsupported(n, "too many channels")
		return nil
	}
	vals := make([]float32, c*c*k)
	for o := range c {
		for j := range k {
			vals[(o*c+o)*k+j] = 1 / float32(k)
		}
	}
	wname, err := r.constant(r.sub(n, "weight"), []int64{c, c, g.Kernel[0], g.Kernel[1]}, vals)
	if err != nil {
		return err
	}
	attrs := map[string]graph.Attr{
		"kernel_shape": graph.Ints(g.Kernel...),
		"strides":      graph.Ints(g.Strides...),
		"pads":         graph.Ints(g.Pads[0], g.Pads[0], g.Pads[1], g.Pads[1]),
	}
	r.emit(name, "Conv", []string{inputs[0], wname}, out, oshape, attrs)
	return nil
}

// reduceMean emits a ReduceMean over the spatial axes of a 4-D tensor (the
// global average pooling PyTorch exports as x.mean([2, 3])) as a
// GlobalAveragePool, followed by a Reshape when keepdims is 0.
func (r *rewriter) reduceMean(n *graph.Node, name string, inputs []string, out string, oshape []int64) error {
	x := r.shapes[inputs[0]]
	axes, err := n.AttrInts("axes", nil)
	if err != nil {
		return err
	}
	if len(inputs) > 1 {
		var ok bool
		if axes, ok, err = r.constInts(n, inputs[1], "axes"); err != nil || !ok {
			return err
		}
	}
	norm := make([]int64, len(axes))
	for i, a := range axes {
		if a < 0 {
			a += int64(len(x))
		}
		norm[i] = a
	}
	slices.Sort(norm)
	if len(x) != 4 || !slices.Equal(norm, []int64{2, 3}) {
		r.unsupported(n, "not over the spatial axes of a 4-D tensor")
		return nil
	}
	pooled := []int64{x[0], x[1], 1, 1}
	if slices.Equal(oshape, pooled) {
		r.emit(name, "GlobalAveragePool", inputs[:1], out, oshape, nil)
		return nil
	}
	p := r.sub(n, "pooled")
	r.emit(r.sub(n, "GlobalAveragePool"), "GlobalAveragePool", inputs[:1], p, pooled, nil)
	return r.reshape(name, p, out, oshape)
}

// gemm emits a Gemm as gorgonnx computes it correctly. gorgonnx wants three
// inputs and, when C has as many elements as the output, writes the product
// into C's own storage, corrupting a constant C for the next run; so an absent
// C becomes a zero constant of one element (or of a row, for a single output),
// and a constant C of the output's size is added by an Add after a Gemm with
// such a zero C.
func (r *rewriter) gemm(n *graph.Node, name string, inputs []string, out string, oshape []int64) error {
	a, b := r.shapes[inputs[0]], r.shapes[inputs[1]]
	if len(a) != 2 || len(b) != 2 {
		r.unsupported(n, "rank≠2")
		return nil
	}
	g, err := n.Gemm()
	if err != nil {
		return err
	}
	attrs := map[string]graph.Attr{"transA": flag(g.TransA), "transB": flag(g.TransB), "alpha": graph.Float(g.Alpha)}
	beta := g.Beta
	size := prod(oshape)
	var zero []int64 // the shape of a zero C gorgonnx does not overwrite
	switch {
	case size != 1:
		zero = []int64{1}
	case oshape[1] != size:
		zero = []int64{oshape[1]}
	}
	ins := slices.Clone(inputs)
	var bias string
	if len(ins) == 3 {
		c := prod(r.shapes[ins[2]])
		switch {
		case c == size:
			t, ok := r.inits[ins[2]]
			if !ok {
				r.unsupported(n, "computed C of the output's size")
				return nil
			}
			vals, err := t.Float32s()
			if err != nil {
				return err
			}
			for i := range vals {
				vals[i] *= beta
			}
			if bias, err = r.constant(r.sub(n, "C"), constantShape(t.Shape, oshape), vals); err != nil {
				return err
			}
			ins = ins[:2]
		case c != 1 && c != oshape[1]:
			r.unsupported(n, "C broadcast")
			return nil
		}
	}
	if len(ins) == 2 {
		if zero == nil {
			r.unsupported(n, "a single output")
			return nil
		}
		c, err := r.constant(r.sub(n, "zero"), zero, make([]float32, prod(zero)))
		if err != nil {
			return err
		}
		ins = append(ins, c)
	}
	attrs["beta"] = graph.Float(beta)
	if bias == "" {
		r.emit(name, "Gemm", ins, out, oshape, attrs)
		return nil
	}
	prodOut := r.sub(n, "product")
	r.emit(r.sub(n, "Gemm"), "Gemm", ins, prodOut, oshape, attrs)
	if !gorgonnxBroadcasts(oshape, r.shapes[bias]) {
		r.unsupported(n, "C broadcast")
		return nil
	}
	r.emit(name, "Add", []string{prodOut, bias}, out, oshape, nil)
	return nil
}

// flag is an INT attribute of 1 for true, 0 for false (gorgonnx transposes
// only for 1).
func flag(b bool) graph.Attr {
	if b {
		return graph.Int(1)
	}
	return graph.Int(0)
}

// batchNorm emits an inference-mode BatchNormalization of a 4-D tensor with
// constant parameters (gorgonnx reads them at graph construction for a batch
// of one). For a batch of one gorgonnx normalises its input in place, so the
// BatchNormalization is given a copy (x times 1) that no other node reads.
func (r *rewriter) batchNorm(n *graph.Node, name string, inputs []string, out string, oshape []int64) error {
	if len(inputs) != 5 || len(r.shapes[inputs[0]]) != 4 {
		r.unsupported(n, "not 4-D")
		return nil
	}
	if tm, err := n.AttrInt("training_mode", 0); err != nil {
		return err
	} else if tm != 0 {
		r.unsupported(n, "training_mode")
		return nil
	}
	for _, v := range inputs[1:] {
		if _, ok := r.inits[v]; !ok {
			r.unsupported(n, "computed parameters")
			return nil
		}
	}
	eps, err := n.AttrFloat("epsilon", 1e-5)
	if err != nil {
		return err
	}
	ins := slices.Clone(inputs)
	if r.batch == 1 {
		one, err := r.constant(r.sub(n, "one"), []int64{1}, []float32{1})
		if err != nil {
			return err
		}
		c := r.sub(n, "input_copy")
		r.emit(r.sub(n, "Copy"), "Mul", []string{ins[0], one}, c, r.shapes[ins[0]], nil)
		ins[0] = c
	}
	r.emit(name, n.Op, ins, out, oshape, map[string]graph.Attr{"epsilon": graph.Float(eps)})
	return nil
}

// constScalar returns the value of operand v of n, a constant scalar; ok is
// false, and n recorded as unsupported ("computed " + what), when v is not an
// initializer of one element.
func (r *rewriter) constScalar(n *graph.Node, v, what string) (float32, bool, error) {
	t, ok := r.inits[v]
	if !ok {
		r.unsupported(n, "computed "+what)
		return 0, false, nil
	}
	f, err := t.Float32s()
	if err != nil {
		return 0, false, err
	}
	if len(f) != 1 {
		r.unsupported(n, "computed "+what)
		return 0, false, nil
	}
	return f[0], true, nil
}

// constInts returns the integers of operand v of n; ok is false, and n
// recorded as unsupported ("computed " + what), when v is not an initializer.
func (r *rewriter) constInts(n *graph.Node, v, what string) ([]int64, bool, error) {
	t, ok := r.inits[v]
	if !ok {
		r.unsupported(n, "computed "+what)
		return nil, false, nil
	}
	vals, err := t.Int64s()
	if err != nil {
		return nil, false, err
	}
	return vals, true, nil
}

// clip emits Clip(x, lo, hi) as Min(Max(x, lo), hi) with constant bounds
// (gorgonnx has Max and Min but no Clip); an absent bound is skipped.
func (r *rewriter) clip(n *graph.Node, name string, inputs []string, out string, oshape []int64) error {
	lo, hi := float32(math.Inf(-1)), float32(math.Inf(1))
	var err error
	if lo, err = n.AttrFloat("min", lo); err != nil {
		return err
	}
	if hi, err = n.AttrFloat("max", hi); err != nil {
		return err
	}
	for i, p := range []*float32{&lo, &hi} {
		if len(inputs) <= i+1 || inputs[i+1] == "" {
			continue
		}
		v, ok, err := r.constScalar(n, inputs[i+1], "bounds")
		if err != nil || !ok {
			return err
		}
		*p = v
	}
	return r.clamp(n, name, inputs[0], out, oshape, lo, hi)
}

// clamp emits out = Min(Max(x, lo), hi), skipping infinite bounds, as nodes
// named after name (the last one is called name).
func (r *rewriter) clamp(n *graph.Node, name, x, out string, oshape []int64, lo, hi float32) error {
	type step struct {
		op string
		v  float32
	}
	var steps []step
	if !math.IsInf(float64(lo), -1) {
		steps = append(steps, step{"Max", lo})
	}
	if !math.IsInf(float64(hi), 1) {
		steps = append(steps, step{"Min", hi})
	}
	if len(steps) == 0 {
		r.emit(name, "Identity", []string{x}, out, oshape, nil)
		return nil
	}
	cur := x
	for i, s := range steps {
		c, err := r.scalar(r.sub(n, strings.ToLower(s.op)), s.v, oshape)
		if err != nil {
			return err
		}
		dst, nodeName := out, name
		if i < len(steps)-1 {
			dst, nodeName = r.sub(n, s.op+"_output"), r.sub(n, s.op)
		}
		r.emit(nodeName, s.op, []string{cur, c}, dst, oshape, nil)
		cur = dst
	}
	return nil
}

// hardSigmoid emits HardSigmoid(x) = clamp(alpha*x + beta, 0, 1) as Mul, Add,
// Max and Min, and HardSwish(x) = x * HardSigmoid(x) with alpha 1/6, beta 1/2
// (PyTorch computes relu6(x + 3) / 6: equal up to rounding).
func (r *rewriter) hardSigmoid(n *graph.Node, name string, inputs []string, out string, oshape []int64) error {
	alpha, beta := float32(1.0/6), float32(0.5)
	if n.Op == "HardSigmoid" {
		var err error
		if alpha, err = n.AttrFloat("alpha", 0.2); err != nil {
			return err
		}
		if beta, err = n.AttrFloat("beta", 0.5); err != nil {
			return err
		}
	}
	x := inputs[0]
	a, err := r.scalar(r.sub(n, "alpha"), alpha, oshape)
	if err != nil {
		return err
	}
	b, err := r.scalar(r.sub(n, "beta"), beta, oshape)
	if err != nil {
		return err
	}
	ax, axb := r.sub(n, "Mul_output"), r.sub(n, "Add_output")
	r.emit(r.sub(n, "Mul"), "Mul", []string{x, a}, ax, oshape, nil)
	r.emit(r.sub(n, "Add"), "Add", []string{ax, b}, axb, oshape, nil)
	if n.Op == "HardSigmoid" {
		return r.clamp(n, name, axb, out, oshape, 0, 1)
	}
	hs := r.sub(n, "HardSigmoid_output")
	if err := r.clamp(n, r.sub(n, "Clamp"), axb, hs, oshape, 0, 1); err != nil {
		return err
	}
	r.emit(name, "Mul", []string{x, hs}, out, oshape, nil)
	return nil
}

// pad emits a constant-mode Pad as Concats of constant blocks (gorgonnx has no
// Pad): along each padded axis other than the batch, a block of the pad value
// before and after. An all-zero Pad becomes an Identity.
func (r *rewriter) pad(n *graph.Node, name string, inputs []string, out string, oshape []int64) error {
	mode, err := n.AttrString("mode", "constant")
	if err != nil {
		return err
	}
	if mode != "constant" {
		r.unsupported(n, "mode="+mode)
		return nil
	}
	x := r.shapes[inputs[0]]
	pads, err := n.AttrInts("pads", nil)
	if err != nil {
		return err
	}
	if len(inputs) > 1 {
		var ok bool
		if pads, ok, err = r.constInts(n, inputs[1], "pads"); err != nil || !ok {
			return err
		}
	}
	var value float32
	if value, err = n.AttrFloat("value", 0); err != nil {
		return err
	}
	if len(inputs) > 2 && inputs[2] != "" {
		v, ok, err := r.constScalar(n, inputs[2], "value")
		if err != nil || !ok {
			return err
		}
		value = v
	}
	if len(inputs) > 3 || len(pads) != 2*len(x) {
		r.unsupported(n, "axes")
		return nil
	}
	rank := len(x)
	var axes []int
	for i := range rank {
		if pads[i] < 0 || pads[rank+i] < 0 {
			r.unsupported(n, "negative pads")
			return nil
		}
		if pads[i] > 0 || pads[rank+i] > 0 {
			if i == 0 {
				r.unsupported(n, "batch padding")
				return nil
			}
			axes = append(axes, i)
		}
	}
	if len(axes) == 0 {
		r.emit(name, "Identity", inputs[:1], out, oshape, nil)
		return nil
	}
	cur, shape := inputs[0], slices.Clone(x)
	for j, axis := range axes {
		parts := []string{}
		next := slices.Clone(shape)
		next[axis] += pads[axis] + pads[rank+axis]
		for k, p := range []int64{pads[axis], pads[rank+axis]} {
			if p == 0 {
				if k == 0 {
					parts = append(parts, cur)
				}
				continue
			}
			bs := slices.Clone(shape)
			bs[axis] = p
			if prod(bs) > maxExpandedWeights {
				r.unsupported(n, "too large")
				return nil
			}
			vals := make([]float32, prod(bs))
			for i := range vals {
				vals[i] = value
			}
			c, err := r.constant(r.sub(n, fmt.Sprintf("pad%d_%d", axis, k)), bs, vals)
			if err != nil {
				return err
			}
			parts = append(parts, c)
			if k == 0 {
				parts = append(parts, cur)
			}
		}
		dst, nodeName := out, name
		if j < len(axes)-1 {
			dst, nodeName = r.sub(n, fmt.Sprintf("padded%d", axis)), r.sub(n, fmt.Sprintf("Concat%d", axis))
		}
		r.emit(nodeName, "Concat", parts, dst, next, map[string]graph.Attr{"axis": graph.Int(int64(axis))})
		cur, shape = dst, next
	}
	if !slices.Equal(shape, oshape) {
		return fmt.Errorf("padded to %v, output %v", shape, oshape)
	}
	return nil
}

// slice emits a Slice of the channels of a 4-D tensor (with constant starts,
// ends and step 1: ShuffleNet's channel split) as a 1x1 Conv whose weight
// selects the channels (gorgonnx has no Slice or Split). The result is exact
// for finite inputs: each output is 1*x plus zeros.
func (r *rewriter) slice(n *graph.Node, name string, inputs []string, out string, oshape []int64) error {
	x := r.shapes[inputs[0]]
	if len(inputs) < 3 {
		r.unsupported(n, "starts and ends as attributes")
		return nil
	}
	vals := make([][]int64, 4)
	for i := 1; i < len(inputs) && i < 5; i++ {
		v, ok, err := r.constInts(n, inputs[i], "parameters")
		if err != nil || !ok {
			return err
		}
		vals[i-1] = v
	}
	starts, ends, axes, steps := vals[0], vals[1], vals[2], vals[3]
	if axes == nil {
		for i := range starts {
			axes = append(axes, int64(i))
		}
	}
	if len(x) != 4 || len(starts) != len(ends) || len(axes) != len(starts) {
		r.unsupported(n, "not of the channels of a 4-D tensor")
		return nil
	}
	begin, end := int64(0), x[1]
	for i, a := range axes {
		if a < 0 {
			a += 4
		}
		if steps != nil && steps[i] != 1 {
			r.unsupported(n, "step≠1")
			return nil
		}
		s, e := clampIndex(starts[i], x[a]), clampIndex(ends[i], x[a])
		if a != 1 {
			if s != 0 || e != x[a] {
				r.unsupported(n, "not of the channels of a 4-D tensor")
				return nil
			}
			continue
		}
		begin, end = s, e
	}
	c := x[1]
	if end-begin != oshape[1] || end <= begin {
		return fmt.Errorf("channels %d:%d of %v, output %v", begin, end, x, oshape)
	}
	if (end-begin)*c > maxExpandedWeights {
		r.unsupported(n, "too many channels")
		return nil
	}
	w := make([]float32, (end-begin)*c)
	for o := range end - begin {
		w[o*c+begin+o] = 1
	}
	wname, err := r.constant(r.sub(n, "select"), []int64{end - begin, c, 1, 1}, w)
	if err != nil {
		return err
	}
	attrs := map[string]graph.Attr{
		"kernel_shape": graph.Ints(1, 1), "strides": graph.Ints(1, 1), "pads": graph.Ints(0, 0, 0, 0),
	}
	r.emit(name, "Conv", []string{inputs[0], wname}, out, oshape, attrs)
	return nil
}

// clampIndex resolves a Slice start or end (negative from the end, clamped to
// [0, dim]).
func clampIndex(i, dim int64) int64 {
	if i < 0 {
		i += dim
	}
	return max(0, min(i, dim))
}
