package fault

import (
	"fmt"
	"sort"

	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model"
	"github.com/sugarme/gotch/ts"
)

// groupKey collects faults that one batched forward pass can carry together.
type groupKey struct {
	target Target
	layer  string
	param  string
	point  Point
}

// RunBatched sets each fault's Outcome, carrying a different fault in every sample
// of a batch. The golden activations up to each faulty layer's stage are computed
// once per evaluation set and reused for all faults of that layer (prefix reuse).
// A weight fault w -> w' adds its exact linear effect (w' - w) * x to the layer's
// output; at a stage's lead layer the layer's golden output is cached too and
// activation faults also travel as exact deltas (lead.go). Outcomes agree with the
// reference up to float rounding.
func (inj *Injector) RunBatched(ev *EvalSet, faults []*Fault) error {
	groups := map[groupKey][]*Fault{}
	var keys []groupKey
	for _, f := range faults {
		if err := inj.Check(f, ev.Len()); err != nil {
			return err
		}
		k := groupKey{f.Target, f.Layer, f.Param, f.Point}
		if groups[k] == nil {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], f)
	}
	stage := map[groupKey]int{}
	for _, k := range keys {
		st, err := inj.m.StageOf(k.layer)
		if err != nil {
			return err
		}
		stage[k] = st
	}
	sort.SliceStable(keys, func(i, j int) bool { return stage[keys[i]] < stage[keys[j]] })
	return torch.NoGrad(func() error {
		for _, k := range keys {
			prefix, err := inj.prefix(ev, stage[k])
			if err != nil {
				return err
			}
			if err := inj.runGroup(ev, prefix, stage[k], groups[k]); err != nil {
				return fmt.Errorf("fault: %s %s: %w", k.target, k.layer, err)
			}
		}
		return nil
	})
}

// Prepare computes ahead of RunBatched what the faults' groups will need (golden
// stage inputs and lead-layer outputs, footprints), so that one-time work is not
// counted as injection time. It runs on the torch thread; calling it is optional.
func (inj *Injector) Prepare(ev *EvalSet, faults []*Fault) error {
	seen := map[groupKey]bool{}
	return torch.NoGrad(func() error {
		for _, f := range faults {
			k := groupKey{f.Target, f.Layer, f.Param, f.Point}
			if seen[k] {
				continue
			}
			seen[k] = true
			st, err := inj.m.StageOf(f.Layer)
			if err != nil {
				return err
			}
			if _, err := inj.prefix(ev, st); err != nil {
				return err
			}
			if inj.m.Lead(st) != f.Layer {
				continue
			}
			if _, err := inj.leadOut(ev, st); err != nil {
				return err
			}
			if f.Target == Weight {
				one, err := inj.channelConv(st)
				if err != nil {
					return err
				}
				if one {
					if _, err := inj.prefix(ev, st+1); err != nil {
						return err
					}
					if _, err := inj.leadOut(ev, st+1); err != nil {
						return err
					}
				}
			}
			if f.Target == Activation && f.Point == Output {
				r, err := inj.footprint(st)
				if err != nil {
					return err
				}
				if r != nil {
					if _, err := inj.prefix(ev, st+1); err != nil {
						return err
					}
					if _, err := inj.leadOut(ev, st+1); err != nil {
						return err
					}
				}
			}
		}
		return nil
	})
}

// prefix returns the golden input of stage st for all evaluation images, computed
// once per evaluation set (from the nearest cached earlier stage) and kept in it.
func (inj *Injector) prefix(ev *EvalSet, st int) (*ts.Tensor, error) {
	if st == 0 {
		return ev.X, nil
	}
	if x, ok := ev.prefix[st]; ok {
		return x, nil
	}
	src, from := ev.X, 0
	for k, x := range ev.prefix {
		if k < st && k > from {
			src, from = x, k
		}
	}
	x, err := inj.chunked(ev.Len(), func(i, n int) (*ts.Tensor, error) {
		xb, err := src.Narrow(0, int64(i), int64(n), false)
		if err != nil {
			return nil, err
		}
		defer xb.Drop()
		return inj.m.RunStages(xb, from, st, false, nil)
	})
	if err != nil {
		return nil, err
	}
	if ev.prefix == nil {
		ev.prefix = map[int]*ts.Tensor{}
	}
	ev.prefix[st] = x
	return x, nil
}

