package model

import (
	"fmt"
	"slices"

	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model/graph"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/nn"
	"github.com/sugarme/gotch/ts"
)

// SiteKind is the kind of layer at a fault site.
type SiteKind string

// Site kinds.
const (
	Conv   SiteKind = "conv"
	Linear SiteKind = "linear"
)

// Site is one layer that can hold a fault: a conv or linear layer with a stable,
// PyTorch-style name. Shapes are per sample (no batch dimension).
type Site struct {
	Name        string   `json:"name"`
	Kind        SiteKind `json:"kind"`
	Index       int      `json:"index"` // position in the forward pass
	WeightShape []int64  `json:"weight_shape"`
	HasBias     bool     `json:"has_bias"`
	InShape     []int64  `json:"in_shape"`
	OutShape    []int64  `json:"out_shape"`
	// Stride and Padding are a conv's stride and padding when they are the
	// same on every axis and side (0 otherwise: see Strides and Pads).
	Stride  int64 `json:"stride,omitempty"`
	Padding int64 `json:"padding,omitempty"`
	Groups  int64 `json:"groups,omitempty"` // conv only
	// Kernel, Strides and Dilations are a conv's geometry per spatial axis,
	// and Pads its padding: the begin pads of every axis, then the end pads
	// (ONNX order: top, left, bottom, right).
	Kernel    []int64 `json:"kernel,omitempty"`
	Strides   []int64 `json:"strides,omitempty"`
	Pads      []int64 `json:"pads,omitempty"`
	Dilations []int64 `json:"dilations,omitempty"`
	// Node names the graph node computing the layer.
	Node string `json:"node,omitempty"`
	// WeightParam and BiasParam name the weight and bias parameters when they
	// are not Name+".weight" and Name+".bias" (an imported graph whose
	// exporter folded BatchNorm into the conv names them e.g.
	// "onnx::Conv_193").
	WeightParam string `json:"weight_param,omitempty"`
	BiasParam   string `json:"bias_param,omitempty"`
	// TransposedWeight says that a linear layer's weight parameter holds the
	// weight transposed, [in, out] (a MatMul, or a Gemm without transB);
	// WeightShape is [out, in] all the same.
	TransposedWeight bool `json:"transposed_weight,omitempty"`
	// Unsupported, when set, says why faults cannot be injected into the
	// layer exactly (e.g. a Gemm that scales its product by alpha != 1: the
	// engine's exact deltas assume y = x W^T + b); the fault engine and
	// DeepVigor+ refuse the layer with it. The model still runs it.
	Unsupported string `json:"unsupported,omitempty"`
}

// Regular reports whether the site's geometry is what Stride, Padding and
// WeightShape alone describe: a conv with the same stride and padding on every
// axis and side and no dilation, or a linear layer whose weight is stored
// [out, in]. (The fault engine and DeepVigor+ read the per-axis fields and
// TransposedWeight, so they do not need a site to be regular.)
func (s Site) Regular() bool {
	if s.Kind == Linear {
		return !s.TransposedWeight
	}
	if s.Stride < 1 {
		return false
	}
	for _, v := range s.Strides {
		if v != s.Stride {
			return false
		}
	}
	for _, v := range s.Pads {
		if v != s.Padding {
			return false
		}
	}
	for _, d := range s.Dilations {
		if d != 1 {
			return false
		}
	}
	return true
}

// Top1 is the class a row of logits predicts: the index of the first largest
// value (a NaN never compares larger, so it wins only at index 0).
func Top1(row []float32) int {
	top := 0
	for j, v := range row {
		if v > row[top] {
			top = j
		}
	}
	return top
}

// Numel is the number of elements of a tensor of shape dims (1 for a scalar).
func Numel(dims []int64) int64 {
	n := int64(1)
	for _, d := range dims {
		n *= d
	}
	return n
}

// Weight is the state_dict name of the site's weight parameter.
func (s Site) Weight() string {
	if s.WeightParam != "" {
		return s.WeightParam
	}
	return s.Name + ".weight"
}

// Bias is the state_dict name of the site's bias parameter ("" when it has
// none).
func (s Site) Bias() string {
	switch {
	case !s.HasBias:
		return ""
	case s.BiasParam != "":
		return s.BiasParam
	}
	return s.Name + ".bias"
}

