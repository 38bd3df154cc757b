package deepvigor

import (
	"cmp"
	"context"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/faultline/faultline/datasets"
	"github.com/faultline/faultline/fault"
	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

func do(t testing.TB, fn func() error) {
	t.Helper()
	if err := torch.Do(fn); err != nil {
		t.Fatal(err)
	}
}

func TestGridMatchesReferenceThresholds(t *testing.T) {
	g := newGrid(1, false)
	if len(g.t) != 43 || g.zero != 21 || g.t[0] != -1024 || g.t[21] != 0 || g.t[42] != 1024 {
		t.Fatalf("grid: %d thresholds, zero at %d, ends %v %v", len(g.t), g.zero, g.t[0], g.t[42])
	}
	for p := -10; p <= 10; p++ {
		if got := g.index(float32(math.Exp2(float64(p)))); got != 32+p {
			t.Errorf("index of 2^%d = %d, want %d", p, got, 32+p)
		}
		if got := g.index(-float32(math.Exp2(float64(p)))); got != 10-p {
			t.Errorf("index of -2^%d = %d, want %d", p, got, 10-p)
		}
	}
	g4 := newGrid(4, false)
	if len(g4.t) != 2*(80+1)+1 || g4.t[g4.zero+1] != float32(math.Exp2(-10)) || g4.t[g4.top()] != 1024 {
		t.Fatalf("4 per octave: %d thresholds", len(g4.t))
	}
	for i := 1; i < len(g4.t); i++ {
		if !(g4.t[i] > g4.t[i-1]) {
			t.Fatalf("grid not ascending at %d", i)
		}
	}
}

// flips runs flipErrors on values and returns eps[bit][value].
func flips(t *testing.T, vals []float32, sem Semantics) [][]float32 {
	t.Helper()
	var out [][]float32
	do(t, func() error {
		x, err := torch.FromFloat32(vals, []int64{int64(len(vals))}, gotch.CPU)
		if err != nil {
			return err
		}
		defer x.MustDrop()
		e, err := flipErrors(x, sem)
		if err != nil {
			return err
		}
		defer e.MustDrop()
		all, err := torch.Float32s(e)
		if err != nil {
			return err
		}
		for b := range 32 {
			row := make([]float32, len(vals))
			for i := range vals {
				row[i] = all[i*32+b]
			}
			out = append(out, row)
		}
		return nil
	})
	return out
}

func same(a, b float32) bool {
	return a == b || (a != a && b != b)
}

func TestFlipErrorsExactAreIEEEFlips(t *testing.T) {
	vals := []float32{0, float32(math.Copysign(0, -1)), 1.5, -0.0625, 3e-39 /* subnormal */, 2.5e38, -7, float32(math.Inf(1))}
	eps := flips(t, vals, Exact)
	for b := range 32 {
		for i, v := range vals {
			want := fault.FlipBits(v, b) - v
			if !same(eps[b][i], want) {
				t.Errorf("bit %d of %g: eps %g, want %g", b, v, eps[b][i], want)
			}
		}
	}
	// Hand-computed: the exponent MSB of 0.5 gives 2^127 (0.5 -> 1.7e38).
	if e := flips(t, []float32{0.5}, Exact)[30][0]; e != float32(math.Exp2(127))-0.5 {
		t.Errorf("exponent MSB of 0.5: eps %g", e)
	}
}

func TestFlipErrorsReferenceQuirks(t *testing.T) {
	// Zero is encoded as 1.0: eps = flip(1.0) - 0.
	z := flips(t, []float32{0}, Reference)
	for j := 1; j <= 23; j++ { // mantissa bit 23-j gives 1 + 2^-j
		if want := float32(1 + math.Exp2(-float64(j))); z[23-j][0] != want {
			t.Errorf("zero, mantissa bit %d: %g, want %g", 23-j, z[23-j][0], want)
		}
	}
	if z[31][0] != -1 || !math.IsInf(float64(z[30][0]), 1) {
		t.Errorf("zero: sign flip %g (want -1), exponent MSB %g (want +Inf)", z[31][0], z[30][0])
	}
	for b, p := range map[int]float64{29: -64, 28: -32, 27: -16, 26: -8, 25: -4, 24: -2, 23: -1} {
		if want := float32(math.Exp2(p)); z[b][0] != want {
			t.Errorf("zero, exponent bit %d: %g, want %g", b, z[b][0], want)
		}
	}
	// Exponent 255 decodes as a signed infinity, never NaN.
	big := float32(1.5 * math.Exp2(127)) // exponent 254; bit 23 makes it 255 with a mantissa
	if e := flips(t, []float32{big, -big}, Reference); !math.IsInf(float64(e[23][0]), 1) || !math.IsInf(float64(e[23][1]), -1) {
		t.Errorf("exponent 255: eps %g %g, want +Inf -Inf", e[23][0], e[23][1])
	}
	// Exponent 0 decodes as 2^-127 (1.m): no subnormals.
	small := float32(math.Exp2(-126)) // exponent 1; bit 23 clears it
	e := flips(t, []float32{small}, Reference)[23][0]
	if want := float32(math.Exp2(-127)) - small; e != want {
		t.Errorf("exponent 0: eps %g, want %g", e, want)
	}
	// Normal values flip as IEEE.
	if e := flips(t, []float32{0.375}, Reference); e[30][0] != fault.FlipBits(0.375, 30)-0.375 || e[0][0] != fault.FlipBits(0.375, 0)-0.375 {
		t.Errorf("normal value: %g %g", e[30][0], e[0][0])
	}
	// A value a hair below a power of two: float32 log2(16 - 2^-20) rounds to 4,
	// so the converter encodes exponent 4 (field 131) with the 23 bits below the
	// leading one read one place higher (all ones): it stands for 32 - 2^-19.
	// Flipping the mantissa's last bit gives 32 - 2^-18, an error of about 16.
	hair := math.Nextafter32(16, 0)
	enc := func(field, mant uint32) float32 { return math.Float32frombits(field<<23 | mant) }
	hf := flips(t, []float32{hair, -hair}, Reference)
	for _, c := range []struct {
		bit  int
		want float32
	}{
		{0, enc(131, 0x7FFFFE) - hair},
		{22, enc(131, 0x3FFFFF) - hair},
		{23, enc(130, 0x7FFFFF) - hair}, // the exponent's last bit: back to about 16
		{31, -enc(131, 0x7FFFFF) - hair},
	} {
		if hf[c.bit][0] != c.want || hf[c.bit][1] != -c.want {
			t.Errorf("16 - 2^-20, bit %d: %g and %g, want %g and %g", c.bit, hf[c.bit][0], hf[c.bit][1], c.want, -c.want)
		}
	}
}

// hist bins rows of values (one row per slice) over g.
func hist(t *testing.T, g grid, rows [][]float32, excluded [][]bool, sem Semantics) []dist {
	t.Helper()
	var out []dist
	do(t, func() error {
		var flat []float32
		var ex []float32
		for i, r := range rows {
			flat = append(flat, r...)
			for j := range r {
				v := float32(0)
				if excluded != nil && excluded[i][j] {
					v = 1
				}
				ex = append(ex, v)
			}
		}
		n, m := int64(len(rows)), int64(len(rows[0]))
		d, err := torch.FromFloat32(flat, []int64{n, m}, gotch.CPU)
		if err != nil {
			return err
		}
		defer d.MustDrop()
		b, err := torch.FromFloat32(g.t, []int64{int64(len(g.t))}, gotch.CPU)
		if err != nil {
			return err
		}
		defer b.MustDrop()
		var exm *ts.Tensor
		if excluded != nil {
			e, err := torch.FromFloat32(ex, []int64{n, m}, gotch.CPU)
			if err != nil {
				return err
			}
			defer e.MustDrop()
			if exm, err = e.Gt(ts.FloatScalar(0.5), false); err != nil {
				return err
			}
			defer exm.MustDrop()
		}
		out, err = histograms(d, exm, g, b, sem)
		return err
	})
	for i := range out {
		out[i].finish()
	}
	return out
}

func TestHistogramsCountStrictlyBelowEachThreshold(t *testing.T) {
	g := newGrid(1, false)
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	rows := [][]float32{
		{0, 1, 1, -1, 2000, -2000, 0.5, nan, inf, 1e-6},
		{3, 3, 3, 3, -0.25, 0, 0, 0, 0, 0},
	}
	excluded := [][]bool{make([]bool, 10), {false, false, false, false, false, true, true, true, true, true}}
	d := hist(t, g, rows, excluded, Exact)
	r0 := d[0]
	if r0.n != 10 || r0.nan != 1 || r0.upperTail() != 2 || r0.lowerTail() != 1 {
		t.Fatalf("row 0: n %d nan %d tails %d %d", r0.n, r0.nan, r0.upperTail(), r0.lowerTail())
	}
	// cdf[i] = #(delta < t_i): below 0 only -1 and -2000; below 1: add 0, 0.5, 1e-6.
	if c := r0.cdf[g.zero]; c != 2 {
		t.Errorf("#(delta < 0) = %d, want 2", c)
	}
	if c := r0.cdf[g.index(1)]; c != 5 {
		t.Errorf("#(delta < 1) = %d, want 5", c)
	}
	if c := r0.cdf[g.index(2)]; c != 7 {
		t.Errorf("#(delta < 2) = %d, want 7", c)
	}
	if r0.zeros != 1 || d[1].zeros != 0 {
		t.Errorf("exact zeros: %d and %d (the second row's are excluded), want 1 and 0", r0.zeros, d[1].zeros)
	}
	r1 := d[1]
	if r1.n != 5 || r1.cdf[g.zero] != 1 || r1.cdf[g.index(4)] != 5 || r1.cdf[g.index(2)] != 1 {
		t.Errorf("row 1 with exclusions: n %d cdf %v", r1.n, r1.cdf)
	}
	// Reference: NaN is 10000 and +Inf FLT_MAX, both in the upper tail.
	ref := hist(t, g, rows[:1], nil, Reference)[0]
	if ref.nan != 0 || ref.upperTail() != 3 || ref.n != 10 {
		t.Errorf("reference: nan %d upper tail %d n %d", ref.nan, ref.upperTail(), ref.n)
	}
}

func TestReferenceListsAppendTails(t *testing.T) {
	g := newGrid(1, false)
	d := &dist{bins: make([]int64, len(g.t)+1)}
	for _, v := range []float32{-4, -1, -0.5, 0.25, 1, 8} {
		d.bins[g.index(v)] = 1
	}
	nb, ns, ps, pb := referenceLists(d, g)
	idx := func(vs ...float32) []int {
		var o []int
		for _, v := range vs {
			o = append(o, g.index(v))
		}
		return o
	}
	if !reflect.DeepEqual(nb, idx(-4, -1024)) || !reflect.DeepEqual(ns, idx(-1, -0.5)) ||
		!reflect.DeepEqual(ps, idx(0.25, 1)) || !reflect.DeepEqual(pb, idx(8, 1024)) {
		t.Errorf("lists: %v %v %v %v", nb, ns, ps, pb)
	}
	d.bins[g.index(-1024)] = 1 // present: first, nothing appended
	if nb, _, _, _ = referenceLists(d, g); !reflect.DeepEqual(nb, idx(-1024, -4)) {
		t.Errorf("NEG_BIG with -1024 present: %v", nb)
	}
}

func TestCandidatesBracketNonEmptyBins(t *testing.T) {
	g := newGrid(1, false)
	d := &dist{bins: make([]int64, len(g.t)+1)}
	d.bins[g.index(4)] = 3 // errors in [2, 4)
	c, inf := candidates(d, g, 1)
	want := []int{g.index(2), g.index(4), g.top()}
	if !reflect.DeepEqual(c, want) || inf {
		t.Errorf("positive candidates %v, want %v", c, want)
	}
	d.bins[g.index(-2)] = 1 // errors in [-4, -2)
	c, _ = candidates(d, g, 0)
	want = []int{g.index(-2), g.index(-4), g.bottom()}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("negative candidates %v, want %v", c, want)
	}
}

