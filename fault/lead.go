package fault

import (
	"fmt"
	"math"
	"slices"

	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// Batched injection at a stage's lead layer (the conv or linear layer a stage
// applies to its input first, model.Model.Lead) starts from that layer's cached
// golden output instead of recomputing it:
//
//   - weight and MAC faults add their exact delta to the golden output;
//   - an input fault x -> x' adds (x' - x) * w to the output neurons that read x;
//   - an output fault is written into the golden output, the rest of the stage
//     (normalisation, activation, pooling) runs batched, and when the next stage
//     also has a lead layer the few changed elements of its input (the fault's
//     footprint) add their exact delta to that layer's golden output too, so
//     neither layer is recomputed.
//
// The deltas are linear algebra on float32, so outcomes agree with the reference
// mode up to float rounding (the equivalence test checks this fault by fault).

// maxFootprint is the most elements of the next stage's input that one output
// element may reach for the output-fault shortcut (a 2x2 pool reaches one), and
// maxHood the most output elements its footprint may depend on (a 2x2 pool: 4).
const (
	maxFootprint = 8
	maxHood      = 64
)

// reach describes how the rest of a stage (after its lead layer) maps the lead's
// output onto the next stage's input: foot[p] is the elements of the next
// stage's input that output element p can change, and hood[p] the output elements
// those depend on (p among them).
type reach struct {
	foot, hood [][]int64
}

// leadOut returns the golden output of stage st's lead layer for every evaluation
// image, computed once per evaluation set.
func (inj *Injector) leadOut(ev *EvalSet, st int) (*ts.Tensor, error) {
	if y, ok := ev.lead[st]; ok {
		return y, nil
	}
	x, err := inj.prefix(ev, st)
	if err != nil {
		return nil, err
	}
	y, err := inj.chunked(ev.Len(), func(i, n int) (*ts.Tensor, error) {
		xb, err := x.Narrow(0, int64(i), int64(n), false)
		if err != nil {
			return nil, err
		}
		defer xb.Drop()
		return inj.m.RunLayer(inj.m.Lead(st), xb)
	})
	if err != nil {
		return nil, err
	}
	if ev.lead == nil {
		ev.lead = map[int]*ts.Tensor{}
	}
	ev.lead[st] = y
	return y, nil
}

// chunked concatenates fn's results over [0, n) in chunks of BatchSize.
func (inj *Injector) chunked(n int, fn func(i, n int) (*ts.Tensor, error)) (*ts.Tensor, error) {
	var parts []*ts.Tensor
	defer func() {
		for _, p := range parts {
			p.Drop()
		}
	}()
	for i := 0; i < n; i += inj.BatchSize {
		y, err := fn(i, min(inj.BatchSize, n-i))
		if err != nil {
			return nil, err
		}
		parts = append(parts, y)
	}
	return ts.Cat(parts, 0)
}

// footprint maps each element of stage st's lead output to the elements of stage
// st+1's input that it can change (and back). It returns nil when the output-fault
// shortcut does not apply: stage st+1 has no lead layer, or an element reaches
// more than maxFootprint elements (or depends on more than maxHood). It probes the rest of stage st with an all-zero output
// carrying one NaN, +1e30 or -1e30 per sample, and is computed once per injector.
func (inj *Injector) footprint(st int) (*reach, error) {
	if f, ok := inj.foot[st]; ok {
		return f, nil
	}
	if inj.foot == nil {
		inj.foot = map[int]*reach{}
	}
	if st+1 >= inj.m.NumStages() || inj.m.Lead(st+1) == "" {
		inj.foot[st] = nil
		return nil, nil
	}
	if next := inj.sites[inj.m.Lead(st+1)]; CheckSite(&next) != nil {
		inj.foot[st] = nil // the shortcut's deltas need the next layer's geometry
		return nil, nil
	}
	s := inj.sites[inj.m.Lead(st)]
	per := model.Numel(s.OutShape)
	nextPer := model.Numel(inj.m.StageInShape(st + 1))
	foot := make([][]int64, per)
	dev := inj.m.Device()
	shape := func(n int64) []int64 { return append([]int64{n}, s.OutShape...) }
	zero, err := ts.Zeros(shape(1), gotch.Float, dev)
	if err != nil {
		return nil, err
	}
	base, err := inj.m.RunAfterLead(st, zero, st+1, false, nil)
	zero.Drop()
	if err != nil {
		return nil, err
	}
	defer base.Drop()
	chunk := max(int64(1), min(per, (1<<22)/max(per, nextPer)))
	for p0 := int64(0); p0 < per; p0 += chunk {
		n := min(chunk, per-p0)
		for _, v := range []float32{float32(math.NaN()), 1e30, -1e30} {
			pos, err := inj.probe(st, shape(n), per, p0, v, base)
			if err != nil {
				return nil, fmt.Errorf("fault: footprint of %s: %w", s.Name, err)
			}
			for k := 0; k+1 < len(pos); k += 2 {
				p, q := p0+pos[k], pos[k+1]
				if !slices.Contains(foot[p], q) {
					foot[p] = append(foot[p], q)
				}
			}
		}
	}
	inj.foot[st] = nil
	from := map[int64][]int64{} // next-stage element -> output elements reaching it
	for p, f := range foot {
		if len(f) > maxFootprint {
			return nil, nil
		}
		for _, q := range f {
			from[q] = append(from[q], int64(p))
		}
	}
	r := &reach{foot: foot, hood: make([][]int64, per)}
	for p, f := range foot {
		h := []int64{int64(p)}
		for _, q := range f {
			for _, o := range from[q] {
				if !slices.Contains(h, o) {
					h = append(h, o)
				}
			}
		}
		if len(h) > maxHood {
			return nil, nil
		}
		r.hood[p] = h
	}
	inj.foot[st] = r
	return r, nil
}

// probe runs the rest of stage st on n zero outputs, sample i carrying v at
// element p0+i, and returns the (sample, element) pairs of stage st+1's input
// that differ from base, flattened.
func (inj *Injector) probe(st int, shape []int64, per, p0 int64, v float32, base *ts.Tensor) ([]int64, error) {
	t, err := ts.Zeros(shape, gotch.Float, inj.m.Device())
	if err != nil {
		return nil, err
	}
	defer t.Drop()
	idx := make([]int64, shape[0])
	vals := make([]float32, shape[0])
	for i := range idx {
		idx[i], vals[i] = int64(i)*per+p0+int64(i), v
	}
	if err := put(t, idx, vals, false); err != nil {
		return nil, err
	}
	y, err := inj.m.RunAfterLead(st, t, st+1, false, nil)
	if err != nil {
		return nil, err
	}
	ne, err := y.NeTensor(base, true)
	if err != nil {
		return nil, err
	}
	if ne, err = ne.Reshape([]int64{shape[0], -1}, true); err != nil {
		return nil, err
	}
	nz, err := ne.Nonzero(true)
	if err != nil {
		return nil, err
	}
	defer nz.Drop()
	return torch.Int64s(nz)
}

// runLead runs one batch of faults at the lead layer of stage st (sample n
// carries sf[n] on image simg[n]) and returns the logits.
func (inj *Injector) runLead(ev *EvalSet, st int, s *model.Site, sf []*Fault, simg []int64, mk *marks) ([]float32, error) {
	idx, err := torch.FromInt64(simg, []int64{int64(len(simg))}, inj.m.Device())
	if err != nil {
		return nil, err
	}
	defer idx.Drop()
	f0 := sf[0]
	if f0.Target == Activation && f0.Point == Output {
		r, err := inj.footprint(st)
		if err != nil {
			return nil, err
		}
		if r != nil {
			return inj.downstream(ev, st, s, sf, simg, mk, idx, r)
		}
	}
	gold, err := inj.leadOut(ev, st)
	if err != nil {
		return nil, err
	}
	out, err := gold.IndexSelect(0, idx, false)
	if err != nil {
		return nil, err
	}
	defer out.Drop()
	x, err := inj.prefix(ev, st)
	if err != nil {
		return nil, err
	}
	switch {
	case f0.Target == Activation && f0.Point == Input:
		inPer := model.Numel(s.InShape)
		at := make([]int64, len(sf))
		for n, f := range sf {
			at[n] = simg[n]*inPer + flat(f.Index, s.InShape)
		}
		xs, err := take(x, at)
		if err != nil {
			return nil, err
		}
		var oIdx []int64
		var vals []float32
		for n, f := range sf {
			after := f.Corrupt(xs[n])
			mk.mark(n, f, xs[n], after)
			if oIdx, vals, err = inj.inputDelta(s, int64(n), at[n]-simg[n]*inPer, after-xs[n], oIdx, vals); err != nil {
				return nil, err
			}
		}
		if err := put(out, oIdx, vals, true); err != nil {
			return nil, err
		}
	case f0.Target == Activation && f0.Point == Output:
		if _, err := inj.batchedHook(s, sf, mk, nil, out); err != nil {
			return nil, err
		}
	default: // weight and MAC faults read the layer's input
		in, err := x.IndexSelect(0, idx, false)
		if err != nil {
			return nil, err
		}
		defer in.Drop()
		if _, err := inj.batchedHook(s, sf, mk, in, out); err != nil {
			return nil, err
		}
		if f0.Target == Weight {
			one, err := inj.channelConv(st)
			if err != nil {
				return nil, err
			}
			if one {
				logits, err := inj.channelDelta(ev, st, s, sf, idx, out)
				if err != nil || logits != nil {
					return logits, err
				}
			}
		}
	}
	return inj.logitsAfterLead(st, out)
}

// downstream runs a batch of output faults at stage st's lead layer without
// materialising one output map per sample. The rest of stage st is local (r), so
// each fault's footprint in stage st+1's input depends only on its neighbourhood
// r.hood[p]: samples whose neighbourhoods do not overlap share one composite map
// holding their images' golden values there (and the fault), the rest of stage
// st runs on the few composite maps, and the changed footprint elements add
// their exact delta to the golden output of stage st+1's lead layer.
func (inj *Injector) downstream(ev *EvalSet, st int, s *model.Site, sf []*Fault, simg []int64, mk *marks, idx *ts.Tensor, r *reach) ([]float32, error) {
	gold, err := inj.leadOut(ev, st)
	if err != nil {
		return nil, err
	}
	per := model.Numel(s.OutShape)
	pos := make([]int64, len(sf))
	at := make([]int64, 0, len(sf)*4)
	for n, f := range sf {
		pos[n] = flat(f.Index, s.OutShape)
		for _, h := range r.hood[pos[n]] {
			at = append(at, simg[n]*per+h)
		}
	}
	vals, err := take(gold, at)
	if err != nil {
		return nil, err
	}
	// Place every sample's neighbourhood in the first composite map where it is
	// free, with the fault applied at its own element (hood[p][0] = p).
	var used [][]bool
	slot := make([]int64, 0, len(at))
	k := 0
	for n, f := range sf {
		h := r.hood[pos[n]]
		m := 0
		for ; m < len(used); m++ {
			free := true
			for _, e := range h {
				if used[m][e] {
					free = false
					break
				}
			}
			if free {
				break
			}
		}
		if m == len(used) {
			used = append(used, make([]bool, per))
		}
		for _, e := range h {
			used[m][e] = true
			slot = append(slot, int64(m)*per+e)
		}
		before := vals[k]
		vals[k] = f.Corrupt(before)
		mk.mark(n, f, before, vals[k])
		k += len(h)
	}
	maps, err := ts.Zeros(append([]int64{int64(len(used))}, s.OutShape...), gotch.Float, inj.m.Device())
	if err != nil {
		return nil, err
	}
	defer maps.Drop()
	if err := put(maps, slot, vals, false); err != nil {
		return nil, err
	}
	xp, err := inj.m.RunAfterLead(st, maps, st+1, false, nil)
	if err != nil {
		return nil, err
	}
	defer xp.Drop()
	next, err := inj.prefix(ev, st+1)
	if err != nil {
		return nil, err
	}
	nextPer := model.Numel(inj.m.StageInShape(st + 1))
	var faulty, golden, sample, elem []int64
	k = 0
	for n := range sf {
		m := slot[k] / per
		k += len(r.hood[pos[n]])
		for _, q := range r.foot[pos[n]] {
			faulty = append(faulty, m*nextPer+q)
			golden = append(golden, simg[n]*nextPer+q)
			sample = append(sample, int64(n))
			elem = append(elem, q)
		}
	}
	gold2, err := inj.leadOut(ev, st+1)
	if err != nil {
		return nil, err
	}
	out2, err := gold2.IndexSelect(0, idx, false)
	if err != nil {
		return nil, err
	}
	defer out2.Drop()
	xs, err := take(xp, faulty)
	if err != nil {
		return nil, err
	}
	gs, err := take(next, golden)
	if err != nil {
		return nil, err
	}
	s2 := inj.sites[inj.m.Lead(st+1)]
	var oIdx []int64
	var dv []float32
	for j := range xs {
		if oIdx, dv, err = inj.inputDelta(&s2, sample[j], elem[j], xs[j]-gs[j], oIdx, dv); err != nil {
			return nil, err
		}
	}
	if err := put(out2, oIdx, dv, true); err != nil {
		return nil, err
	}
	return inj.logitsAfterLead(st+1, out2)
}

// inputDelta appends, for sample n, the change d of element q of layer s's input
// as its exact effect d * w on the output neurons that read it (flat indices into
// a batch of s's outputs, and values to add). d = 0 adds nothing.
func (inj *Injector) inputDelta(s *model.Site, n, q int64, d float32, idx []int64, vals []float32) ([]int64, []float32, error) {
	if d == 0 {
		return idx, vals, nil
	}
	w := inj.wts[s.Name]
	outPer := model.Numel(s.OutShape)
	if s.Kind == model.Linear {
		in := s.WeightShape[1]
		for o := int64(0); o < s.OutShape[0]; o++ {
			idx = append(idx, n*outPer+o)
			vals = append(vals, d*w[o*in+q])
		}
		return idx, vals, nil
	}
	g, err := GeometryOf(s)
	if err != nil {
		return idx, vals, err
	}
	e := unflat(q, s.InShape)
	c, y, x := e[0], e[1], e[2]
	gr := c / g.Cg
	var oys, oxs []int64
	for ky := int64(0); ky < g.KH; ky++ {
		oys = outputs(oys[:0], y, ky, g.SH, g.DH, g.PT, g.OH)
		if len(oys) == 0 {
			continue
		}
		for kx := int64(0); kx < g.KW; kx++ {
			oxs = outputs(oxs[:0], x, kx, g.SW, g.DW, g.PL, g.OW)
			if len(oxs) == 0 {
				continue
			}
			oy, ox := oys[0], oxs[0]
			for o := gr * g.Og; o < (gr+1)*g.Og; o++ {
				idx = append(idx, n*outPer+(o*g.OH+oy)*g.OW+ox)
				vals = append(vals, d*w[((o*g.Cg+c-gr*g.Cg)*g.KH+ky)*g.KW+kx])
			}
		}
	}
	return idx, vals, nil
}

// logitsAfterLead runs y (the lead output of stage st, not dropped) to the logits.
func (inj *Injector) logitsAfterLead(st int, y *ts.Tensor) ([]float32, error) {
	out, err := inj.m.RunAfterLead(st, y, inj.m.NumStages(), false, nil)
	if err != nil {
		return nil, err
	}
	defer out.Drop()
	return torch.Float32s(out)
}