// Hook is called at every site during a forward pass with the layer's input and
// output (batch first). It may return a replacement output, which the model then
// owns; returning nil (or out itself) keeps out. A hook must not drop in or out.
type Hook func(site *Site, in, out *ts.Tensor) (*ts.Tensor, error)

// Param is one named tensor of the model: a trainable parameter or a buffer
// (BatchNorm running statistics).
type Param struct {
	Name      string
	Tensor    *ts.Tensor
	Trainable bool
}

// Model is a network executed on libtorch: a graph of ONNX operations (a zoo
// architecture built by New, or any graph given to FromGraph), each node
// compiled once into an operation on tensors, with the graph's weights as its
// parameters.
type Model struct {
	spec     Spec
	vs       *nn.VarStore
	params   []Param
	byName   map[string]int
	sites    []Site
	siteStep []int // the step of each site
	prog     *program
	stages   []stage
	clamps   map[string]clamp // range restriction of site outputs (SetClamps)
	wclamp   map[string]clamp // range restriction of site weights (SetWeightClamps)
	// graph is the folded graph without the parameters' initializers, inits
	// the names of all its initializers in order (Graph rebuilds it).
	graph *graph.Graph
	inits []string
	none  *ts.Tensor   // an undefined tensor: an omitted input
	keep  []*ts.Tensor // constant tensors the steps read
}

// Spec returns the architecture description the model was built from.
func (m *Model) Spec() Spec { return m.spec }

// Sites lists the fault sites in forward order (a copy).
func (m *Model) Sites() []Site {
	out := make([]Site, len(m.sites))
	copy(out, m.sites)
	return out
}

// Site returns the site with that name.
func (m *Model) Site(name string) (Site, error) {
	for _, s := range m.sites {
		if s.Name == name {
			return s, nil
		}
	}
	return Site{}, fmt.Errorf("model: %s has no layer %q (sites: %v)", m.spec.Arch, name, m.SiteNames())
}

// SiteNames lists the site names in forward order.
func (m *Model) SiteNames() []string {
	names := make([]string, len(m.sites))
	for i, s := range m.sites {
		names[i] = s.Name
	}
	return names
}

// Params lists parameters and buffers in a stable order (the order layers were
// built, as in PyTorch's state_dict).
func (m *Model) Params() []Param { return append([]Param(nil), m.params...) }

// Param returns the tensor with that state_dict name.
func (m *Model) Param(name string) (*ts.Tensor, error) {
	i, ok := m.byName[name]
	if !ok {
		return nil, fmt.Errorf("model: %s has no parameter %q", m.spec.Arch, name)
	}
	return m.params[i].Tensor, nil
}

// VarStore is the gotch variable store holding the parameters (for optimisers).
func (m *Model) VarStore() *nn.VarStore { return m.vs }

// Device is where the parameters live.
func (m *Model) Device() gotch.Device { return m.vs.Device() }

// NumParams counts trainable scalars.
func (m *Model) NumParams() int64 {
	var n int64
	for _, p := range m.params {
		if p.Trainable {
			n += int64(p.Tensor.Numel())
		}
	}
	return n
}

// Forward runs the network on x (batch first, float32; [N, C, H, W] for the
// zoo) and returns its output (the logits [N, classes]). train selects training
// behaviour (BatchNorm batch statistics and running-stat updates); hook, when
// not nil, is called at every site. x is not modified or dropped; the caller
// owns the result.
func (m *Model) Forward(x *ts.Tensor, train bool, hook Hook) (*ts.Tensor, error) {
	return m.RunStages(x, 0, len(m.stages), train, hook)
}

// NumStages is the number of stages. The forward pass is a chain of stages,
// cut where the graph is a chain: a stage starts just before a site where the
// value it reads is the only one computed so far that later nodes need, so a
// pass can start at any stage from a saved input (prefix reuse: the golden
// activations up to a faulty layer are computed once and reused for every
// fault). Every stage holds at least one site; a residual block, whose input
// its shortcut reads again, is one stage.
func (m *Model) NumStages() int { return len(m.stages) }

// StageOf returns the stage that holds the site.
func (m *Model) StageOf(site string) (int, error) {
	s, err := m.Site(site)
	if err != nil {
		return 0, err
	}
	for i, st := range m.stages {
		if s.Index >= st.first && s.Index < st.end {
			return i, nil
		}
	}
	return 0, fmt.Errorf("model: site %s is in no stage", site)
}

