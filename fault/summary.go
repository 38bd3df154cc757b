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
type Breakdown struct {
	Key     string     `json:"key"`
	Faults  int64      `json:"faults"`
	Pairs   int64      `json:"pairs"` // fault x image pairs
	SDC     int64      `json:"sdc"`
	DUE     int64      `json:"due"`
	SDCRate float64    `json:"sdc_rate"`
	DUERate float64    `json:"due_rate"`
	VF      float64    `json:"vf"`
	VFCI95  [2]float64 `json:"vf_ci95"`
	// CriticalFaults counts the faults with an SDC or a DUE on at least one of
	// their images; CriticalFaultRate is their fraction of the faults, with
	// Wilson's interval over faults (faults are drawn independently).
	CriticalFaults      int64      `json:"critical_faults"`
	CriticalFaultRate   float64    `json:"critical_fault_rate"`
	CriticalFaultRateCI [2]float64 `json:"critical_fault_rate_ci95"`
	// sums over faults of c^2, c*m and m^2 (c critical pairs, m images of a
	// fault), for the cluster-robust interval, and whether a fault ran on more
	// than one image
	cc, cm, mm float64
	multi      bool
}

func (b *Breakdown) add(o *Outcome) {
	b.Faults++
	b.Pairs += int64(o.Images)
	b.SDC += int64(o.SDC)
	b.DUE += int64(o.DUE)
	c, m := float64(o.Critical()), float64(o.Images)
	b.cc, b.cm, b.mm = b.cc+c*c, b.cm+c*m, b.mm+m*m
	b.multi = b.multi || o.Images > 1
	if o.Critical() > 0 {
		b.CriticalFaults++
	}
}

func (b *Breakdown) finish() {
	if b.Pairs == 0 {
		return
	}
	n := float64(b.Pairs)
	b.SDCRate, b.DUERate = float64(b.SDC)/n, float64(b.DUE)/n
	b.VF = float64(b.SDC+b.DUE) / n
	b.VFCI95 = b.interval(0.95)
	b.CriticalFaultRate = float64(b.CriticalFaults) / float64(b.Faults)
	b.CriticalFaultRateCI = Wilson(b.CriticalFaults, b.Faults, 0.95)
}

// interval is the confidence interval of the VF. With one image per fault the
// pairs are independent draws and it is Wilson's interval over them. With several
// images per fault the sampled unit is the fault, and pairs under one fault are
// correlated (a bit-30 flip in a busy weight misclassifies many images at once),
// so pair-level Wilson would be far too narrow. The interval is then Wilson's over
// the effective sample size n_eff = VF (1 - VF) / var, where var is the
// cluster-robust variance sum((c_i - VF m_i)^2) / (n (n-1) mean(m)^2) over the n
// faults, capped at the pairs; when that cannot be estimated (VF 0 or 1, a zero
// variance, a single fault) n_eff is the number of faults, which is conservative.
func (b *Breakdown) interval(confidence float64) [2]float64 {
	if !b.multi {
		return Wilson(b.SDC+b.DUE, b.Pairs, confidence)
	}
	n, r := float64(b.Faults), b.VF
	neff := n
	if b.Faults >= 2 && r > 0 && r < 1 {
		mean := float64(b.Pairs) / n
		if v := math.Max(0, b.cc-2*r*b.cm+r*r*b.mm) / (n * (n - 1) * mean * mean); v > 0 {
			neff = math.Min(float64(b.Pairs), r*(1-r)/v)
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
// prediction the fault changed: SDC + DUE.
type Summary struct {
	Kind          string     `json:"kind"`
	SchemaVersion int        `json:"schema_version"`
	Campaign      Header     `json:"campaign"`
	Faults        int64      `json:"faults"`
	Images        int        `json:"images"` // evaluation images
	Pairs         int64      `json:"pairs"`
	Masked        int64      `json:"masked"`
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
	// image, CriticalFaultRate their fraction (a per-fault rate, where SDCRate and
	// VF are per fault x image pair), with Wilson's 95% interval over faults.
	CriticalFaults      int64      `json:"critical_faults"`
	CriticalFaultRate   float64    `json:"critical_fault_rate"`
	CriticalFaultRateCI [2]float64 `json:"critical_fault_rate_ci95"`
	// GoldenAccuracy is the fault-free accuracy on the evaluation images;
	// FaultyAccuracy the accuracy over all fault x image pairs.
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
	total.finish()
	s.Faults, s.Pairs, s.SDC, s.DUE = total.Faults, total.Pairs, total.SDC, total.DUE
	s.SDCRate, s.DUERate, s.VF, s.VFCI95 = total.SDCRate, total.DUERate, total.VF, total.VFCI95
	s.CriticalFaults, s.CriticalFaultRate, s.CriticalFaultRateCI = total.CriticalFaults, total.CriticalFaultRate, total.CriticalFaultRateCI
	if s.Pairs > 0 {
		n := float64(s.Pairs)
		s.Top5Rate = float64(s.Top5) / n
		s.VFCI99 = total.interval(0.99)
		s.FaultyAccuracy = 1 - float64(misclassified)/n
		s.AccuracyDrop = s.GoldenAccuracy - s.FaultyAccuracy
	}
	for _, l := range layerOrder {
		layers[l].finish()
		s.PerLayer = append(s.PerLayer, *layers[l])
	}
	var bs []int
	for b := range bits {
		bs = append(bs, b)
	}
	sort.Sort(sort.Reverse(sort.IntSlice(bs)))
	for _, b := range bs {
		bits[b].finish()
		s.PerBit = append(s.PerBit, *bits[b])
	}
	return s
}
