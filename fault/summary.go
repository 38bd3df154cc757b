package fault

import (
	"math"
	"sort"
	"strconv"
)

// Summary kinds and schema.
const (
	SummaryKind   = "faultline.fault_campaign"
	SummarySchema = 1
)

// Breakdown is the result of a part of a campaign (a layer or a bit position).
// Its rates and intervals are over the active fault x image pairs (and, for the
// critical fault rate, the active faults): the pairs on which the fault changed
// the value it hit. For bit flips every pair is active; for the other kinds,
// AllFaults adds the inactive counts and the rates over all pairs.
type Breakdown struct {
	Key     string     `json:"key"`
	Faults  int64      `json:"faults"`
	Pairs   int64      `json:"pairs"` // fault x image pairs, inactive ones included
	SDC     int64      `json:"sdc"`
	DUE     int64      `json:"due"`
	SDCRate float64    `json:"sdc_rate"`
	DUERate float64    `json:"due_rate"`
	VF      float64    `json:"vf"`
	VFCI95  [2]float64 `json:"vf_ci95"`
	// CriticalFaults counts the faults with an SDC or a DUE on at least one of
	// their images; CriticalFaultRate is their fraction of the active faults
	// (active on at least one image), with Wilson's interval over those faults
	// (faults are drawn independently).
	CriticalFaults      int64      `json:"critical_faults"`
	CriticalFaultRate   float64    `json:"critical_fault_rate"`
	CriticalFaultRateCI [2]float64 `json:"critical_fault_rate_ci95"`
	// AllFaults, present when the campaign has faults that can be inactive
	// (every kind but bitflip), holds the inactive counts and the rates over all
	// faults; its fields are written inline (inactive, sdc_rate_all, ...).
	*AllFaults
	// inactive pairs, faults inactive on every image, the tallies of all pairs
	// and of the active ones, and the sum of c^2 over faults (c critical pairs),
	// for the intervals
	inactive, inactiveFaults int64
	all, act                 tally
	cc                       float64
	multi                    bool // a fault ran on more than one image
}

// AllFaults is the part of a breakdown or summary that counts the inactive
// faults, which left the value they hit bit for bit as it was (see
// [Fault.Inactive]), and gives the rates over all faults, inactive ones
// included, next to the headline rates over the active ones.
type AllFaults struct {
	// Inactive counts the fault x image pairs on which the fault was inactive,
	// ActivePairs the others (Pairs = ActivePairs + Inactive).
	Inactive    int64 `json:"inactive"`
	ActivePairs int64 `json:"active_pairs"`
	// InactiveFaults counts the faults inactive on every one of their images,
	// ActiveFaults the others (Faults = ActiveFaults + InactiveFaults).
	InactiveFaults int64 `json:"inactive_faults"`
	ActiveFaults   int64 `json:"active_faults"`
	// The rates and intervals over all pairs (or faults), inactive ones counted
	// as not critical.
	SDCRateAll             float64    `json:"sdc_rate_all"`
	DUERateAll             float64    `json:"due_rate_all"`
	VFAll                  float64    `json:"vf_all"`
	VFAllCI95              [2]float64 `json:"vf_all_ci95"`
	CriticalFaultRateAll   float64    `json:"critical_fault_rate_all"`
	CriticalFaultRateAllCI [2]float64 `json:"critical_fault_rate_all_ci95"`
}

// tally holds, over a set of faults (all of them, or the active ones with their
// active images), the pairs and faults counted and the sums of c*m and m^2 (c
// critical pairs, m images of a fault) for the cluster-robust interval; the sum
// of c^2 is the same for both sets (inactive pairs are never critical).
type tally struct {
	pairs, faults int64
	cm, mm        float64
}

func (t *tally) add(c, m int) {
	if m == 0 {
		return
	}
	t.pairs += int64(m)
	t.faults++
	t.cm += float64(c) * float64(m)
	t.mm += float64(m) * float64(m)
}

func (b *Breakdown) add(o *Outcome) {
	b.Faults++
	b.Pairs += int64(o.Images)
	b.SDC += int64(o.SDC)
	b.DUE += int64(o.DUE)
	b.inactive += int64(o.Inactive)
	if o.Images > 0 && o.Active() == 0 {
		b.inactiveFaults++
	}
	c := o.Critical()
	b.all.add(c, o.Images)
	b.act.add(c, o.Active())
	b.cc += float64(c) * float64(c)
	b.multi = b.multi || o.Images > 1
	if c > 0 {
		b.CriticalFaults++
	}
}