// tiny builds a small LeNet-5 with fixed random weights and synthetic images.
func tiny(t *testing.T) (*model.Model, *datasets.Set, datasets.Stats) {
	t.Helper()
	var m *model.Model
	do(t, func() error {
		torch.ManualSeed(5)
		var err error
		m, err = model.New(model.Spec{Arch: "lenet5", InChannels: 1, Height: 28, Width: 28, Classes: 10, WidthMult: 0.5}, gotch.CPU)
		return err
	})
	set := datasets.Synthetic(datasets.SyntheticConfig{N: 40, C: 1, H: 28, W: 28, Classes: 10, Seed: 4, Split: datasets.Test})
	return m, set, datasets.ComputeStats(set)
}

func analyze(t *testing.T, m *model.Model, set *datasets.Set, stats datasets.Stats, n int, o Options) (*Result, *fault.Injector, *fault.EvalSet) {
	t.Helper()
	var res *Result
	var inj *fault.Injector
	var ev *fault.EvalSet
	do(t, func() error {
		var err error
		if inj, err = fault.NewInjector(m); err != nil {
			return err
		}
		if ev, err = inj.LoadEvalSet(set, stats, n); err != nil {
			return err
		}
		res, err = Analyze(context.Background(), m, ev.X, ev.Golden, o)
		return err
	})
	t.Cleanup(func() { _ = torch.Do(func() error { ev.Drop(); return nil }) })
	return res, inj, ev
}

