package fault

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model"
)

// Bit-error-rate (BER) mode: many weight bits flipped at once, enpheeph-style. A
// trial flips a set of bits over all weight bits of the selected layers (each bit
// with probability ber, or a fixed number of distinct bits), evaluates the model
// with all of them in place, and restores every parameter bit for bit.
//
// The flipped set of trial t depends on (seed, t) alone: a uniform u and a keyed
// permutation of all the selection's bits. The number of flips is the Binomial(bits,
// ber) quantile of u and the flips are the permutation's first positions, so for a
// given trial the flips at a lower BER (or a smaller count) are a subset of those at
// a higher one (common random numbers: curves are smooth with few trials), while
// each point on its own is exactly "every bit flips independently with probability
// ber". The work is O(flips), not O(bits).

// BER curve result kind and schema.
const (
	BERKind   = "faultline.ber_curve"
	BERSchema = 1
)

// MaxBERFlips bounds the bits one trial may flip (the expected number in BER mode).
const MaxBERFlips = 1 << 24

// berTag is the rng purpose tag of BER trials.
const berTag uint64 = 0xbe7c0de

// BEROptions configure RunBER. Exactly one of BERs and Count is set.
type BEROptions struct {
	// Space selects the bits: weights of Space.Layers (default all sites), plus their
	// biases with Space.Bias, bit positions Space.Bits (default 0..31). Target must be
	// weight (or empty), Kind bitflip (or empty), Duration permanent (or empty).
	Space Space
	// BERs are the bit error rates, each in (0, 1]; the curve lists them ascending.
	BERs []float64
	// Count flips exactly this many distinct bits per trial instead.
	Count int
	// Trials per BER (or for the count), >= 1.
	Trials int
	Seed   int64
	// Confidence of the accuracy interval (default 0.95).
	Confidence float64
	// KeepFlips records every trial's flipped bits in BERTrial.FlipList.
	KeepFlips bool
}

// Flip is one flipped bit of a BER trial.
type Flip struct {
	Layer string `json:"layer"`
	Param string `json:"param"` // weight or bias
	Index int64  `json:"index"` // flat index into the parameter
	Bit   int    `json:"bit"`
}

// BERTrial is one trial: its flips and what they did to the evaluation images.
type BERTrial struct {
	Point    int     `json:"point"` // index into BERCurve.Points
	BER      float64 `json:"ber,omitempty"`
	Count    int     `json:"count,omitempty"`
	Trial    int     `json:"trial"`
	Flips    int64   `json:"flips"`    // bits flipped
	Elements int64   `json:"elements"` // distinct parameter elements hit
	Correct  int     `json:"correct"`
	SDC      int     `json:"sdc"` // finite logits, top-1 differs from golden
	DUE      int     `json:"due"` // a non-finite logit
	Accuracy float64 `json:"accuracy"`
	SDCRate  float64 `json:"sdc_rate"`
	DUERate  float64 `json:"due_rate"`
	FlipList []Flip  `json:"flip_list,omitempty"`
}

// BERPoint sums up the trials of one BER (or of the count). Accuracy is the mean
// over trials with a Student-t interval at the curve's confidence ([0, 1] for a
// single trial); the rates are fractions of trial x image pairs.
type BERPoint struct {
	BER           float64    `json:"ber,omitempty"`
	Count         int        `json:"count,omitempty"`
	ExpectedFlips float64    `json:"expected_flips"` // ber x bits, or the count
	Trials        int        `json:"trials"`
	MeanFlips     float64    `json:"mean_flips"`
	MinFlips      int64      `json:"min_flips"`
	MaxFlips      int64      `json:"max_flips"`
	Accuracy      float64    `json:"accuracy"`
	AccuracyStd   float64    `json:"accuracy_std"`
	AccuracyCI    [2]float64 `json:"accuracy_ci"`
	AccuracyMin   float64    `json:"accuracy_min"`
	AccuracyMax   float64    `json:"accuracy_max"`
	AccuracyDrop  float64    `json:"accuracy_drop"` // golden minus mean
	SDCRate       float64    `json:"sdc_rate"`
	DUERate       float64    `json:"due_rate"`
	// MaskedTrials counts trials whose every prediction equals the golden one.
	MaskedTrials int `json:"masked_trials"`
}

// BERTiming is kept apart so that two runs with the same seed are otherwise
// byte-identical.
type BERTiming struct {
	Seconds         float64 `json:"seconds"`
	TrialsPerSecond float64 `json:"trials_per_second"`
}

