package graph

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
)

// batchMark stands for the batch size in the int64 shape vectors that Fold
// evaluates symbolically (Shape of a value with a dynamic batch dimension, then
// Gather, Unsqueeze, Concat, ...): an arbitrary value that no real shape holds.
const batchMark = math.MinInt64 + 0x5eedba7c

// Fold returns a copy of g with its constant sub-graphs evaluated and every
// value's type and shape inferred, for inputs of shape inputShape (without the
// batch dimension, e.g. [1 28 28]).
//
// The graph must have one data input; its first dimension is the batch, kept
// dynamic unless the graph declares it static. Nodes whose inputs are all
// constant (initializers, Constant nodes, Shape of a value whose shape is known,
// and what is computed from those) are evaluated for the ops PyTorch emits
// around flatten/view/pad/chunk/channel shuffle: Constant, ConstantOfShape,
// Shape, Gather, Unsqueeze, Squeeze, Concat, Slice, Reshape, Flatten, Cast,
// Identity, Dropout, Transpose, Add, Sub, Mul, Div, Range, Equal and Where. Shape
// vectors holding the batch size are evaluated symbolically, and a Reshape to
// such a vector gets a constant target with -1 for the batch. The results are
// initializers named after the values they replace (SqueezeNet's Identity-shared
// biases each become their own initializer). Identity and inference-mode Dropout
// nodes are then bypassed (unless they compute a graph output), nodes whose
// results are unused are removed, and so are unused initializers. ValueInfo
// gets the type and shape of every remaining node output; a graph input that is
// also an initializer is treated as a constant and dropped from Inputs.
//
// Fold evaluates what it can and leaves other nodes as they are: Check reports
// what remains unsupported. Errors name the node.
func Fold(g *Graph, inputShape []int64) (*Graph, error) {
	if err := g.Validate(); err != nil {
		return nil, fmt.Errorf("fold: %w", err)
	}
	f := &folder{
		consts: g.InitializerMap(), syms: map[string]*Tensor{}, infos: map[string]info{},
		alias: map[string]string{}, names: map[string]bool{}, outputs: map[string]bool{},
		consumers: g.Consumers(),
	}
	data := g.DataInputs()
	if len(data) != 1 {
		return nil, fmt.Errorf("fold: graph has %d data inputs, want 1", len(data))
	}
	in := data[0]
	shape, err := inputDims(in, inputShape)
	if err != nil {
		return nil, fmt.Errorf("fold: %w", err)
	}
	f.batchName = "batch"
	if len(in.DimNames) > 0 && in.DimNames[0] != "" {
		f.batchName = in.DimNames[0]
	}
	f.infos[in.Name] = ranked(in.DType, shape)
	for _, t := range g.Initializers {
		f.infos[t.Name] = ranked(t.DType, t.Shape)
		f.names[t.Name] = true
	}
	for _, v := range g.Inputs {
		f.names[v.Name] = true
	}
	for _, v := range g.Outputs {
		f.outputs[v.Name] = true
	}
	for _, n := range g.Nodes {
		for _, o := range n.Outputs {
			f.names[o] = true
		}
	}
	for i := range g.Nodes {
		n := &g.Nodes[i]
		if err := f.node(n); err != nil {
			if errors.Is(err, errNoFold) {
				err = fmt.Errorf("cannot evaluate")
			}
			return nil, fmt.Errorf("fold: %s (%s): %w", n.Ref(), n.Op, err)
		}
	}
	return f.finish(g, in)
}

// inputDims returns the data input's shape: the batch then inputShape, checked
// against what the graph declares.
func inputDims(in Value, inputShape []int64) ([]int64, error) {
	shape := append([]int64{dimBatch}, inputShape...)
	for _, d := range inputShape {
		if d <= 0 || d > maxAttr {
			return nil, fmt.Errorf("input shape %v: dimensions must be positive", inputShape)
		}
	}
	if in.Shape == nil {
		return shape, nil
	}
	if len(in.Shape) != len(shape) {
		return nil, fmt.Errorf("input %q has shape %v, not [batch %v]", in.Name, in.Shape, inputShape)
	}
	if in.Shape[0] > 0 {
		shape[0] = in.Shape[0]
	}
	for i, d := range in.Shape[1:] {
		if d >= 0 && d != inputShape[i] {
			return nil, fmt.Errorf("input %q has shape %v, not [batch %v]", in.Name, in.Shape, inputShape)
		}
	}
	return shape, nil
}

type folder struct {
	consts    map[string]*Tensor // known values: initializers and folded results
	syms      map[string]*Tensor // int64 shape vectors holding batchMark
	infos     map[string]info
	alias     map[string]string // bypassed Identity/Dropout output -> input
	names     map[string]bool   // every value name in use
	outputs   map[string]bool   // graph outputs
	consumers map[string][]int  // of the original graph
	batchName string
	kept      []Node
	newInits  []string // folded values, in order of creation
}

// fresh returns an unused value name based on base.
func (f *folder) fresh(base string) string {
	name := base
	for k := 1; f.names[name]; k++ {
		name = base + "_" + strconv.Itoa(k)
	}
	f.names[name] = true
	return name
}

func (f *folder) resolve(name string) string {
	if a, ok := f.alias[name]; ok {
		return a
	}
	return name
}