// StageInShape is the per-sample shape of stage i's input.
func (m *Model) StageInShape(i int) []int64 { return append([]int64(nil), m.stages[i].in...) }

// stageBounds returns the steps of stages [from, to) and the slots they start
// from and end with.
func (m *Model) stageBounds(from, to int) (start, stop, in, out int) {
	p := m.prog
	in, out = p.output, p.output
	if from < len(m.stages) {
		in, start, stop = m.stages[from].inSlot, m.stages[from].start, m.stages[from].start
	}
	if to > from {
		stop = m.stages[to-1].stop
	}
	if to < len(m.stages) {
		out = m.stages[to].inSlot
	}
	return start, stop, in, out
}

// outShape is the per-sample shape of the network's output.
func (m *Model) outShape() []int64 { return perSample(m.prog.shapes[m.prog.output]) }

// RunStages runs stages [from, to) on x, whose per-sample shape must be stage
// from's input shape: from = 0 and to = NumStages() is the whole forward pass,
// to < NumStages() returns the input of stage to. x is not modified or dropped; the
// caller owns the result.
func (m *Model) RunStages(x *ts.Tensor, from, to int, train bool, hook Hook) (*ts.Tensor, error) {
	if !torch.OnTorchThread() {
		return nil, fmt.Errorf("model: forward called outside torch.Do")
	}
	if from < 0 || to > len(m.stages) || from > to {
		return nil, fmt.Errorf("model: stages [%d, %d) out of range (%d stages)", from, to, len(m.stages))
	}
	shape, err := x.Size()
	if err != nil {
		return nil, fmt.Errorf("model: forward: %w", err)
	}
	want := m.outShape()
	if from < len(m.stages) {
		want = m.stages[from].in
	}
	if len(shape) != len(want)+1 || !slices.Equal(shape[1:], want) {
		return nil, fmt.Errorf("model: %s stage %d wants input [N %v], have %v", m.spec.Arch, from, want, shape)
	}
	in, err := x.ShallowClone()
	if err != nil {
		return nil, fmt.Errorf("model: forward: %w", err)
	}
	start, stop, inSlot, outSlot := m.stageBounds(from, to)
	r := &pass{m: m, train: train, hook: hook, inPlace: hook == nil && !train}
	out, err := r.run(start, stop, inSlot, in, false, outSlot)
	if err != nil {
		return nil, fmt.Errorf("model: %s forward: %w", m.spec.Arch, err)
	}
	return out, nil
}

// Lead is the conv or linear site that stage i applies first, directly to the
// stage's input, when everything after it in the stage is free of sites
// (normalisation, activation, pooling, flattening) and reads only its output;
// it is "" for other stages (a residual block, an MLP's flattening first stage).
func (m *Model) Lead(i int) string {
	if i < 0 || i >= len(m.stages) {
		return ""
	}
	return m.stages[i].lead
}

// RunAfterLead runs stage i from right after its lead layer, with y standing in
// for that layer's output (batch first, per-sample shape the site's OutShape),
// then stages i+1 up to to (exclusive; to = NumStages() ends at the logits, to =
// i+1 returns stage i+1's input). y is not dropped, but without a hook and out of
// training its values may be overwritten: pass a tensor you no longer need. The
// lead layer's clamp, if any, applies to y.
func (m *Model) RunAfterLead(i int, y *ts.Tensor, to int, train bool, hook Hook) (*ts.Tensor, error) {
	if !torch.OnTorchThread() {
		return nil, fmt.Errorf("model: forward called outside torch.Do")
	}
	if i < 0 || i >= len(m.stages) || m.stages[i].lead == "" {
		return nil, fmt.Errorf("model: %s stage %d has no lead layer", m.spec.Arch, i)
	}
	if to <= i || to > len(m.stages) {
		return nil, fmt.Errorf("model: stages (%d, %d) out of range (%d stages)", i, to, len(m.stages))
	}
	st := m.stages[i]
	shape, err := y.Size()
	if err != nil {
		return nil, fmt.Errorf("model: forward: %w", err)
	}
	want := m.sites[st.first].OutShape
	if len(shape) != len(want)+1 || !slices.Equal(shape[1:], want) {
		return nil, fmt.Errorf("model: %s output of %s wants [N %v], have %v", m.spec.Arch, st.lead, want, shape)
	}
	out, err := y.ShallowClone()
	if err != nil {
		return nil, fmt.Errorf("model: forward: %w", err)
	}
	if out, err = m.clampOutput(st.lead, out); err != nil {
		return nil, fmt.Errorf("model: forward: %w", err)
	}
	_, stop, _, outSlot := m.stageBounds(i, to)
	r := &pass{m: m, train: train, hook: hook, inPlace: hook == nil && !train}
	if out, err = r.run(st.start+1, stop, m.prog.steps[st.start].outs[0], out, true, outSlot); err != nil {
		return nil, fmt.Errorf("model: %s forward: %w", m.spec.Arch, err)
	}
	return out, nil
}