// BERCurve is a BER run's result. Checkpoint, Arch and Dataset are for the caller
// to fill in.
type BERCurve struct {
	Kind           string     `json:"kind"`
	SchemaVersion  int        `json:"schema_version"`
	Checkpoint     string     `json:"checkpoint,omitempty"`
	Arch           string     `json:"arch,omitempty"`
	Dataset        string     `json:"dataset,omitempty"`
	Mode           string     `json:"mode"` // "ber" or "count"
	Space          Space      `json:"space"`
	Layers         []string   `json:"layers"` // the selection, resolved
	Bits           int64      `json:"bits"`   // weight bits in the selection
	Seed           int64      `json:"seed"`
	TrialsPerPoint int        `json:"trials_per_point"`
	Confidence     float64    `json:"confidence"`
	Images         int        `json:"images"`
	GoldenAccuracy float64    `json:"golden_accuracy"`
	Points         []BERPoint `json:"points"`
	Trials         []BERTrial `json:"trials"`
	Timing         BERTiming  `json:"timing"`
}

// WriteFile writes the curve as indented JSON, atomically.
func (c *BERCurve) WriteFile(path string) error { return writeJSON(path, c) }

// berSegment is one parameter of the selection and its place among all bits.
type berSegment struct {
	layer, param, name string
	n                  int64 // elements
	start              int64 // first bit position
	stage              int
}

// berSpace is every bit of a selection: bit position start + e*len(bits) + j is bit
// bits[j] of element e of a segment's parameter.
type berSpace struct {
	segs  []berSegment
	bits  []int
	total int64
}

// resolveBER validates a BER space against the model and lays out its bits.
func resolveBER(m *model.Model, sp Space) (Space, *berSpace, error) {
	switch {
	case sp.Target != "" && sp.Target != Weight:
		return sp, nil, fmt.Errorf("fault: ber: target %q: BER trials flip weight bits", sp.Target)
	case sp.Kind != "" && sp.Kind != BitFlip:
		return sp, nil, fmt.Errorf("fault: ber: kind %q: BER trials are bit flips", sp.Kind)
	case sp.Point != "":
		return sp, nil, fmt.Errorf("fault: ber: point %q: BER trials flip weights, not activations", sp.Point)
	case sp.Multi > 1:
		return sp, nil, fmt.Errorf("fault: ber: multi %d: a BER trial draws its bits itself", sp.Multi)
	case sp.Duration != "" && sp.Duration != Permanent:
		return sp, nil, fmt.Errorf("fault: ber: duration %q: BER faults stay for the whole trial (permanent)", sp.Duration)
	}
	sp.Target, sp.Kind, sp.Duration, sp.Multi = Weight, BitFlip, Permanent, 0
	b := &berSpace{bits: sp.Bits}
	if len(b.bits) == 0 {
		for j := 0; j < Float32Bits; j++ {
			b.bits = append(b.bits, j)
		}
	}
	seenBit := map[int]bool{}
	for _, j := range b.bits {
		if j < 0 || j >= Float32Bits || seenBit[j] {
			return sp, nil, fmt.Errorf("fault: ber: bits %v: want distinct positions in 0..31", sp.Bits)
		}
		seenBit[j] = true
	}
	sites := m.Sites()
	if len(sp.Layers) > 0 {
		sites = sites[:0]
		seen := map[string]bool{}
		for _, l := range sp.Layers {
			s, err := m.Site(l)
			if err != nil {
				return sp, nil, fmt.Errorf("fault: ber: unknown layer %q (layers: %v)", l, m.SiteNames())
			}
			if seen[l] {
				return sp, nil, fmt.Errorf("fault: ber: layer %q selected twice", l)
			}
			seen[l] = true
			sites = append(sites, s)
		}
	}
	nb := int64(len(b.bits))
	for _, s := range sites {
		st, err := m.StageOf(s.Name)
		if err != nil {
			return sp, nil, err
		}
		add := func(param, name string, n int64) {
			b.segs = append(b.segs, berSegment{layer: s.Name, param: param, name: name, n: n, start: b.total, stage: st})
			b.total += n * nb
		}
		add("weight", s.Weight(), model.Numel(s.WeightShape))
		if sp.Bias && s.HasBias {
			add("bias", s.Bias(), s.WeightShape[0])
		}
	}
	if b.total == 0 {
		return sp, nil, fmt.Errorf("fault: ber: the layer selection holds no weights (model layers: %v)", m.SiteNames())
	}
	return sp, b, nil
}

