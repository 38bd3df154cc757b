package model

import (
	"fmt"

	"github.com/faultline/faultline/internal/torch"

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
	Stride      int64    `json:"stride,omitempty"`  // conv only
	Padding     int64    `json:"padding,omitempty"` // conv only
	Groups      int64    `json:"groups,omitempty"`  // conv only
}

// Numel is the number of elements of a tensor of shape dims (1 for a scalar).
func Numel(dims []int64) int64 {
	n := int64(1)
	for _, d := range dims {
		n *= d
	}
	return n
}

// Weight is the state_dict name of the site's weight.
func (s Site) Weight() string { return s.Name + ".weight" }

// Bias is the state_dict name of the site's bias ("" when it has none).
func (s Site) Bias() string {
	if !s.HasBias {
		return ""
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

// Model is a network of the zoo.
type Model struct {
	spec   Spec
	vs     *nn.VarStore
	params []Param
	byName map[string]int
	sites  []Site
	convs  map[string]*conv
	fcs    map[string]*linear
	stages []stage
	clamps map[string]clamp // range restriction of site outputs (SetClamps)
	wclamp map[string]clamp // range restriction of site weights (SetWeightClamps)
}

// stage is a run of layers that the forward pass can start from: the input of a
// stage is a plain tensor (no skip connection crosses a stage boundary).
type stage struct {
	in         []int64 // per-sample input shape
	first, end int     // the stage's sites are sites[first:end]
	run        func(r *pass, x *ts.Tensor) (*ts.Tensor, error)
	// lead is the conv or linear site the stage applies to its input first, and
	// post the rest of the stage, when the stage has that form (endLead).
	lead string
	post func(r *pass, y *ts.Tensor) (*ts.Tensor, error)
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

// Forward runs the network on x ([N, C, H, W], float32) and returns the logits
// [N, classes]. train selects training behaviour (BatchNorm batch statistics and
// running-stat updates); hook, when not nil, is called at every site. x is not
// modified or dropped; the caller owns the result.
func (m *Model) Forward(x *ts.Tensor, train bool, hook Hook) (*ts.Tensor, error) {
	return m.RunStages(x, 0, len(m.stages), train, hook)
}

// NumStages is the number of stages. The forward pass is a chain of stages; each
// starts at one or more sites (a conv or linear layer, or a residual block), so a
// pass can start at any stage from a saved input (prefix reuse: the golden
// activations up to a faulty layer are computed once and reused for every fault).
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
	want := []int64{m.spec.Classes}
	if from < len(m.stages) {
		want = m.stages[from].in
	}
	if len(shape) != len(want)+1 || !equalShape(shape[1:], want) {
		return nil, fmt.Errorf("model: %s stage %d wants input [N %v], have %v", m.spec.Arch, from, want, shape)
	}
	out, err := x.ShallowClone()
	if err != nil {
		return nil, fmt.Errorf("model: forward: %w", err)
	}
	r := &pass{m: m, train: train, hook: hook, inPlace: hook == nil && !train}
	for i := from; i < to; i++ {
		out, err = m.stages[i].run(r, out)
		if err != nil {
			return nil, fmt.Errorf("model: %s forward: %w", m.spec.Arch, err)
		}
	}
	return out, nil
}

// Lead is the conv or linear site that stage i applies first, directly to the
// stage's input, when everything after it in the stage is free of sites
// (normalisation, activation, pooling, flattening); it is "" for other stages (a
// residual block, a pooling head, an MLP's flattening first stage).
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
	if len(shape) != len(want)+1 || !equalShape(shape[1:], want) {
		return nil, fmt.Errorf("model: %s output of %s wants [N %v], have %v", m.spec.Arch, st.lead, want, shape)
	}
	out, err := y.ShallowClone()
	if err != nil {
		return nil, fmt.Errorf("model: forward: %w", err)
	}
	if out, err = m.clampOutput(st.lead, out); err != nil {
		return nil, fmt.Errorf("model: forward: %w", err)
	}
	r := &pass{m: m, train: train, hook: hook, inPlace: hook == nil && !train}
	if out, err = st.post(r, out); err != nil {
		return nil, fmt.Errorf("model: %s forward: %w", m.spec.Arch, err)
	}
	for k := i + 1; k < to; k++ {
		if out, err = m.stages[k].run(r, out); err != nil {
			return nil, fmt.Errorf("model: %s forward: %w", m.spec.Arch, err)
		}
	}
	return out, nil
}

// RunLayer runs one conv or linear site alone on x (its input, batch first) with
// the model's current weights, without hooks. x is not dropped.
func (m *Model) RunLayer(site string, x *ts.Tensor) (*ts.Tensor, error) {
	if !torch.OnTorchThread() {
		return nil, fmt.Errorf("model: RunLayer called outside torch.Do")
	}
	in, err := x.ShallowClone()
	if err != nil {
		return nil, err
	}
	return (&pass{m: m}).layer(site, in)
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