// runGroup runs faults of one group (same target, layer, param and point).
func (inj *Injector) runGroup(ev *EvalSet, prefix *ts.Tensor, st int, faults []*Fault) error {
	site := inj.sites[faults[0].Layer]
	var (
		sf   []*Fault
		simg []int64
	)
	margins := make(map[*Fault][]float64, len(faults))
	seen := make(map[*Fault]bool, len(faults))
	for _, f := range faults {
		f.Outcome = &Outcome{}
	}
	dev := inj.m.Device()
	lead := inj.m.Lead(st) == site.Name
	flush := func() error {
		if len(sf) == 0 {
			return nil
		}
		var logits []float32
		if lead {
			var err error
			if logits, err = inj.runLead(ev, st, &site, sf, simg, seen); err != nil {
				return err
			}
		} else {
			idx, err := torch.FromInt64(simg, []int64{int64(len(simg))}, dev)
			if err != nil {
				return err
			}
			xb, err := prefix.IndexSelect(0, idx, false)
			idx.Drop()
			if err != nil {
				return err
			}
			hook := func(s *model.Site, in, out *ts.Tensor) (*ts.Tensor, error) {
				if s.Name != site.Name {
					return nil, nil
				}
				return inj.batchedHook(&site, sf, seen, in, out)
			}
			if logits, err = inj.logits(xb, st, hook); err != nil {
				return err
			}
		}
		for n, f := range sf {
			img := simg[n]
			ms := margins[f]
			classify(f.Outcome, logits[n*ev.Classes:(n+1)*ev.Classes], ev.Golden[img], ev.Labels[img], &ms)
			margins[f] = ms
		}
		sf, simg = sf[:0], simg[:0]
		return nil
	}
	var z *zeroReads
	if lead && faults[0].Target == Weight {
		var err error
		if z, err = inj.zeroReadsOf(ev, st, &site); err != nil {
			return err
		}
	}
	for _, f := range faults {
		first, count := imageRange(f, ev.Len())
		var (
			op            int64
			before, after float32
			dw            float32
		)
		if z != nil {
			before, after, dw = inj.weightChange(f)
			op = z.operand(&site, f)
		}
		for i := first; i < first+count; i++ {
			if z != nil && z.inert(op, dw, int64(i)) {
				// the exact delta is zero: the golden logits are the outcome
				recordOnce(seen, f, before, after)
				inj.inert++
				ms := margins[f]
				classify(f.Outcome, ev.Logits[i*ev.Classes:(i+1)*ev.Classes], ev.Golden[i], ev.Labels[i], &ms)
				margins[f] = ms
				continue
			}
			sf = append(sf, f)
			simg = append(simg, int64(i))
			if len(sf) == inj.BatchSize {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	for _, f := range faults {
		finishMargin(f.Outcome, margins[f])
	}
	return nil
}

// batchedHook applies sample n's fault sf[n] at the faulty site.
func (inj *Injector) batchedHook(s *model.Site, sf []*Fault, seen map[*Fault]bool, in, out *ts.Tensor) (*ts.Tensor, error) {
	f0 := sf[0]
	record := func(f *Fault, before, after float32) { recordOnce(seen, f, before, after) }
	switch {
	case f0.Target == Activation && (f0.Point == Output || f0.Point == Input):
		dims, t := s.OutShape, out
		if f0.Point == Input {
			dims = s.InShape
			x, err := deepCopy(in)
			if err != nil {
				return nil, err
			}
			defer x.Drop()
			t = x
		}
		per := model.Numel(dims)
		idx := make([]int64, len(sf))
		for n, f := range sf {
			idx[n] = int64(n)*per + flat(f.Index, dims)
		}
		vals, err := take(t, idx)
		if err != nil {
			return nil, err
		}
		for n, f := range sf {
			after := f.Corrupt(vals[n])
			record(f, vals[n], after)
			vals[n] = after
		}
		if err := put(t, idx, vals, false); err != nil {
			return nil, err
		}
		if f0.Point == Input {
			return inj.m.RunLayer(s.Name, t)
		}
		return nil, nil
	case f0.Target == Activation && f0.Point == MAC:
		return nil, inj.batchedMAC(s, sf, record, in, out)
	case f0.Target == Weight:
		return nil, inj.batchedWeight(s, sf, record, in, out)
	}
	return nil, fmt.Errorf("unsupported fault %s/%s", f0.Target, f0.Point)
}

// batchedMAC adds (x' - x) * w to each sample's neuron.
func (inj *Injector) batchedMAC(s *model.Site, sf []*Fault, record func(*Fault, float32, float32), in, out *ts.Tensor) error {
	wv := inj.host[s.Weight()]
	inPer, outPer := model.Numel(s.InShape), model.Numel(s.OutShape)
	outIdx := make([]int64, len(sf))
	var inIdx []int64
	inPos := make([]int, len(sf)) // position in inIdx, -1 for padding
	ws := make([]float32, len(sf))
	for n, f := range sf {
		outIdx[n] = int64(n)*outPer + flat(f.Index, s.OutShape)
		var q int64
		if s.Kind == model.Linear {
			ws[n] = wv[f.Index[0]*s.WeightShape[1]+f.Operand[0]]
			q = f.Operand[0]
		} else {
			ws[n] = wv[flat([]int64{f.Index[0], f.Operand[0], f.Operand[1], f.Operand[2]}, s.WeightShape)]
			y := f.Index[1]*s.Stride + f.Operand[1] - s.Padding
			x := f.Index[2]*s.Stride + f.Operand[2] - s.Padding
			if y < 0 || x < 0 || y >= s.InShape[1] || x >= s.InShape[2] {
				inPos[n] = -1
				continue
			}
			q = flat([]int64{inputChannel(s, f.Index[0], f.Operand[0]), y, x}, s.InShape)
		}
		inPos[n] = len(inIdx)
		inIdx = append(inIdx, int64(n)*inPer+q)
	}
	var xs []float32
	if len(inIdx) > 0 {
		var err error
		if xs, err = take(in, inIdx); err != nil {
			return err
		}
	}
	delta := make([]float32, len(sf))
	for n, f := range sf {
		var x float32
		if inPos[n] >= 0 {
			x = xs[inPos[n]]
		}
		x2 := f.Corrupt(x)
		record(f, x, x2)
		delta[n] = (x2 - x) * ws[n]
	}
	return put(out, outIdx, delta, true)
}

// batchedWeight adds each sample's exact weight-fault delta (w' - w) * x to the
// output neurons that read the faulty weight.
func (inj *Injector) batchedWeight(s *model.Site, sf []*Fault, record func(*Fault, float32, float32), in, out *ts.Tensor) error {
	dw := make([]float32, len(sf))
	for n, f := range sf {
		before, after, d := inj.weightChange(f)
		record(f, before, after)
		dw[n] = d
	}
	outPer := model.Numel(s.OutShape)
	if s.Kind == model.Linear {
		o := s.OutShape[0]
		outIdx := make([]int64, len(sf))
		var inIdx []int64
		for n, f := range sf {
			i := f.Index[0]
			if sf[0].Param == "weight" {
				i = f.Index[0] / s.WeightShape[1]
				inIdx = append(inIdx, int64(n)*s.InShape[0]+f.Index[0]%s.WeightShape[1])
			}
			outIdx[n] = int64(n)*o + i
		}
		if inIdx == nil { // bias
			return put(out, outIdx, dw, true)
		}
		xs, err := take(in, inIdx)
		if err != nil {
			return err
		}
		for n := range xs {
			xs[n] *= dw[n]
		}
		return put(out, outIdx, xs, true)
	}
	// conv: the faulty weight (c, ci, kh, kw) meets, at output (oh, ow), the padded
	// input (ci, kh + s*oh, kw + s*ow); a bias fault adds dw to all of channel c.
	oh, ow := s.OutShape[1], s.OutShape[2]
	m := oh * ow
	outIdx := make([]int64, 0, int64(len(sf))*m)
	rep := make([]float32, 0, int64(len(sf))*m)
	if sf[0].Param == "bias" {
		for n, f := range sf {
			base := int64(n)*outPer + f.Index[0]*m
			for j := int64(0); j < m; j++ {
				outIdx = append(outIdx, base+j)
				rep = append(rep, dw[n])
			}
		}
		return put(out, outIdx, rep, true)
	}
	p := s.Padding
	padded := in
	if p > 0 {
		var err error
		if padded, err = in.ConstantPadNd([]int64{p, p, p, p}, false); err != nil {
			return err
		}
		defer padded.Drop()
	}
	hp, wp := s.InShape[1]+2*p, s.InShape[2]+2*p
	inPer := s.InShape[0] * hp * wp
	inIdx := make([]int64, 0, int64(len(sf))*m)
	for n, f := range sf {
		k := unflat(f.Index[0], s.WeightShape)
		c, ci := k[0], inputChannel(s, k[0], k[1])
		obase := int64(n)*outPer + c*m
		ibase := int64(n)*inPer + ci*hp*wp
		for y := int64(0); y < oh; y++ {
			for x := int64(0); x < ow; x++ {
				outIdx = append(outIdx, obase+y*ow+x)
				inIdx = append(inIdx, ibase+(k[2]+s.Stride*y)*wp+k[3]+s.Stride*x)
				rep = append(rep, dw[n])
			}
		}
	}
	xs, err := take(padded, inIdx)
	if err != nil {
		return err
	}
	for j := range xs {
		xs[j] *= rep[j]
	}
	return put(out, outIdx, xs, true)
}

// weightChange is weight fault f's golden value, corrupted value and the change
// dw = w' - w the forward pass sees (after the weight clamps).
func (inj *Injector) weightChange(f *Fault) (before, after, dw float32) {
	name := f.ParamName()
	before = inj.host[name][f.Index[0]]
	after = f.Corrupt(before)
	return before, after, inj.effective(name, after) - before
}

// recordOnce records a fault's value before and after on the first of its
// samples (every image of a fault sees the same values, up to the golden run's
// rounding).
func recordOnce(seen map[*Fault]bool, f *Fault, before, after float32) {
	if !seen[f] {
		f.Outcome.record(before, after)
		seen[f] = true
	}
}

// take reads the elements at flat indices of a contiguous tensor.
func take(t *ts.Tensor, idx []int64) ([]float32, error) {
	if len(idx) == 0 {
		return nil, nil
	}
	dev, err := t.Device()
	if err != nil {
		return nil, err
	}
	it, err := torch.FromInt64(idx, []int64{int64(len(idx))}, dev)
	if err != nil {
		return nil, err
	}
	defer it.Drop()
	v, err := t.Take(it, false)
	if err != nil {
		return nil, err
	}
	defer v.Drop()
	return torch.Float32s(v)
}

// put writes (or, with accumulate, adds) vals at flat indices of a contiguous tensor.
func put(t *ts.Tensor, idx []int64, vals []float32, accumulate bool) error {
	if len(idx) == 0 {
		return nil
	}
	d, err := t.Device()
	if err != nil {
		return err
	}
	it, err := torch.FromInt64(idx, []int64{int64(len(idx))}, d)
	if err != nil {
		return err
	}
	defer it.Drop()
	vt, err := torch.FromFloat32(vals, []int64{int64(len(vals))}, d)
	if err != nil {
		return err
	}
	defer vt.Drop()
	return t.Put_(it, vt, accumulate)
}

// logits runs x (which it drops) from stage st to the end and returns the logits.
func (inj *Injector) logits(x *ts.Tensor, st int, hook model.Hook) ([]float32, error) {
	out, err := inj.m.RunStages(x, st, inj.m.NumStages(), false, hook)
	x.Drop()
	if err != nil {
		return nil, err
	}
	defer out.Drop()
	return torch.Float32s(out)
}