// validate checks the options against a space of total bits and returns the
// curve's points (ascending BERs, or the count).
func (o *BEROptions) validate(total int64) ([]BERPoint, error) {
	if o.Confidence == 0 {
		o.Confidence = 0.95
	}
	switch {
	case o.Trials < 1:
		return nil, fmt.Errorf("fault: ber: trials %d: want at least 1", o.Trials)
	case len(o.BERs) > 0 && o.Count != 0:
		return nil, fmt.Errorf("fault: ber: give either bit error rates or a count of flips, not both")
	case len(o.BERs) == 0 && o.Count == 0:
		return nil, fmt.Errorf("fault: ber: give bit error rates or a count of flips per trial")
	}
	if !(o.Confidence > 0 && o.Confidence < 1) {
		return nil, fmt.Errorf("fault: ber: confidence %v outside (0, 1)", o.Confidence)
	}
	if o.Count != 0 {
		if o.Count < 0 || int64(o.Count) > total || o.Count > MaxBERFlips {
			return nil, fmt.Errorf("fault: ber: count %d outside 1..%d (the selection has %d bits)", o.Count, min(total, MaxBERFlips), total)
		}
		return []BERPoint{{Count: o.Count, ExpectedFlips: float64(o.Count)}}, nil
	}
	bers := append([]float64(nil), o.BERs...)
	sort.Float64s(bers)
	var pts []BERPoint
	for i, p := range bers {
		if !(p > 0 && p <= 1) {
			return nil, fmt.Errorf("fault: ber: bit error rate %g outside (0, 1]", p)
		}
		if i > 0 && p == bers[i-1] {
			return nil, fmt.Errorf("fault: ber: bit error rate %g given twice", p)
		}
		if e := p * float64(total); e > MaxBERFlips {
			return nil, fmt.Errorf("fault: ber: bit error rate %g flips %.0f of %d bits per trial, more than %d (lower it or select fewer layers)", p, e, total, MaxBERFlips)
		}
		pts = append(pts, BERPoint{BER: p, ExpectedFlips: p * float64(total)})
	}
	return pts, nil
}