// RunLayer runs one conv or linear site alone on x (its input, batch first) with
// the model's current weights (and weight clamp), without hooks; the site's
// output clamp applies. x is not dropped.
func (m *Model) RunLayer(site string, x *ts.Tensor) (*ts.Tensor, error) {
	if !torch.OnTorchThread() {
		return nil, fmt.Errorf("model: RunLayer called outside torch.Do")
	}
	s, err := m.Site(site)
	if err != nil {
		return nil, err
	}
	st := &m.prog.steps[m.siteStep[s.Index]]
	if !st.selfContained {
		return nil, fmt.Errorf("model: %s: layer %s reads computed values besides its input", m.spec.Arch, site)
	}
	in := make([]*ts.Tensor, len(st.args))
	for k, a := range st.args {
		in[k] = a.t
	}
	in[0] = x
	outs, err := (&pass{m: m}).step(st, in, false)
	if err != nil {
		return nil, fmt.Errorf("model: %s: %s: %w", m.spec.Arch, st.ref, err)
	}
	for _, o := range outs[1:] {
		if o != nil {
			_ = o.Drop()
		}
	}
	return outs[0], nil
}

// pass is the state of one forward pass.
type pass struct {
	m     *Model
	train bool
	hook  Hook
	// inPlace lets element-wise operations overwrite their input: set when no
	// hook can hold a tensor of the pass and no gradient is recorded.
	inPlace bool
}

// SetRequiresGrad sets whether autograd tracks the trainable parameters and
// returns a function that restores each one's previous state. gotch's
// VarStore.Unfreeze must not be used for this: it stops after the first
// parameter and always returns an error (v0.8.0).
func (m *Model) SetRequiresGrad(on bool) (restore func() error, err error) {
	type state struct {
		t   *ts.Tensor
		was bool
	}
	var prev []state
	restore = func() error {
		for _, s := range prev {
			if err := s.t.RequiresGrad_(s.was); err != nil {
				return fmt.Errorf("model: restore requires_grad: %w", err)
			}
		}
		return nil
	}
	for _, p := range m.params {
		if !p.Trainable {
			continue
		}
		was, err := p.Tensor.RequiresGrad()
		if err != nil {
			return nil, fmt.Errorf("model: %s: %w", p.Name, err)
		}
		if err := p.Tensor.RequiresGrad_(on); err != nil {
			_ = restore()
			return nil, fmt.Errorf("model: %s: set requires_grad: %w", p.Name, err)
		}
		prev = append(prev, state{p.Tensor, was})
	}
	return restore, nil
}

// Graph returns the graph the model executes (folded), with the parameters'
// current values as its initializers (float32), ready for onnx.WriteFile.
func (m *Model) Graph() (*graph.Graph, error) {
	g := m.graph.Clone()
	consts := g.InitializerMap()
	g.Initializers = nil
	err := torch.Do(func() error {
		for _, name := range m.inits {
			if t := consts[name]; t != nil {
				g.Initializers = append(g.Initializers, t)
				continue
			}
			p := m.params[m.byName[name]]
			v, err := torch.Float32s(p.Tensor)
			if err != nil {
				return fmt.Errorf("model: %s: %w", name, err)
			}
			shape, err := torch.Shape(p.Tensor)
			if err != nil {
				return fmt.Errorf("model: %s: %w", name, err)
			}
			t, err := graph.FromFloat32s(name, shape, v)
			if err != nil {
				return fmt.Errorf("model: %s: %w", name, err)
			}
			g.Initializers = append(g.Initializers, t)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return g, nil
}
