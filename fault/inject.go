package fault

import (
	"fmt"

	"github.com/faultline/faultline/datasets"
	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model"
	"github.com/sugarme/gotch/ts"
)

// EvalSet is the evaluation images with their labels and golden (fault-free)
// predictions, on the model's device.
type EvalSet struct {
	X       *ts.Tensor // [M, C, H, W]
	Labels  []int
	Golden  []int     // golden top-1 per image
	Logits  []float32 // golden logits, [M*classes]
	Classes int
	// prefix caches the golden input of each stage for all images (prefix reuse
	// across blocks of a campaign).
	prefix map[int]*ts.Tensor
	// lead caches the golden output of each stage's lead layer (see lead.go).
	lead map[int]*ts.Tensor
	// zero caches, per site, which of its weights read only zeros in each
	// image (inert.go).
	zero map[string]*zeroReads
}

// Len is the number of images.
func (e *EvalSet) Len() int { return len(e.Labels) }

// Drop frees the images.
func (e *EvalSet) Drop() {
	for _, m := range []map[int]*ts.Tensor{e.prefix, e.lead} {
		for k, t := range m {
			t.Drop()
			delete(m, k)
		}
	}
	e.zero = nil
	if e.X != nil {
		_ = e.X.Drop()
		e.X = nil
	}
}

// Accuracy is the golden top-1 accuracy.
func (e *EvalSet) Accuracy() float64 {
	ok := 0
	for i, g := range e.Golden {
		if g == e.Labels[i] {
			ok++
		}
	}
	return float64(ok) / float64(len(e.Labels))
}

// Injector injects faults into one model. Its methods must run on the torch
// thread (inside torch.Do); they run in no-grad mode and leave every parameter
// bit-identical to how they found it.
type Injector struct {
	m     *model.Model
	sites map[string]model.Site
	names []string
	host  map[string][]float32 // golden parameter values by state_dict name, as stored
	// wts is each site's golden weights in WeightShape order ([out, in] for a
	// linear layer, whatever its parameter's layout): the order of weight
	// fault indices.
	wts   map[string][]float32
	foot  map[int]*reach // how lead outputs reach the next stage (lead.go)
	local map[int]bool   // whether a lead output's channels stay apart (channel.go)
	wb    model.Clamps   // the model's weight clamps, by site
	// inert counts the fault x image samples whose outcome was the golden one
	// without a forward pass (inert.go); inactive those skipped because the
	// fault left the value unchanged (batched.go).
	inert, inactive int64
	// viaChannel counts the samples whose next layer took the one-channel
	// shortcut (channel.go).
	viaChannel int64
	// BatchSize is the number of samples (fault x image pairs) per batched forward
	// pass, and of images per reference forward pass.
	BatchSize int
}

// NewInjector prepares m for injection: it copies the parameters to the host (the
// golden values every fault starts from). Call it on the torch thread, after the
// weights are final.
func NewInjector(m *model.Model) (*Injector, error) {
	inj := &Injector{m: m, sites: map[string]model.Site{}, names: m.SiteNames(), host: map[string][]float32{},
		wts: map[string][]float32{}, BatchSize: 1000, wb: m.WeightClamps()}
	for _, s := range m.Sites() {
		inj.sites[s.Name] = s
		names := []string{s.Weight()}
		if s.HasBias {
			names = append(names, s.Bias())
		}
		for _, n := range names {
			p, err := m.Param(n)
			if err != nil {
				return nil, err
			}
			v, err := torch.Float32s(p)
			if err != nil {
				return nil, fmt.Errorf("fault: read %s: %w", n, err)
			}
			inj.host[n] = v
		}
		inj.wts[s.Name] = inj.host[s.Weight()]
		if s.Kind == model.Linear && s.TransposedWeight && len(s.WeightShape) == 2 {
			w := make([]float32, len(inj.host[s.Weight()]))
			for i := range int64(len(w)) {
				w[i] = inj.host[s.Weight()][storeIndex(&s, i)]
			}
			inj.wts[s.Name] = w
		}
		// Batched weight faults take the clean weights as the golden ones, which
		// holds when the clamps contain them.
		if b, ok := inj.wb[s.Name]; ok {
			for _, x := range inj.host[s.Weight()] {
				if x < b.Min || x > b.Max {
					return nil, fmt.Errorf("fault: %s: weight %g lies outside its clamps [%g, %g] (weights changed after the clamps were set)", s.Name, x, b.Min, b.Max)
				}
			}
		}
	}
	return inj, nil
}

// effective is the value a forward pass uses for value v of a weight fault's
// parameter: a weight clamped to its site's weight clamps, if any (NaN stays
// NaN, as in torch); a bias as it is.
func (inj *Injector) effective(f *Fault, v float32) float32 {
	if f.Param != "weight" {
		return v
	}
	b, ok := inj.wb[f.Layer]
	if !ok || v != v {
		return v
	}
	return min(max(v, b.Min), b.Max)
}

// Model is the model the injector works on.
func (inj *Injector) Model() *model.Model { return inj.m }