// fiVF runs every fault on every image and returns the SDC+DUE fraction.
func fiVF(t *testing.T, inj *fault.Injector, ev *fault.EvalSet, faults []fault.Fault, n int) float64 {
	t.Helper()
	ptrs := make([]*fault.Fault, len(faults))
	for i := range faults {
		faults[i].ID = int64(i)
		faults[i].Kind, faults[i].DType, faults[i].Duration = fault.BitFlip, fault.Float32, fault.Transient
		ptrs[i] = &faults[i]
	}
	var bad, pairs int
	do(t, func() error {
		for _, f := range ptrs {
			if err := inj.Check(f, n); err != nil {
				return err
			}
		}
		if err := inj.RunBatched(ev, ptrs); err != nil {
			return err
		}
		for _, f := range ptrs {
			bad += f.Outcome.SDC + f.Outcome.DUE
			pairs += f.Outcome.Images
		}
		return nil
	})
	return float64(bad) / float64(pairs)
}

// TestExactAgreesWithFaultInjection checks Exact semantics (tail check on)
// against exhaustive FI with the fault engine on the same images: every weight
// bit of sampled filters (of the sampled weights under Pattern, each of which
// must equal FI), every MAC operand bit of sampled neurons.
func TestExactAgreesWithFaultInjection(t *testing.T) {
	m, set, stats := tiny(t)
	const n = 30
	res, inj, ev := analyze(t, m, set, stats, n, Options{Activations: true, Weights: true, Semantics: Exact, TailCheck: true, SamplingRatio: 0.25, Seed: 3})
	sites := map[string]model.Site{}
	for _, s := range m.Sites() {
		sites[s.Name] = s
	}
	var wErr, aErr []float64
	for _, l := range res.Layers {
		s := sites[l.Name]
		f := model.Numel(s.WeightShape[1:])
		ch := l.ChannelVFs[0]
		weights := ch.WeightOperands // a Pattern analysis's sample of the filter's weights
		if weights == nil {
			for j := range int(f) {
				weights = append(weights, j)
			}
		}
		var wf []fault.Fault
		for k, j := range weights {
			var one []fault.Fault
			for b := range 32 {
				one = append(one, fault.Fault{Target: fault.Weight, Layer: s.Name, Param: "weight", Index: []int64{int64(ch.Index)*f + int64(j)}, Bits: []int{b}})
			}
			if l.WeightErrors == Pattern {
				// Each weight is decided fault by fault: its VF is FI's.
				if fi := fiVF(t, inj, ev, one, n); math.Abs(fi-ch.OperandVF[k]) > 1e-9 {
					t.Errorf("%s filter %d weight %d: pattern VF %.6f, FI %.6f", s.Name, ch.Index, j, ch.OperandVF[k], fi)
				}
			}
			wf = append(wf, one...)
		}
		fi := fiVF(t, inj, ev, wf, n)
		wErr = append(wErr, math.Abs(fi-*ch.CVFWeights))
		t.Logf("%s filter %d (%s, %d weights): DV %.4f FI %.4f", s.Name, ch.Index, l.WeightErrors, len(weights), *ch.CVFWeights, fi)
		if s.Kind != model.Linear {
			continue // activation FI on conv neurons is enough here
		}
		var af []fault.Fault
		for j := range s.WeightShape[1] {
			for b := range 32 {
				af = append(af, fault.Fault{Target: fault.Activation, Layer: s.Name, Point: fault.MAC, Index: []int64{int64(ch.Index)}, Operand: []int64{j}, Bits: []int{b}})
			}
		}
		fa := fiVF(t, inj, ev, af, n)
		aErr = append(aErr, math.Abs(fa-ch.NVF[0]))
		t.Logf("%s neuron %d: DV %.4f FI %.4f", s.Name, ch.Index, ch.NVF[0], fa)
	}
	for _, e := range append(wErr, aErr...) {
		if e > 0.005 {
			t.Errorf("|DV - FI| = %.4f > 0.5 pp (weights %v, activations %v)", e, wErr, aErr)
			break
		}
	}
	if mean(wErr) > 0.002 || mean(aErr) > 0.002 {
		t.Errorf("mean |DV - FI|: weights %.4f, activations %.4f, want < 0.2 pp", mean(wErr), mean(aErr))
	}
	if res.Layers[0].WeightErrors != Pattern || res.Layers[1].WeightErrors != Averaged {
		t.Errorf("weight error models %s, %s: want pattern in conv1 (signed inputs), mean in conv2", res.Layers[0].WeightErrors, res.Layers[1].WeightErrors)
	}
	if res.ImageForwards <= 0 || res.ImageBackwards <= 0 {
		t.Errorf("forward counts: %d %d", res.ImageForwards, res.ImageBackwards)
	}
}

