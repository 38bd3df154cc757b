package model

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model/graph"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/nn"
	"github.com/sugarme/gotch/ts"
)

// GraphArch is the Spec.Arch of a model built by FromGraph rather than from the
// zoo.
const GraphArch = "graph"

// FromGraph returns a model that executes g on dev: g is folded (graph.Fold,
// for the per-sample input shape the graph declares, which must be static
// apart from the batch dimension: fold a graph with other dynamic dimensions
// first) and checked (graph.Check), every node is compiled once into an
// operation on libtorch tensors, and the float initializers the operations read
// become the model's parameters and buffers, named as the initializers (a
// PyTorch export keeps the state_dict names, e.g. "conv1.weight",
// "bn1.running_mean"). Conv, Gemm and MatMul nodes with an initializer weight
// are the fault sites, named as graph.WeightSites names them; the stages are
// the graph's cuts (see Model.NumStages). Errors name the node.
func FromGraph(g *graph.Graph, dev gotch.Device) (*Model, error) {
	in := g.DataInputs()
	if len(in) != 1 {
		return nil, fmt.Errorf("model: graph has %d data inputs, want 1", len(in))
	}
	shape := in[0].Shape
	if len(shape) < 2 || slices.ContainsFunc(shape[1:], func(d int64) bool { return d < 0 }) {
		return nil, fmt.Errorf("model: graph input %q has shape %v: want [batch, static dims...] (fold it with graph.Fold first)", in[0].Name, shape)
	}
	spec := Spec{Arch: GraphArch}
	if len(shape) == 4 {
		spec.InChannels, spec.Height, spec.Width = shape[1], shape[2], shape[3]
	}
	var m *Model
	err := torch.Do(func() error {
		var err error
		m, err = compileGraph(g, spec, shape[1:], dev)
		return err
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// compiler turns a folded graph into a model.
type compiler struct {
	g      *graph.Graph
	m      *Model
	dev    gotch.Device
	consts map[string]*ts.Tensor // initializers the ops read, as tensors
	slots  map[string]int        // computed values
}

// compileGraph folds, checks and compiles g (on the torch thread).
func compileGraph(g *graph.Graph, spec Spec, inShape []int64, dev gotch.Device) (*Model, error) {
	// Unsupported ops and opsets first: folding a graph with ops it does not
	// know would fail on what they compute.
	if err := graph.Check(g); err != nil {
		var u *graph.UnsupportedError
		var o *graph.OpsetError
		switch {
		case errors.As(err, &u) && errors.As(err, &o):
			return nil, fmt.Errorf("model: %w; %w", o, u)
		case errors.As(err, &u):
			return nil, fmt.Errorf("model: %w", u)
		case errors.As(err, &o):
			return nil, fmt.Errorf("model: %w", o)
		}
	}
	h, err := graph.Fold(g, inShape)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	if err := graph.Check(h); err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	if len(h.Outputs) != 1 {
		return nil, fmt.Errorf("model: graph has %d outputs, want 1", len(h.Outputs))
	}
	out := h.Outputs[0]
	if len(out.Shape) == 2 && out.Shape[1] > 0 && spec.Classes == 0 {
		spec.Classes = out.Shape[1]
	}
	m := &Model{spec: spec, vs: nn.NewVarStore(dev), byName: map[string]int{}, none: ts.NewTensor()}
	c := &compiler{g: h, m: m, dev: dev, consts: map[string]*ts.Tensor{}, slots: map[string]int{}}
	if err := c.params(); err != nil {
		return nil, err
	}
	if err := c.program(); err != nil {
		return nil, err
	}
	if err := c.sites(); err != nil {
		return nil, err
	}
	m.stages = m.prog.stages(m.sites)
	// The graph is kept without the parameters' data (Model.Graph rebuilds it
	// from the current values).
	m.graph = h.Clone()
	m.graph.Initializers = nil
	for _, t := range h.Initializers {
		m.inits = append(m.inits, t.Name)
		if _, isParam := m.byName[t.Name]; !isParam {
			m.graph.Initializers = append(m.graph.Initializers, t)
		}
	}
	return m, nil
}

// roles says, for each initializer an op reads as a tensor, whether it is a
// trainable parameter (a layer's weight or bias, a BatchNorm scale or shift,
// a PRelu slope, or named like a PyTorch parameter) or a buffer (BatchNorm
// running statistics, other constants).
func (c *compiler) roles() map[string]bool {
	roles := map[string]bool{}
	buffer := map[string]bool{}
	for _, n := range c.g.Nodes {
		for i, name := range n.Inputs {
			if name == "" || c.g.Initializer(name) == nil || isCompileTimeInput(n.Op, i) {
				continue
			}
			switch {
			case n.Op == "BatchNormalization" && i >= 3:
				buffer[name], roles[name] = true, false
			case (n.Op == "Conv" || n.Op == "Gemm" || n.Op == "MatMul" || n.Op == "BatchNormalization") && i >= 1,
				n.Op == "PRelu" && i == 1,
				strings.HasSuffix(name, ".weight"), strings.HasSuffix(name, ".bias"):
				if !buffer[name] {
					roles[name] = true
				}
			default:
				if _, seen := roles[name]; !seen {
					roles[name] = false
				}
			}
		}
	}
	return roles
}

// params creates, in initializer order, the tensors the ops read: float
// initializers become parameters (float32, on the VarStore under their names),
// others constants.
func (c *compiler) params() error {
	roles := c.roles()
	for _, t := range c.g.Initializers {
		trainable, used := roles[t.Name]
		if !used {
			continue
		}
		if !t.DType.IsFloat() {
			v, err := t.Int64s()
			if err != nil {
				return fmt.Errorf("model: initializer %q: %w", t.Name, err)
			}
			x, err := fromHost(v, t.Shape, c.dev, torch.FromInt64)
			if err != nil {
				return fmt.Errorf("model: initializer %q: %w", t.Name, err)
			}
			c.m.keep = append(c.m.keep, x)
			c.consts[t.Name] = x
			continue
		}
		v, err := t.Float32s()
		if err != nil {
			return fmt.Errorf("model: initializer %q: %w", t.Name, err)
		}
		x, err := fromHost(v, t.Shape, c.dev, torch.FromFloat32)
		if err != nil {
			return fmt.Errorf("model: initializer %q: %w", t.Name, err)
		}
		p, leaf := varPath(c.m.vs, t.Name)
		y, err := p.Add(leaf, x, trainable)
		_ = x.Drop()
		if err != nil {
			return fmt.Errorf("model: create %s: %w", t.Name, err)
		}
		c.m.byName[t.Name] = len(c.m.params)
		c.m.params = append(c.m.params, Param{Name: t.Name, Tensor: y, Trainable: trainable})
		c.consts[t.Name] = y
	}
	return nil
}

// fromHost copies vals into a new tensor of shape on dev with from, making a
// scalar (shape []) from a one-element vector (gotch cannot create 0-d
// tensors directly).
func fromHost[T any](vals []T, shape []int64, dev gotch.Device, from func([]T, []int64, gotch.Device) (*ts.Tensor, error)) (*ts.Tensor, error) {
	if len(shape) > 0 {
		return from(vals, shape, dev)
	}
	x, err := from(vals, []int64{1}, dev)
	if err != nil {
		return nil, err
	}
	return x.Squeeze(true)
}

// varPath returns the VarStore path and leaf name of a dotted parameter name
// ("layer1.0.conv1.weight": path layer1/0/conv1, leaf weight).
func varPath(vs *nn.VarStore, name string) (*nn.Path, string) {
	parts := strings.Split(name, ".")
	for i, s := range parts {
		if s == "" {
			parts[i] = "_"
		}
	}
	p := vs.Root()
	for _, s := range parts[:len(parts)-1] {
		p = p.Sub(s)
	}
	return p, parts[len(parts)-1]
}

// shapeOf returns a value's shape (batch -1) as Fold inferred it.
func (c *compiler) shapeOf(name string) ([]int64, error) {
	v, ok := c.g.Value(name)
	if !ok || v.Shape == nil {
		return nil, fmt.Errorf("value %q has no known shape", name)
	}
	return v.Shape, nil
}

// constInts returns constant input i of n as int64s.
func (c *compiler) constInts(n *graph.Node, i int) ([]int64, error) {
	t := c.g.Initializer(n.Input(i))
	if t == nil {
		return nil, fmt.Errorf("input %d (%q) must be constant", i, n.Input(i))
	}
	v, err := t.Int64s()
	if err != nil {
		return nil, fmt.Errorf("input %d (%q): %w", i, n.Input(i), err)
	}
	return v, nil
}

// constFloats returns constant input i of n as float32s.
func (c *compiler) constFloats(n *graph.Node, i int) ([]float32, error) {
	t := c.g.Initializer(n.Input(i))
	if t == nil {
		return nil, fmt.Errorf("input %d (%q) must be constant", i, n.Input(i))
	}
	v, err := t.Float32s()
	if err != nil {
		return nil, fmt.Errorf("input %d (%q): %w", i, n.Input(i), err)
	}
	return v, nil
}

// slot returns the slot of a computed value, making one for a new name.
func (c *compiler) slot(name string) int {
	if s, ok := c.slots[name]; ok {
		return s
	}
	p := c.m.prog
	s := len(p.names)
	c.slots[name] = s
	p.names = append(p.names, name)
	shape, _ := c.shapeOf(name)
	p.shapes = append(p.shapes, shape)
	p.defs = append(p.defs, -1)
	p.last = append(p.last, -1)
	return s
}

// program compiles every node into a step and computes the values' lifetimes.
func (c *compiler) program() error {
	p := &program{}
	c.m.prog = p
	p.input = c.slot(c.g.DataInputs()[0].Name)
	for i := range c.g.Nodes {
		n := &c.g.Nodes[i]
		if n.Op == "Constant" {
			return fmt.Errorf("model: %s: Constant nodes must be folded (graph.Fold)", n.Ref())
		}
		op, err := c.compile(n)
		if err != nil {
			return fmt.Errorf("model: %s (%s): %w", n.Ref(), n.Op, err)
		}
		st := step{node: i, ref: n.Ref(), op: n.Op, run: op.run, alias: op.alias, inPlace: op.inPlace, site: -1}
		for k, name := range n.Inputs {
			switch {
			case name == "" || isCompileTimeInput(n.Op, k):
				st.args = append(st.args, arg{slot: -1})
			case c.consts[name] != nil:
				st.args = append(st.args, arg{slot: -1, t: c.consts[name]})
			case c.g.Initializer(name) != nil:
				return fmt.Errorf("model: %s: initializer %q is not a tensor faultline can hold", n.Ref(), name)
			default:
				s, ok := c.slots[name]
				if !ok {
					return fmt.Errorf("model: %s reads %q before it is computed", n.Ref(), name)
				}
				st.args = append(st.args, arg{slot: s})
				p.last[s] = len(p.steps)
			}
		}
		if len(st.args) == 0 {
			return fmt.Errorf("model: %s has no inputs", n.Ref())
		}
		for _, name := range n.Outputs {
			if name == "" {
				st.outs = append(st.outs, -1)
				continue
			}
			s := c.slot(name)
			p.defs[s] = len(p.steps)
			st.outs = append(st.outs, s)
		}
		p.steps = append(p.steps, st)
	}
	out, ok := c.slots[c.g.Outputs[0].Name]
	if !ok {
		return fmt.Errorf("model: output %q is not computed from the input", c.g.Outputs[0].Name)
	}
	p.output = out
	p.last[out] = len(p.steps)
	for s := range p.names {
		at := p.last[s]
		if at < 0 { // never read: dead right after its step
			at = p.defs[s]
		}
		if at >= 0 && at < len(p.steps) {
			p.steps[at].dead = append(p.steps[at].dead, s)
		}
	}
	return nil
}

// sites makes the conv and linear sites from graph.WeightSites, in node order.
func (c *compiler) sites() error {
	ws, err := graph.WeightSites(c.g)
	if err != nil {
		return fmt.Errorf("model: %w", err)
	}
	p := c.m.prog
	for _, w := range ws {
		st := &p.steps[w.NodeIndex]
		if c.consts[w.Weight] == nil || st.args[1].t == nil {
			return fmt.Errorf("model: %s: weight %q is not an initializer the node reads", st.ref, w.Weight)
		}
		if st.args[0].slot < 0 {
			return fmt.Errorf("model: %s: a layer with a constant input", st.ref)
		}
		s := Site{Name: w.Name, Index: len(c.m.sites), Node: w.Node, HasBias: w.Bias != "",
			InShape: perSample(w.InShape), OutShape: perSample(w.OutShape)}
		if s.InShape == nil || s.OutShape == nil {
			return fmt.Errorf("model: %s: unknown input or output shape", st.ref)
		}
		if w.Weight != s.Name+".weight" {
			s.WeightParam = w.Weight
		}
		if w.Bias != "" && w.Bias != s.Name+".bias" {
			s.BiasParam = w.Bias
		}
		switch w.Kind {
		case graph.ConvSite:
			s.Kind = Conv
			s.WeightShape = slices.Clone(w.WeightShape)
			geo := w.Geometry
			s.Kernel, s.Strides, s.Dilations, s.Pads = geo.Kernel, geo.Strides, geo.Dilations, geo.Pads
			s.Groups = w.Groups
			if allEqual(geo.Strides) {
				s.Stride = geo.Strides[0]
			}
			if allEqual(geo.Pads) {
				s.Padding = geo.Pads[0]
			}
		default:
			s.Kind = Linear
			ws := w.WeightShape
			if len(ws) != 2 {
				return fmt.Errorf("model: %s: weight of shape %v", st.ref, ws)
			}
			if w.Op == "Gemm" && w.TransB {
				s.WeightShape = []int64{ws[0], ws[1]}
			} else {
				s.WeightShape = []int64{ws[1], ws[0]}
				s.TransposedWeight = true
			}
			if w.Op == "Gemm" {
				var biasShape []int64
				if w.Bias != "" {
					if biasShape, err = c.shapeOf(w.Bias); err != nil {
						return fmt.Errorf("model: %s: %w", st.ref, err)
					}
				}
				why, err := gemmUnsupported(&c.g.Nodes[w.NodeIndex], s.WeightShape[0], biasShape)
				if err != nil {
					return fmt.Errorf("model: %s: %w", st.ref, err)
				}
				s.Unsupported = why
			}
		}
		st.site = len(c.m.sites)
		c.m.siteStep = append(c.m.siteStep, w.NodeIndex)
		st.selfContained = !slices.ContainsFunc(st.args[1:], func(a arg) bool { return a.slot >= 0 })
		c.m.sites = append(c.m.sites, s)
	}
	return nil
}

// gemmUnsupported says why faults cannot be injected exactly into Gemm node n
// (out outputs), or "" when it computes x W^T + b (or x W + b) as a linear
// layer does: alpha = 1, no transA, and a bias (shape bias, nil when none) of
// beta = 1 with one element per output.
func gemmUnsupported(n *graph.Node, out int64, bias []int64) (string, error) {
	g, err := n.Gemm()
	if err != nil {
		return "", err
	}
	switch {
	case g.Alpha != 1:
		return fmt.Sprintf("Gemm node %s scales its product by alpha = %g", n.Name, g.Alpha), nil
	case g.TransA:
		return fmt.Sprintf("Gemm node %s transposes its input (transA = 1)", n.Name), nil
	case bias != nil && g.Beta != 1:
		return fmt.Sprintf("Gemm node %s scales its bias by beta = %g", n.Name, g.Beta), nil
	case bias != nil && Numel(bias) != out:
		return fmt.Sprintf("Gemm node %s adds a bias of shape %v to %d outputs", n.Name, bias, out), nil
	}
	return "", nil
}

// perSample drops the batch dimension of a shape (nil stays nil).
func perSample(shape []int64) []int64 {
	if len(shape) == 0 {
		return nil
	}
	return slices.Clone(shape[1:])
}

// allEqual reports whether every element of v equals the first.
func allEqual(v []int64) bool {
	for _, x := range v {
		if x != v[0] {
			return false
		}
	}
	return len(v) > 0
}
