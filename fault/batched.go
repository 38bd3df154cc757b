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
			if f.Target == Weight {
				if _, err := inj.zeroReadsOf(ev, st, inj.sitePtr(f.Layer)); err != nil {
					return err
				}
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
// Inactive fault x image pairs (the fault leaves the value unchanged) take the
// golden outcome without a forward pass when their golden value is known
// beforehand: always for weight faults, and for activation faults at a stage's
// lead layer, whose golden input and output are cached. Elsewhere the hook finds
// them during the pass and the pair's faulty logits are not used.
func (inj *Injector) runGroup(ev *EvalSet, prefix *ts.Tensor, st int, faults []*Fault) error {
	site := inj.sites[faults[0].Layer]
	var (
		sf   []*Fault
		simg []int64
	)
	margins := make(map[*Fault][]float64, len(faults))
	mk := &marks{seen: make(map[*Fault]bool, len(faults))}
	for _, f := range faults {
		f.Outcome = &Outcome{}
	}
	dev := inj.m.Device()
	lead := inj.m.Lead(st) == site.Name
	// inertPair classifies, from the golden logits, a pair whose change every
	// input it meets turns into zero; skipPair a pair the fault left unchanged
	// (inactive), found before any forward pass.
	inertPair := func(f *Fault, img int64) {
		inj.inert++
		ms := margins[f]
		classify(f.Outcome, ev.Logits[img*int64(ev.Classes):(img+1)*int64(ev.Classes)], ev.Golden[img], ev.Labels[img], &ms)
		margins[f] = ms
	}
	skipPair := func(f *Fault, img int64) {
		inj.inactive++
		classifyInactive(f.Outcome, ev.Golden[img], ev.Labels[img])
	}
	flush := func() error {
		if len(sf) == 0 {
			return nil
		}
		mk.inactive = make([]bool, len(sf))
		var logits []float32
		if lead {
			var err error
			if logits, err = inj.runLead(ev, st, &site, sf, simg, mk); err != nil {
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
				return inj.batchedHook(&site, sf, mk, in, out)
			}
			if logits, err = inj.logits(xb, st, hook); err != nil {
				return err
			}
		}
		for n, f := range sf {
			img := simg[n]
			if mk.inactive[n] { // found by the hook: its logits are the golden ones
				classifyInactive(f.Outcome, ev.Golden[img], ev.Labels[img])
				continue
			}
			ms := margins[f]
			classify(f.Outcome, logits[n*ev.Classes:(n+1)*ev.Classes], ev.Golden[img], ev.Labels[img], &ms)
			margins[f] = ms
		}
		sf, simg = sf[:0], simg[:0]
		return nil
	}
	push := func(f *Fault, img int64) error {
		sf = append(sf, f)
		simg = append(simg, img)
		if len(sf) == inj.BatchSize {
			return flush()
		}
		return nil
	}
	// Activation pairs at a lead layer wait in pend until their golden values
	// are read (one read per chunk) and only the active ones are pushed; bit
	// flips, always active, go straight to the batch.
	var (
		pendF   []*Fault
		pendImg []int64
	)
	precheck := lead && faults[0].Target == Activation
	drain := func() error {
		if len(pendF) == 0 {
			return nil
		}
		vals, err := inj.goldenValues(ev, st, &site, pendF, pendImg)
		if err != nil {
			return err
		}
		for j, f := range pendF {
			after := f.Corrupt(vals[j])
			recordOnce(mk.seen, f, vals[j], after)
			if unchanged(vals[j], after) {
				skipPair(f, pendImg[j])
				continue
			}
			if err := push(f, pendImg[j]); err != nil {
				return err
			}
		}
		pendF, pendImg = pendF[:0], pendImg[:0]
		return nil
	}
	chunk := max(inj.BatchSize, 1<<16)
	var z *zeroReads
	if faults[0].Target == Weight {
		var err error
		if z, err = inj.zeroReadsOf(ev, st, &site); err != nil {
			return err
		}
	}
	for _, f := range faults {
		first, count := imageRange(f, ev.Len())
		var (
			op int64
			dw float32
		)
		if f.Target == Weight {
			before, after, d := inj.weightChange(f)
			if unchanged(before, after) {
				// the weight keeps its bits on every image: no forward pass
				recordOnce(mk.seen, f, before, after)
				for i := first; i < first+count; i++ {
					skipPair(f, int64(i))
				}
				continue
			}
			if z != nil {
				recordOnce(mk.seen, f, before, after)
				op, dw = z.operand(&site, f), d
			}
		}
		for i := first; i < first+count; i++ {
			switch {
			case z != nil && z.inert(op, dw, int64(i)):
				// the exact delta is zero: the golden logits are the outcome
				inertPair(f, int64(i))
			case precheck && !f.Kind.alwaysActive():
				pendF, pendImg = append(pendF, f), append(pendImg, int64(i))
				if len(pendF) >= chunk {
					if err := drain(); err != nil {
						return err
					}
				}
			default:
				if err := push(f, int64(i)); err != nil {
					return err
				}
			}
		}
	}
	if err := drain(); err != nil {
		return err
	}
	if err := flush(); err != nil {
		return err
	}
	for _, f := range faults {
		finishMargin(f.Outcome, margins[f])
	}
	return nil
}

// goldenValues reads, for activation faults at stage st's lead layer s, the
// golden value each fault hits on its image (pair j: fault fs[j] on image
// imgs[j]) from the cached golden input or output of s: the values the batched
// passes start from, so that a pair found inactive here would be found inactive
// by its pass too. A MAC operand in the zero padding reads 0.
func (inj *Injector) goldenValues(ev *EvalSet, st int, s *model.Site, fs []*Fault, imgs []int64) ([]float32, error) {
	var (
		t    *ts.Tensor
		err  error
		per  int64
		at   = make([]int64, 0, len(fs))
		from = make([]int, len(fs)) // position in at, -1 for padding
	)
	switch fs[0].Point {
	case Output:
		t, err = inj.leadOut(ev, st)
		per = model.Numel(s.OutShape)
	default:
		t, err = inj.prefix(ev, st)
		per = model.Numel(s.InShape)
	}
	if err != nil {
		return nil, err
	}
	g, err := inj.geometry(s)
	if err != nil {
		return nil, err
	}
	for j, f := range fs {
		var q int64
		switch f.Point {
		case Output:
			q = flat(f.Index, s.OutShape)
		case Input:
			q = flat(f.Index, s.InShape)
		default:
			var pad bool
			if q, pad = macInput(s, g, f); pad {
				from[j] = -1
				continue
			}
		}
		from[j] = len(at)
		at = append(at, imgs[j]*per+q)
	}
	xs, err := take(t, at)
	if err != nil {
		return nil, fmt.Errorf("golden values: %w", err)
	}
	vals := make([]float32, len(fs))
	for j, k := range from {
		if k >= 0 {
			vals[j] = xs[k]
		}
	}
	return vals, nil
}

// macInput is the flat per-sample index into layer s's input of MAC fault f's
// operand, or pad when the operand is a zero-padding position (it reads 0); g
// is s's geometry when s is a conv.
func macInput(s *model.Site, g ConvGeometry, f *Fault) (q int64, pad bool) {
	if s.Kind == model.Linear {
		return f.Operand[0], false
	}
	y, x, ok := g.At(f.Index[1], f.Index[2], f.Operand[1], f.Operand[2])
	if !ok {
		return 0, true
	}
	return flat([]int64{g.InChannel(f.Index[0], f.Operand[0]), y, x}, s.InShape), false
}

// marks records what the samples of one batched pass did: each fault's value
// before and after on its first sample (seen), and for sample n whether the
// fault left its value unchanged (inactive[n], one entry per sample).
type marks struct {
	seen     map[*Fault]bool
	inactive []bool
}

// mark records sample n, which carries fault f and turned before into after.
func (m *marks) mark(n int, f *Fault, before, after float32) {
	recordOnce(m.seen, f, before, after)
	m.inactive[n] = unchanged(before, after)
}

// batchedHook applies sample n's fault sf[n] at the faulty site.
func (inj *Injector) batchedHook(s *model.Site, sf []*Fault, mk *marks, in, out *ts.Tensor) (*ts.Tensor, error) {
	f0 := sf[0]
	record := mk.mark
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
			record(n, f, vals[n], after)
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
func (inj *Injector) batchedMAC(s *model.Site, sf []*Fault, record func(int, *Fault, float32, float32), in, out *ts.Tensor) error {
	wv := inj.wts[s.Name]
	g, err := inj.geometry(s)
	if err != nil {
		return err
	}
	inPer, outPer := model.Numel(s.InShape), model.Numel(s.OutShape)
	outIdx := make([]int64, len(sf))
	var inIdx []int64
	inPos := make([]int, len(sf)) // position in inIdx, -1 for padding
	ws := make([]float32, len(sf))
	for n, f := range sf {
		outIdx[n] = int64(n)*outPer + flat(f.Index, s.OutShape)
		if s.Kind == model.Linear {
			ws[n] = wv[f.Index[0]*s.WeightShape[1]+f.Operand[0]]
		} else {
			ws[n] = wv[flat([]int64{f.Index[0], f.Operand[0], f.Operand[1], f.Operand[2]}, s.WeightShape)]
		}
		q, pad := macInput(s, g, f)
		if pad {
			inPos[n] = -1
			continue
		}
		inPos[n] = len(inIdx)
		inIdx = append(inIdx, int64(n)*inPer+q)
	}
	var xs []float32
	if len(inIdx) > 0 {
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
		record(n, f, x, x2)
		delta[n] = (x2 - x) * ws[n]
	}
	return put(out, outIdx, delta, true)
}

// batchedWeight adds each sample's exact weight-fault delta (w' - w) * x to the
// output neurons that read the faulty weight.
func (inj *Injector) batchedWeight(s *model.Site, sf []*Fault, record func(int, *Fault, float32, float32), in, out *ts.Tensor) error {
	dw := make([]float32, len(sf))
	for n, f := range sf {
		before, after, d := inj.weightChange(f)
		record(n, f, before, after)
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
	// conv: the faulty weight (c, ci, ky, kx) meets, at output (oy, ox), the
	// padded input (InChannel(c, ci), ky*dh + sh*oy, kx*dw + sw*ox); a bias fault
	// adds dw to all of channel c.
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
	g, err := GeometryOf(s)
	if err != nil {
		return err
	}
	padded := in
	if g.PT != 0 || g.PL != 0 || g.PB != 0 || g.PR != 0 {
		if padded, err = in.ConstantPadNd([]int64{g.PL, g.PR, g.PT, g.PB}, false); err != nil {
			return err
		}
		defer padded.Drop()
	}
	hp, wp := g.H+g.PT+g.PB, g.W+g.PL+g.PR
	inPer := g.Cin * hp * wp
	inIdx := make([]int64, 0, int64(len(sf))*m)
	for n, f := range sf {
		k := unflat(f.Index[0], s.WeightShape)
		c, ci := k[0], g.InChannel(k[0], k[1])
		obase := int64(n)*outPer + c*m
		ibase := int64(n)*inPer + ci*hp*wp
		for y := int64(0); y < oh; y++ {
			for x := int64(0); x < ow; x++ {
				outIdx = append(outIdx, obase+y*ow+x)
				inIdx = append(inIdx, ibase+(k[2]*g.DH+g.SH*y)*wp+k[3]*g.DW+g.SW*x)
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
	if f.Param == "weight" {
		before = inj.wts[f.Layer][f.Index[0]]
	} else {
		s := inj.sites[f.Layer]
		before = inj.host[s.Bias()][f.Index[0]]
	}
	after = f.Corrupt(before)
	return before, after, inj.effective(f, after) - before
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