func TestAnalyzeIsDeterministicAndSamplesAsSpecified(t *testing.T) {
	m, set, stats := tiny(t)
	o := Options{Activations: true, Weights: true, Semantics: Exact, SamplingRatio: 0.3, Seed: 9}
	a, _, _ := analyze(t, m, set, stats, 12, o)
	b, _, _ := analyze(t, m, set, stats, 12, o)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("two runs with the same seed differ")
	}
	for _, l := range a.Layers {
		wantCh := min(max(int(math.Ceil(0.3*float64(l.Channels))), 2), l.Channels)
		wantPos := max(int(math.Floor(math.Log2(float64(l.Positions)))), 1)
		if len(l.ChannelVFs) != wantCh {
			t.Errorf("%s: %d channels analysed, want %d", l.Name, len(l.ChannelVFs), wantCh)
		}
		checkStrata(t, l)
		for _, ch := range l.ChannelVFs {
			if len(ch.Positions) != wantPos || len(ch.NVF) != wantPos {
				t.Errorf("%s channel %d: %d positions, want %d", l.Name, ch.Index, len(ch.Positions), wantPos)
			}
			for _, v := range append(ch.NVF, *ch.CVFWeights) {
				if !(v >= 0 && v <= 1) {
					t.Errorf("%s channel %d: VF %g outside [0, 1]", l.Name, ch.Index, v)
				}
			}
		}
	}
	o.Seed = 10
	c, _, _ := analyze(t, m, set, stats, 12, o)
	if reflect.DeepEqual(a.Layers[1].ChannelVFs[0].Positions, c.Layers[1].ChannelVFs[0].Positions) &&
		a.Layers[1].ChannelVFs[0].Index == c.Layers[1].ChannelVFs[0].Index {
		t.Error("another seed drew the same channel and positions")
	}
}