// finish computes the rates: over the active pairs and faults, and, when all is
// set, over all of them too (in AllFaults).
func (b *Breakdown) finish(all bool) {
	if b.Pairs == 0 {
		return
	}
	crit := b.SDC + b.DUE
	if n := b.act.pairs; n > 0 {
		b.SDCRate, b.DUERate = float64(b.SDC)/float64(n), float64(b.DUE)/float64(n)
		b.VF = float64(crit) / float64(n)
		b.CriticalFaultRate = float64(b.CriticalFaults) / float64(b.act.faults)
	}
	b.VFCI95 = b.interval(&b.act, 0.95)
	b.CriticalFaultRateCI = Wilson(b.CriticalFaults, b.act.faults, 0.95)
	if !all {
		return
	}
	n := float64(b.Pairs)
	b.AllFaults = &AllFaults{
		Inactive: b.inactive, ActivePairs: b.act.pairs, InactiveFaults: b.inactiveFaults, ActiveFaults: b.act.faults,
		SDCRateAll: float64(b.SDC) / n, DUERateAll: float64(b.DUE) / n, VFAll: float64(crit) / n,
		VFAllCI95:              b.interval(&b.all, 0.95),
		CriticalFaultRateAll:   float64(b.CriticalFaults) / float64(b.Faults),
		CriticalFaultRateAllCI: Wilson(b.CriticalFaults, b.Faults, 0.95),
	}
}

// interval is the confidence interval of the VF over the pairs of t (all pairs,
// or the active ones). With one image per fault the pairs are independent draws
// and it is Wilson's interval over them. With several images per fault the
// sampled unit is the fault, and pairs under one fault are correlated (a bit-30
// flip in a busy weight misclassifies many images at once), so pair-level Wilson
// would be far too narrow. The interval is then Wilson's over the effective
// sample size n_eff = VF (1 - VF) / var, where var is the cluster-robust
// variance sum((c_i - VF m_i)^2) / (n (n-1) mean(m)^2) over the n faults of t
// (m_i its pairs of fault i), capped at the pairs; when that cannot be estimated
// (VF 0 or 1, a zero variance, a single fault) n_eff is the number of faults,
// which is conservative. With no pair it is [0, 1]: nothing is known.
func (b *Breakdown) interval(t *tally, confidence float64) [2]float64 {
	crit := b.SDC + b.DUE
	if !b.multi || t.pairs == 0 {
		return Wilson(crit, t.pairs, confidence)
	}
	n, r := float64(t.faults), float64(crit)/float64(t.pairs)
	neff := n
	if t.faults >= 2 && r > 0 && r < 1 {
		mean := float64(t.pairs) / n
		if v := math.Max(0, b.cc-2*r*t.cm+r*r*t.mm) / (n * (n - 1) * mean * mean); v > 0 {
			neff = math.Min(float64(t.pairs), r*(1-r)/v)
		}
	}
	return wilson(r, neff, confidence)
}

// Timing holds a run's timings, kept apart so that results are otherwise
// byte-identical between runs.
type Timing struct {
	// InjectSeconds is the injection work alone (faulty forward passes and their
	// bookkeeping); SetupSeconds is model loading and the golden run.
	InjectSeconds   float64 `json:"inject_seconds"`
	SetupSeconds    float64 `json:"setup_seconds"`
	FaultsPerSecond float64 `json:"faults_per_second"`
}

// Summary is a campaign's result (summary.json). Rates and VFs are fractions in
// [0, 1]. The vulnerability factor VF is the fraction of fault x image pairs whose
// prediction the fault changed: SDC + DUE. The headline rates are over the active
// pairs, on which the fault changed the value it hit; a fault that leaves the
// value bit for bit as it was (a stuck-at fault whose bits already hold the
// forced value, see [Fault.Inactive]) is inactive and counted apart. Bit flips
// are always active; for campaigns with other kinds, SummaryAllFaults gives the
// inactive counts and the rates over all pairs. Pairs = Masked + SDC + DUE +
// Inactive.
type Summary struct {
	Kind          string     `json:"kind"`
	SchemaVersion int        `json:"schema_version"`
	Campaign      Header     `json:"campaign"`
	Faults        int64      `json:"faults"`
	Images        int        `json:"images"` // evaluation images
	Pairs         int64      `json:"pairs"`  // fault x image pairs, inactive ones included
	Masked        int64      `json:"masked"` // active pairs whose prediction stayed golden
	SDC           int64      `json:"sdc"`
	DUE           int64      `json:"due"`
	Top5          int64      `json:"top5"`
	SDCRate       float64    `json:"sdc_rate"`
	DUERate       float64    `json:"due_rate"`
	Top5Rate      float64    `json:"top5_rate"`
	VF            float64    `json:"vf"`
	VFCI95        [2]float64 `json:"vf_ci95"`
	VFCI99        [2]float64 `json:"vf_ci99"`
	// CriticalFaults is the number of faults with an SDC or DUE on at least one
	// image, CriticalFaultRate their fraction of the active faults (a per-fault
	// rate, where SDCRate and VF are per fault x image pair), with Wilson's 95%
	// interval over those faults.
	CriticalFaults      int64      `json:"critical_faults"`
	CriticalFaultRate   float64    `json:"critical_fault_rate"`
	CriticalFaultRateCI [2]float64 `json:"critical_fault_rate_ci95"`
	// SummaryAllFaults, present when the campaign has faults that can be
	// inactive (every kind but bitflip), holds the inactive counts and the rates
	// over all pairs; its fields are written inline (inactive, vf_all, ...).
	*SummaryAllFaults
	// GoldenAccuracy is the fault-free accuracy on the evaluation images;
	// FaultyAccuracy the accuracy over all fault x image pairs (an inactive pair
	// has the golden prediction).
	GoldenAccuracy float64     `json:"golden_accuracy"`
	FaultyAccuracy float64     `json:"faulty_accuracy"`
	AccuracyDrop   float64     `json:"accuracy_drop"`
	PerLayer       []Breakdown `json:"per_layer"`
	PerBit         []Breakdown `json:"per_bit"`
	// Timing is the one part that differs between two runs with the same seed,
	// thread count and BLAS (summaries written before it also repeated
	// faults_per_second at the top level; readers ignore it).
	Timing Timing `json:"timing"`
}