// RunBER runs o.Trials trials per BER (or of o.Count flips) on ev and returns the
// curve; progress, when not nil, is called after each trial. It must run on the
// torch thread (inside torch.Do). Every flipped element is restored from the
// injector's golden host copy and read back: a bit that differs is an error.
func (inj *Injector) RunBER(ctx context.Context, ev *EvalSet, o BEROptions, progress func(done, total int)) (*BERCurve, error) {
	start := time.Now()
	if ev == nil || ev.Len() == 0 {
		return nil, fmt.Errorf("fault: ber: no evaluation images")
	}
	sp, space, err := resolveBER(inj.m, o.Space)
	if err != nil {
		return nil, err
	}
	points, err := o.validate(space.total)
	if err != nil {
		return nil, err
	}
	c := &BERCurve{Kind: BERKind, SchemaVersion: BERSchema, Mode: "ber", Space: sp, Bits: space.total, Seed: o.Seed,
		TrialsPerPoint: o.Trials, Confidence: o.Confidence, Images: ev.Len(), GoldenAccuracy: ev.Accuracy(), Points: points}
	if o.Count != 0 {
		c.Mode = "count"
	}
	for _, s := range space.segs {
		if len(c.Layers) == 0 || c.Layers[len(c.Layers)-1] != s.layer {
			c.Layers = append(c.Layers, s.layer)
		}
	}
	total := len(points) * o.Trials
	err = torch.NoGrad(func() error {
		for pi := range points {
			pt := &points[pi]
			for t := 0; t < o.Trials; t++ {
				if err := ctx.Err(); err != nil {
					return err
				}
				r := newStream(o.Seed, berTag, int64(t))
				u := (float64(r.next()>>11) + 0.5) / (1 << 53)
				perm := newPermutation(space.total, int64(r.next()), berTag)
				k := int64(pt.Count)
				if pt.BER > 0 {
					k = binomialQuantile(space.total, pt.BER, u)
				}
				pos := make([]int64, k)
				for i := range pos {
					pos[i] = perm.at(int64(i))
				}
				slices.Sort(pos)
				rec, err := inj.berTrial(ev, space, pos)
				if err != nil {
					if pt.BER > 0 {
						return fmt.Errorf("fault: ber %g, trial %d: %w", pt.BER, t, err)
					}
					return fmt.Errorf("fault: ber: count %d, trial %d: %w", pt.Count, t, err)
				}
				rec.Point, rec.BER, rec.Count, rec.Trial = pi, pt.BER, pt.Count, t
				if o.KeepFlips {
					rec.FlipList = space.flips(pos)
				}
				c.Trials = append(c.Trials, rec)
				if progress != nil {
					progress(len(c.Trials), total)
				}
			}
			summarisePoint(pt, c.Trials[len(c.Trials)-o.Trials:], ev.Len(), c.GoldenAccuracy, o.Confidence)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	secs := time.Since(start).Seconds()
	c.Timing = BERTiming{Seconds: secs, TrialsPerSecond: float64(total) / math.Max(secs, 1e-9)}
	return c, nil
}

// elemFlips is the flips of one parameter: distinct elements (ascending) and the
// XOR mask of each.
type elemFlips struct {
	seg  *berSegment
	idx  []int64
	mask []uint32
}

// group turns sorted bit positions into per-parameter element masks (two bits of
// one element share its mask).
func (b *berSpace) group(pos []int64) []elemFlips {
	var out []elemFlips
	nb := int64(len(b.bits))
	s := 0
	for _, p := range pos {
		for p >= b.segs[s].start+b.segs[s].n*nb {
			s++
		}
		if len(out) == 0 || out[len(out)-1].seg != &b.segs[s] {
			out = append(out, elemFlips{seg: &b.segs[s]})
		}
		g := &out[len(out)-1]
		rel := p - b.segs[s].start
		e, bit := rel/nb, b.bits[rel%nb]
		if n := len(g.idx); n > 0 && g.idx[n-1] == e {
			g.mask[n-1] |= 1 << uint(bit)
			continue
		}
		g.idx = append(g.idx, e)
		g.mask = append(g.mask, 1<<uint(bit))
	}
	return out
}

// flips lists sorted bit positions as parameter bits.
func (b *berSpace) flips(pos []int64) []Flip {
	if len(pos) == 0 {
		return nil
	}
	nb := int64(len(b.bits))
	out := make([]Flip, len(pos))
	for i, p := range pos {
		s := sort.Search(len(b.segs), func(s int) bool { return b.segs[s].start+b.segs[s].n*nb > p }) // segments ascend
		seg := &b.segs[s]
		rel := p - seg.start
		out[i] = Flip{Layer: seg.layer, Param: seg.param, Index: rel / nb, Bit: b.bits[rel%nb]}
	}
	return out
}

// berTrial applies the flips at pos, evaluates ev and restores the parameters (also
// when the evaluation fails or panics).
func (inj *Injector) berTrial(ev *EvalSet, b *berSpace, pos []int64) (rec BERTrial, err error) {
	groups := b.group(pos)
	rec.Flips = int64(len(pos))
	o := &Outcome{}
	var margins []float64
	if len(groups) == 0 { // no flip: the golden run
		for i := range ev.Golden {
			classify(o, ev.Logits[i*ev.Classes:(i+1)*ev.Classes], ev.Golden[i], ev.Labels[i], &margins)
		}
	} else {
		st := groups[0].seg.stage
		for _, g := range groups {
			st = min(st, g.seg.stage)
			rec.Elements += int64(len(g.idx))
		}
		applied := 0
		defer func() {
			if rerr := inj.restoreFlips(groups[:applied]); rerr != nil {
				err = errors.Join(rerr, err)
			}
		}()
		if applied, err = inj.applyFlips(groups); err != nil {
			return rec, err
		}
		if err = inj.berEval(ev, st, o, &margins); err != nil {
			return rec, err
		}
	}
	n := float64(o.Images)
	rec.Correct, rec.SDC, rec.DUE = o.Images-o.Misclassified, o.SDC, o.DUE
	rec.Accuracy, rec.SDCRate, rec.DUERate = float64(rec.Correct)/n, float64(o.SDC)/n, float64(o.DUE)/n
	return rec, nil
}

// applyFlips writes each group's flipped golden values and returns how many groups
// it touched. An element whose value is not the golden one is an error (the model
// changed after NewInjector, or a fault is applied).
func (inj *Injector) applyFlips(groups []elemFlips) (int, error) {
	for gi, g := range groups {
		p, err := inj.m.Param(g.seg.name)
		if err != nil {
			return gi, err
		}
		cur, err := take(p, g.idx)
		if err != nil {
			return gi, err
		}
		host := inj.host[g.seg.name]
		vals := make([]float32, len(g.idx))
		for i, e := range g.idx {
			if BitsOf(cur[i]) != BitsOf(host[e]) {
				return gi, fmt.Errorf("%s[%d] is 0x%08x, not its golden value 0x%08x (model changed after NewInjector, or a fault is applied)", g.seg.name, e, math.Float32bits(cur[i]), math.Float32bits(host[e]))
			}
			vals[i] = math.Float32frombits(math.Float32bits(host[e]) ^ g.mask[i])
		}
		if err := put(p, g.idx, vals, false); err != nil {
			return gi + 1, err
		}
	}
	return len(groups), nil
}

// restoreFlips writes the golden values back and reads them back bit for bit.
func (inj *Injector) restoreFlips(groups []elemFlips) error {
	var errs []error
	for _, g := range groups {
		p, err := inj.m.Param(g.seg.name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		host := inj.host[g.seg.name]
		vals := make([]float32, len(g.idx))
		for i, e := range g.idx {
			vals[i] = host[e]
		}
		if err := put(p, g.idx, vals, false); err != nil {
			errs = append(errs, fmt.Errorf("restore %s: %w", g.seg.name, err))
			continue
		}
		got, err := take(p, g.idx)
		if err != nil {
			errs = append(errs, fmt.Errorf("verify %s: %w", g.seg.name, err))
			continue
		}
		for i, e := range g.idx {
			if BitsOf(got[i]) != BitsOf(host[e]) {
				errs = append(errs, fmt.Errorf("restore %s[%d]: read back 0x%08x, golden 0x%08x", g.seg.name, e, math.Float32bits(got[i]), math.Float32bits(host[e])))
				break
			}
		}
	}
	return errors.Join(errs...)
}

// berEval classifies every image of ev with the current (faulty) parameters,
// starting from the golden input of stage st (the stages before hold no flip).
func (inj *Injector) berEval(ev *EvalSet, st int, o *Outcome, margins *[]float64) error {
	x, err := inj.prefix(ev, st)
	if err != nil {
		return err
	}
	for i := 0; i < ev.Len(); i += inj.BatchSize {
		n := min(inj.BatchSize, ev.Len()-i)
		xb, err := x.Narrow(0, int64(i), int64(n), false)
		if err != nil {
			return err
		}
		logits, err := inj.logits(xb, st, nil)
		if err != nil {
			return err
		}
		for k := 0; k < n; k++ {
			img := i + k
			classify(o, logits[k*ev.Classes:(k+1)*ev.Classes], ev.Golden[img], ev.Labels[img], margins)
		}
	}
	return nil
}

// summarisePoint fills a point's statistics from its trials on images images.
// Means are totals over trial x image pairs (one division: eight trials at 0.99
// average to 0.99, not 0.9900000000000001).
func summarisePoint(pt *BERPoint, trials []BERTrial, images int, golden, confidence float64) {
	pt.Trials = len(trials)
	acc := make([]float64, len(trials))
	pt.MinFlips, pt.MaxFlips = trials[0].Flips, trials[0].Flips
	pt.AccuracyMin, pt.AccuracyMax = 1, 0
	var flips, correct, sdc, due int64
	for i, tr := range trials {
		acc[i] = tr.Accuracy
		flips += tr.Flips
		correct, sdc, due = correct+int64(tr.Correct), sdc+int64(tr.SDC), due+int64(tr.DUE)
		pt.MinFlips, pt.MaxFlips = min(pt.MinFlips, tr.Flips), max(pt.MaxFlips, tr.Flips)
		pt.AccuracyMin, pt.AccuracyMax = min(pt.AccuracyMin, tr.Accuracy), max(pt.AccuracyMax, tr.Accuracy)
		if tr.SDC == 0 && tr.DUE == 0 {
			pt.MaskedTrials++
		}
	}
	pairs := float64(len(trials) * images)
	pt.MeanFlips = float64(flips) / float64(len(trials))
	pt.Accuracy, pt.SDCRate, pt.DUERate = float64(correct)/pairs, float64(sdc)/pairs, float64(due)/pairs
	pt.AccuracyStd, pt.AccuracyCI = meanInterval(acc, pt.Accuracy, confidence)
	pt.AccuracyDrop = golden - pt.Accuracy
}