func TestReferenceSemanticsRuns(t *testing.T) {
	m, set, stats := tiny(t)
	ref, _, _ := analyze(t, m, set, stats, 12, Options{Activations: true, Weights: true, Semantics: Reference, SamplingRatio: 0.2, Seed: 1})
	ex, _, _ := analyze(t, m, set, stats, 12, Options{Activations: true, Weights: true, Semantics: Exact, SamplingRatio: 0.2, Seed: 1})
	if ref.PerOctave != 1 {
		t.Fatalf("reference run: per octave %d", ref.PerOctave)
	}
	for i, l := range ref.Layers { // uniform draws: one stratum, floor(0.2 C) >= 1 channels
		if len(l.Strata) != 1 || l.ChannelSensitivity != nil ||
			len(l.ChannelVFs) != max(int(math.Floor(0.2*float64(l.Channels))), 1) {
			t.Errorf("reference %s: strata %v, %d channels of %d", l.Name, l.Strata, len(l.ChannelVFs), l.Channels)
		}
		if len(ex.Layers[i].ChannelSensitivity) != l.Channels {
			t.Errorf("exact %s: %d sensitivities for %d channels", l.Name, len(ex.Layers[i].ChannelSensitivity), l.Channels)
		}
	}
	// Reference counts errors on padding zeros (encoded as 1.0) and has no tail
	// check: its conv1 activation VF is not below exact's.
	if r, e := *ref.Layers[0].LVFActivations, *ex.Layers[0].LVFActivations; r < e {
		t.Errorf("conv1 LVF: reference %.4f below exact %.4f", r, e)
	}
	// One batch forward per target and step: a whole number of image batches.
	if ref.ImageForwards%12 != 0 {
		t.Errorf("reference image forwards %d not a multiple of the batch", ref.ImageForwards)
	}
}