// SummaryAllFaults is [AllFaults] for a whole campaign, with the top-5 rate and
// the VF's 99% interval over all pairs too.
type SummaryAllFaults struct {
	AllFaults
	Top5RateAll float64    `json:"top5_rate_all"`
	VFAllCI99   [2]float64 `json:"vf_all_ci99"`
}

// Summarise computes a campaign's summary from its faults (with outcomes).
func Summarise(h Header, faults []Fault, goldenAccuracy float64, images int, tm Timing) Summary {
	sm := newSummariser()
	for i := range faults {
		sm.add(&faults[i])
	}
	return sm.summary(h, goldenAccuracy, images, tm)
}

// summariser accumulates a summary one fault at a time, so that a campaign's
// faults.jsonl can be summarised as a stream (a million faults held in memory
// took over a gigabyte).
type summariser struct {
	layers        map[string]*Breakdown
	bits          map[int]*Breakdown
	layerOrder    []string
	total         Breakdown
	masked, top5  int64
	misclassified int64
	// inactivity: some fault is of a kind that can be inactive (not a bit flip)
	inactivity bool
}

func newSummariser() *summariser {
	return &summariser{layers: map[string]*Breakdown{}, bits: map[int]*Breakdown{}}
}

// add counts one fault; faults without an outcome are skipped.
func (sm *summariser) add(f *Fault) {
	o := f.Outcome
	if o == nil {
		return
	}
	sm.inactivity = sm.inactivity || !f.Kind.alwaysActive() || o.Inactive > 0
	sm.total.add(o)
	sm.masked += int64(o.Masked)
	sm.top5 += int64(o.Top5)
	sm.misclassified += int64(o.Misclassified)
	if sm.layers[f.Layer] == nil {
		sm.layers[f.Layer] = &Breakdown{Key: f.Layer}
		sm.layerOrder = append(sm.layerOrder, f.Layer)
	}
	sm.layers[f.Layer].add(o)
	if len(f.Bits) == 1 {
		b := f.Bits[0]
		if sm.bits[b] == nil {
			sm.bits[b] = &Breakdown{Key: strconv.Itoa(b)}
		}
		sm.bits[b].add(o)
	}
}

// summary finishes the accumulated counts into a Summary.
func (sm *summariser) summary(h Header, goldenAccuracy float64, images int, tm Timing) Summary {
	s := Summary{Kind: SummaryKind, SchemaVersion: SummarySchema, Campaign: h, Images: images, GoldenAccuracy: goldenAccuracy, Timing: tm}
	s.Masked, s.Top5 = sm.masked, sm.top5
	total, misclassified, layers, bits, layerOrder := &sm.total, sm.misclassified, sm.layers, sm.bits, sm.layerOrder
	all := sm.inactivity
	total.finish(all)
	s.Faults, s.Pairs, s.SDC, s.DUE = total.Faults, total.Pairs, total.SDC, total.DUE
	s.SDCRate, s.DUERate, s.VF, s.VFCI95 = total.SDCRate, total.DUERate, total.VF, total.VFCI95
	s.CriticalFaults, s.CriticalFaultRate, s.CriticalFaultRateCI = total.CriticalFaults, total.CriticalFaultRate, total.CriticalFaultRateCI
	if s.Pairs > 0 {
		n := float64(s.Pairs)
		if a := total.act.pairs; a > 0 {
			s.Top5Rate = float64(s.Top5) / float64(a)
		}
		s.VFCI99 = total.interval(&total.act, 0.99)
		s.FaultyAccuracy = 1 - float64(misclassified)/n
		s.AccuracyDrop = s.GoldenAccuracy - s.FaultyAccuracy
		if total.AllFaults != nil {
			s.SummaryAllFaults = &SummaryAllFaults{AllFaults: *total.AllFaults, Top5RateAll: float64(s.Top5) / n,
				VFAllCI99: total.interval(&total.all, 0.99)}
		}
	}
	for _, l := range layerOrder {
		layers[l].finish(all)
		s.PerLayer = append(s.PerLayer, *layers[l])
	}
	var bs []int
	for b := range bits {
		bs = append(bs, b)
	}
	sort.Sort(sort.Reverse(sort.IntSlice(bs)))
	for _, b := range bs {
		bits[b].finish(all)
		s.PerBit = append(s.PerBit, *bits[b])
	}
	return s
}