// Check validates a fault against the model and an evaluation set of n images.
func (inj *Injector) Check(f *Fault, n int) error {
	return checkAgainst(f, inj.sites, inj.names, n)
}

// NewEvalSet runs the golden model on x ([M, C, H, W], which the EvalSet takes
// over) and records its predictions.
func (inj *Injector) NewEvalSet(x *ts.Tensor, labels []int) (*EvalSet, error) {
	e := &EvalSet{X: x, Labels: labels, Classes: int(inj.m.Spec().Classes)}
	err := torch.NoGrad(func() error {
		for i := 0; i < len(labels); i += inj.BatchSize {
			n := min(inj.BatchSize, len(labels)-i)
			xb, err := x.Narrow(0, int64(i), int64(n), false)
			if err != nil {
				return err
			}
			l, err := inj.logits(xb, 0, nil)
			if err != nil {
				return err
			}
			e.Logits = append(e.Logits, l...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("fault: golden run: %w", err)
	}
	for i := range labels {
		row := e.Logits[i*e.Classes : (i+1)*e.Classes]
		top := model.Top1(row)
		if !finite(row[top]) {
			return nil, fmt.Errorf("fault: golden logits of image %d are not finite", i)
		}
		e.Golden = append(e.Golden, top)
	}
	return e, nil
}

// imageRange is the images a fault runs on.
func imageRange(f *Fault, n int) (first, count int) {
	if f.Images == nil {
		return 0, n
	}
	return int(f.Images[0]), int(f.Images[1])
}

// --- the reference injector: one fault per forward pass, element by element. ---

// RunReference runs each fault on its own (mutate, run, restore) and sets its
// Outcome. It is the oracle the batched modes are checked against.
func (inj *Injector) RunReference(ev *EvalSet, faults []*Fault) error {
	for _, f := range faults {
		if err := inj.Check(f, ev.Len()); err != nil {
			return err
		}
	}
	return torch.NoGrad(func() error {
		for _, f := range faults {
			if err := inj.reference(ev, f); err != nil {
				return fmt.Errorf("fault %d: %w", f.ID, err)
			}
		}
		return nil
	})
}

func (inj *Injector) reference(ev *EvalSet, f *Fault) (err error) {
	first, count := imageRange(f, ev.Len())
	o := &Outcome{}
	var margins []float64
	var hook model.Hook
	// inactive[k] says whether the fault left the value of the batch's sample k
	// unchanged (set by an activation fault's hook in each forward pass).
	var inactive []bool
	if f.Target == Weight {
		s := inj.sites[f.Layer]
		name, at := paramOf(&s, f), f.Index[0]
		if f.Param == "weight" {
			at = storeIndex(&s, at)
		}
		p, perr := inj.m.Param(name)
		if perr != nil {
			return perr
		}
		before := inj.host[name][at]
		after := f.Corrupt(before)
		o.record(before, after)
		if unchanged(before, after) {
			// the weight keeps its bits: every image's prediction is the golden one
			for img := first; img < first+count; img++ {
				classifyInactive(o, ev.Golden[img], ev.Labels[img])
			}
			f.Outcome = o
			return nil
		}
		if werr := writeElement(p, at, after); werr != nil {
			return werr
		}
		defer func() {
			// a failed restore would corrupt every later fault: it is an error
			if rerr := writeElement(p, at, before); rerr != nil && err == nil {
				err = fmt.Errorf("fault: restore %s[%d]: %w", name, at, rerr)
			}
		}()
	} else {
		recorded := false
		hook = func(s *model.Site, in, out *ts.Tensor) (*ts.Tensor, error) {
			if s.Name != f.Layer {
				return nil, nil
			}
			return inj.referenceActivation(f, s, in, out, o, &recorded, inactive)
		}
	}
	for i := first; i < first+count; i += inj.BatchSize {
		n := min(inj.BatchSize, first+count-i)
		xb, err := ev.X.Narrow(0, int64(i), int64(n), false)
		if err != nil {
			return err
		}
		inactive = make([]bool, n)
		logits, err := inj.logits(xb, 0, hook)
		if err != nil {
			return err
		}
		for k := 0; k < n; k++ {
			img := i + k
			if inactive[k] {
				classifyInactive(o, ev.Golden[img], ev.Labels[img])
				continue
			}
			classify(o, logits[k*ev.Classes:(k+1)*ev.Classes], ev.Golden[img], ev.Labels[img], &margins)
		}
	}
	finishMargin(o, margins)
	f.Outcome = o
	return nil
}

// referenceActivation applies an activation fault to every sample of a batch with
// element-wise reads and writes, and sets inactive[k] when the fault leaves
// sample k's value unchanged.
func (inj *Injector) referenceActivation(f *Fault, s *model.Site, in, out *ts.Tensor, o *Outcome, recorded *bool, inactive []bool) (*ts.Tensor, error) {
	shape, err := out.Size()
	if err != nil {
		return nil, err
	}
	n := shape[0]
	if n != int64(len(inactive)) {
		return nil, fmt.Errorf("%s: a batch of %d samples, %d expected", s.Name, n, len(inactive))
	}
	switch f.Point {
	case Output, Input:
		dims, t := s.OutShape, out
		if f.Point == Input {
			dims = s.InShape
			x, err := deepCopy(in)
			if err != nil {
				return nil, err
			}
			defer x.Drop()
			t = x
		}
		per := model.Numel(dims)
		p := flat(f.Index, dims)
		for k := int64(0); k < n; k++ {
			v, err := readElement(t, k*per+p)
			if err != nil {
				return nil, err
			}
			w := f.Corrupt(v)
			if !*recorded {
				o.record(v, w)
				*recorded = true
			}
			inactive[k] = unchanged(v, w)
			if err := writeElement(t, k*per+p, w); err != nil {
				return nil, err
			}
		}
		if f.Point == Input {
			return inj.m.RunLayer(s.Name, t)
		}
		return nil, nil
	case MAC:
		per := model.Numel(s.OutShape)
		p := flat(f.Index, s.OutShape)
		wv := inj.wts[s.Name]
		g, err := inj.geometry(s)
		if err != nil {
			return nil, err
		}
		for k := int64(0); k < n; k++ {
			x, w, err := macOperand(s, g, in, k, f.Index, f.Operand, wv)
			if err != nil {
				return nil, err
			}
			x2 := f.Corrupt(x)
			if !*recorded {
				o.record(x, x2)
				*recorded = true
			}
			inactive[k] = unchanged(x, x2)
			delta := (x2 - x) * w
			v, err := readElement(out, k*per+p)
			if err != nil {
				return nil, err
			}
			if err := writeElement(out, k*per+p, v+delta); err != nil {
				return nil, err
			}
		}
		return nil, nil
	}
	return nil, fmt.Errorf("point %q", f.Point)
}

// macOperand returns, for sample k, the input operand x and weight w of the MAC of
// output neuron idx that reads operand op (0 for a zero-padding position); g is
// s's geometry when s is a conv. wv is s's weights in WeightShape order.
func macOperand(s *model.Site, g ConvGeometry, in *ts.Tensor, k int64, idx, op []int64, wv []float32) (x, w float32, err error) {
	if s.Kind == model.Linear {
		w = wv[idx[0]*s.WeightShape[1]+op[0]]
		x, err = readElement(in, k*s.InShape[0]+op[0])
		return x, w, err
	}
	w = wv[flat([]int64{idx[0], op[0], op[1], op[2]}, s.WeightShape)]
	y, xx, ok := g.At(idx[1], idx[2], op[1], op[2])
	if !ok {
		return 0, w, nil
	}
	x, err = readElement(in, k*model.Numel(s.InShape)+flat([]int64{g.InChannel(idx[0], op[0]), y, xx}, s.InShape))
	return x, w, err
}

// geometry is conv site s's geometry (the zero value for a linear site).
func (inj *Injector) geometry(s *model.Site) (ConvGeometry, error) {
	if s.Kind != model.Conv {
		return ConvGeometry{}, nil
	}
	return GeometryOf(s)
}

// readElement reads the element at flat index i of a contiguous tensor.
func readElement(t *ts.Tensor, i int64) (float32, error) {
	v, err := take(t, []int64{i})
	if err != nil {
		return 0, err
	}
	return v[0], nil
}

// writeElement writes v, bit for bit, at flat index i of a contiguous tensor.
func writeElement(t *ts.Tensor, i int64, v float32) error {
	return put(t, []int64{i}, []float32{v}, false)
}

// deepCopy returns a new tensor with t's values.
func deepCopy(t *ts.Tensor) (*ts.Tensor, error) {
	c, err := t.EmptyLike(false)
	if err != nil {
		return nil, err
	}
	if err := c.CopyFrom(t); err != nil {
		c.Drop()
		return nil, err
	}
	return c, nil
}

// LoadEvalSet copies the first n images of set (all when n <= 0), normalised with
// stats, to the model's device and runs the golden model on them.
func (inj *Injector) LoadEvalSet(set *datasets.Set, stats datasets.Stats, n int) (*EvalSet, error) {
	if n <= 0 || n > set.Len() {
		n = set.Len()
	}
	if n == 0 {
		return nil, fmt.Errorf("fault: the evaluation set is empty")
	}
	head, err := set.Head(n)
	if err != nil {
		return nil, err
	}
	l, err := datasets.NewLoader(head, datasets.LoaderOptions{BatchSize: n, Stats: stats})
	if err != nil {
		return nil, err
	}
	b, _ := l.Epoch(0).Next()
	x, err := torch.FromFloat32(b.X, []int64{int64(b.N), int64(b.C), int64(b.H), int64(b.W)}, inj.m.Device())
	if err != nil {
		return nil, err
	}
	labels := make([]int, n)
	for i, v := range b.Y {
		labels[i] = int(v)
	}
	ev, err := inj.NewEvalSet(x, labels)
	if err != nil {
		x.Drop()
		return nil, err
	}
	return ev, nil
}