func (f *folder) node(orig *Node) error {
	n := orig.clone()
	for i, in := range n.Inputs {
		n.Inputs[i] = f.resolve(in)
	}
	ins := make([]*Tensor, len(n.Inputs))
	allConst, anySym := true, false
	for i, name := range n.Inputs {
		switch {
		case name == "":
		case f.consts[name] != nil:
			ins[i] = f.consts[name]
		case f.syms[name] != nil:
			anySym = true
			allConst = false
		default:
			allConst = false
		}
	}
	if n.Domain == "" {
		if n.Op == "Shape" && len(n.Inputs) == 1 && len(n.Outputs) == 1 {
			if done, err := f.shape(&n); done || err != nil {
				return err
			}
		}
		if allConst && foldable[n.Op] {
			outs, err := evalNode(&n, ins)
			if err == nil {
				return f.setConsts(&n, outs)
			}
			if !errors.Is(err, errNoFold) {
				return err
			}
		}
		if anySym && layoutOps[n.Op] {
			if done, err := f.symbolic(&n, ins); done || err != nil {
				return err
			}
		}
		if n.Op == "Reshape" && len(n.Inputs) >= 2 && ins[0] == nil {
			if err := f.reshape(&n); err != nil {
				return err
			}
			ins[1] = f.consts[n.Inputs[1]]
		}
		if f.bypass(&n, ins) {
			return nil
		}
	}
	infos := make([]info, len(n.Inputs))
	for i, name := range n.Inputs {
		infos[i] = f.infos[name]
	}
	outs, err := infer(&n, infos, ins)
	if err != nil {
		return err
	}
	for i, o := range n.Outputs {
		if o == "" {
			continue
		}
		for _, d := range outs[i].shape {
			if d < dimUnknown || d > maxElems {
				return fmt.Errorf("output %q: inferred shape %s out of range", o, dimString(outs[i].shape))
			}
		}
		f.infos[o] = outs[i]
	}
	f.kept = append(f.kept, n)
	return nil
}

// setConsts records the folded outputs of n.
func (f *folder) setConsts(n *Node, outs []*Tensor) error {
	for i, o := range n.Outputs {
		if o == "" {
			continue
		}
		if i >= len(outs) {
			return errNoFold
		}
		f.consts[o] = outs[i]
		f.infos[o] = ranked(outs[i].DType, outs[i].Shape)
		f.newInits = append(f.newInits, o)
	}
	return nil
}

// shape folds Shape of a value whose shape is known (up to the batch size).
func (f *folder) shape(n *Node) (bool, error) {
	x := f.infos[n.Inputs[0]]
	if !x.ranked || slices.Contains(x.shape, dimUnknown) {
		return false, nil
	}
	r := int64(len(x.shape))
	start, err := n.AttrInt("start", 0)
	if err != nil {
		return false, err
	}
	end, err := n.AttrInt("end", r)
	if err != nil {
		return false, err
	}
	start, end = sliceRange(r, start, end, 1)
	vals := []int64{}
	mark := false
	for _, d := range x.shape[start:max(start, end)] {
		if d == dimBatch {
			d, mark = batchMark, true
		}
		vals = append(vals, d)
	}
	t, err := FromInt64s("", []int64{int64(len(vals))}, vals)
	if err != nil {
		return false, err
	}
	return true, f.setSymOrConst(n, []*Tensor{t}, mark)
}

// setSymOrConst records n's outputs: symbolic (n kept, to be removed if unused)
// when any holds batchMark, else constant (n dropped).
func (f *folder) setSymOrConst(n *Node, outs []*Tensor, mark bool) error {
	if !mark {
		return f.setConsts(n, outs)
	}
	for i, o := range n.Outputs {
		if o != "" && i < len(outs) {
			f.syms[o] = outs[i]
			f.infos[o] = ranked(Int64, outs[i].Shape)
		}
	}
	f.kept = append(f.kept, *n)
	return nil
}

// symbolic evaluates a layout op on shape vectors holding batchMark.
func (f *folder) symbolic(n *Node, ins []*Tensor) (bool, error) {
	args := slices.Clone(ins)
	for i, name := range n.Inputs {
		if name != "" && args[i] == nil {
			if args[i] = f.syms[name]; args[i] == nil {
				return false, nil
			}
		}
	}
	if n.Op == "Cast" {
		if to, _ := n.AttrInt("to", 0); DType(to) != Int64 {
			return false, nil
		}
	}
	if n.Op == "Gather" && len(n.Inputs) > 1 && f.syms[n.Inputs[1]] != nil {
		return false, nil // batch-dependent indices
	}
	outs, err := evalNode(n, args)
	if err != nil {
		return false, nil // left to run time
	}
	mark := false
	for _, t := range outs {
		if t.DType == Int64 {
			v, _ := t.Int64s()
			mark = mark || slices.Contains(v, batchMark)
		}
	}
	return true, f.setSymOrConst(n, outs, mark)
}

// bypass drops an Identity, or an inference-mode Dropout whose mask is unused,
// mapping its output to its input. Graph outputs are kept.
func (f *folder) bypass(n *Node, ins []*Tensor) bool {
	if len(n.Inputs) == 0 || n.Inputs[0] == "" || len(n.Outputs) == 0 || f.outputs[n.Outputs[0]] {
		return false
	}
	switch n.Op {
	case "Identity":
	case "Dropout":
		if len(n.Outputs) > 1 && n.Outputs[1] != "" &&
			(f.outputs[n.Outputs[1]] || len(f.consumers[n.Outputs[1]]) > 0) {
			return false
		}
		if len(n.Inputs) > 2 && n.Inputs[2] != "" {
			v, err := ints(ins[2])
			if err != nil || len(v) != 1 || v[0] != 0 {
				return false
			}
		}
	default:
		return false
	}
	f.alias[n.Outputs[0]] = n.Inputs[0]
	return true
}