func TestAnalyzeBadInputs(t *testing.T) {
	m, set, stats := tiny(t)
	var mlp, bn *model.Model
	do(t, func() error {
		var err error
		// VGG-11 with BatchNorm (LeNet-5 has none, whatever its spec says).
		if bn, err = model.New(model.Spec{Arch: "vgg11", InChannels: 1, Height: 28, Width: 28, Classes: 10, WidthMult: 0.125, BatchNorm: true}, gotch.CPU); err != nil {
			return err
		}
		mlp, err = model.New(model.Spec{Arch: "mlp", InChannels: 1, Height: 28, Width: 28, Classes: 10, WidthMult: 1, Hidden: []int{16}}, gotch.CPU)
		return err
	})
	ok := Options{Activations: true, Semantics: Exact, SamplingRatio: 0.1}
	for _, c := range []struct {
		name string
		m    *model.Model
		o    func(Options) Options
		want string
	}{
		{"ratio 0", m, func(o Options) Options { o.SamplingRatio = 0; return o }, "sampling ratio 0"},
		{"ratio 1.5", m, func(o Options) Options { o.SamplingRatio = 1.5; return o }, "sampling ratio 1.5"},
		{"nothing", m, func(o Options) Options { o.Activations = false; return o }, "nothing to analyse"},
		{"semantics", m, func(o Options) Options { o.Semantics = "fuzzy"; return o }, `semantics "fuzzy"`},
		{"layer", m, func(o Options) Options { o.Layers = []string{"conv9"}; return o }, `no layer "conv9"`},
		{"no conv", mlp, func(o Options) Options { return o }, "has no conv layer"},
		{"reference with BN", bn, func(o Options) Options { o.Semantics = Reference; return o }, "BatchNorm-free"},
		{"reference tail", m, func(o Options) Options { o.Semantics, o.TailCheck = Reference, true; return o }, "tail check"},
		{"reference per fault", m, func(o Options) Options { o.Semantics, o.WeightErrors = Reference, PerFault; return o }, "exact-semantics option"},
		{"weight errors", m, func(o Options) Options { o.WeightErrors = "pixel"; return o }, `weight errors "pixel"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := torch.Do(func() error {
				inj, err := fault.NewInjector(c.m)
				if err != nil {
					return err
				}
				ev, err := inj.LoadEvalSet(set, stats, 4)
				if err != nil {
					return err
				}
				defer ev.Drop()
				_, err = Analyze(context.Background(), c.m, ev.X, ev.Golden, c.o(ok))
				return err
			})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one containing %q", err, c.want)
			}
		})
	}
}

func TestSignedMaxAbsKeepsSignAndNaN(t *testing.T) {
	nan := float32(math.NaN())
	// [P=3, 4]: column-wise largest magnitude with its sign; a NaN wins.
	in := []float32{1, -5, 0, 2, -3, 4, 0, nan, 2, 1, 0, -2}
	var got []float32
	do(t, func() error {
		var sc torch.Scope
		defer sc.Drop()
		x, err := sc.KeepErr(torch.FromFloat32(in, []int64{3, 4}, gotch.CPU))
		if err != nil {
			return err
		}
		m, err := signedMaxAbs(&sc, x)
		if err != nil {
			return err
		}
		got, err = torch.Float32s(m)
		return err
	})
	want := []float32{-3, -5, 0, nan}
	for i := range want {
		if !same(got[i], want[i]) {
			t.Fatalf("signedMaxAbs = %v, want %v", got, want)
		}
	}
}

// checkStrata checks an Exact sampled layer's stratification: the strata
// partition the channels in order of decreasing sensitivity, and each drawn
// channel lies in its stratum's range of sensitivities.
func checkStrata(t *testing.T, l Layer) {
	t.Helper()
	s := l.ChannelSensitivity
	if len(s) != l.Channels {
		t.Fatalf("%s: %d sensitivities for %d channels", l.Name, len(s), l.Channels)
	}
	sorted := slices.Clone(s)
	slices.SortFunc(sorted, func(x, y float64) int { return cmp.Compare(y, x) })
	lo, total := 0, 0
	bounds := make([][2]float64, len(l.Strata)) // [min, max] sensitivity per stratum
	for h, size := range l.Strata {
		bounds[h] = [2]float64{sorted[lo+size-1], sorted[lo]}
		lo += size
		total += size
	}
	if total != l.Channels || len(l.Strata) != max(len(l.ChannelVFs)/2, 1) {
		t.Errorf("%s: strata %v for %d channels, %d drawn", l.Name, l.Strata, l.Channels, len(l.ChannelVFs))
	}
	drawn := make([]int, len(l.Strata))
	for _, ch := range l.ChannelVFs {
		b := bounds[ch.Stratum]
		if v := s[ch.Index]; v < b[0] || v > b[1] {
			t.Errorf("%s channel %d: sensitivity %g outside its stratum's [%g, %g]", l.Name, ch.Index, v, b[0], b[1])
		}
		drawn[ch.Stratum]++
	}
	for h, n := range drawn {
		if n < 2 && l.Strata[h] > 1 {
			t.Errorf("%s: stratum %d has %d draws", l.Name, h, n)
		}
	}
}
