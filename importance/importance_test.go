package importance

import (
	"context"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/faultline/faultline/datasets"
	"github.com/faultline/faultline/fault"
	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model"
	"github.com/sugarme/gotch"
)

func do(t *testing.T, fn func() error) {
	t.Helper()
	if err := torch.Do(fn); err != nil {
		t.Fatal(err)
	}
}

// tinyMLP is a 4x4-input MLP (16-6-3): 156 weights and 9 output neurons, small
// enough to inject every single-bit fault.
func tinyMLP(t *testing.T) (*model.Model, *datasets.Set, *datasets.Set, datasets.Stats) {
	t.Helper()
	var m *model.Model
	do(t, func() error {
		torch.ManualSeed(7)
		var err error
		m, err = model.New(model.Spec{Arch: "mlp", InChannels: 1, Height: 4, Width: 4, Classes: 3, Hidden: []int{6}, WidthMult: 1}, gotch.CPU)
		return err
	})
	train := datasets.Synthetic(datasets.SyntheticConfig{N: 64, C: 1, H: 4, W: 4, Classes: 3, Seed: 2})
	test := datasets.Synthetic(datasets.SyntheticConfig{N: 30, C: 1, H: 4, W: 4, Classes: 3, Seed: 2, Split: datasets.Test})
	return m, train, test, datasets.ComputeStats(train)
}

// TestImportanceSamplingIsUnbiased injects every single-bit fault of a tiny
// model (weights and activations) to get the true VF, then checks that the
// proposal is a distribution (q sums to 1 and draws follow it) and that
// importance-weighted estimates from it are unbiased, with intervals that
// cover the truth nearly 95% of the time. (Whether IS also lowers the
// variance depends on how well the sensitivities predict criticality: on this
// untrained model they do not; on trained LeNet-5 they do, see README.)
func TestImportanceSamplingIsUnbiased(t *testing.T) {
	m, train, test, stats := tinyMLP(t)
	for _, target := range []Target{Weights, Activations} {
		t.Run(string(target), func(t *testing.T) {
			var sp *space
			var q *proposal
			var truth []float64
			do(t, func() error {
				var err error
				if sp, err = newSpace(m, target); err != nil {
					return err
				}
				sens, err := sensitivity(m, sp, train, stats, 2, 32, DefaultCap)
				if err != nil {
					return err
				}
				if q, err = newProposal(sp, 0.1, sens.score(Fisher), sens.beta()); err != nil {
					return err
				}
				inj, err := fault.NewInjector(m)
				if err != nil {
					return err
				}
				ev, err := inj.LoadEvalSet(test, stats, 0)
				if err != nil {
					return err
				}
				defer ev.Drop()
				fs := make([]fault.Fault, sp.faults())
				ptrs := make([]*fault.Fault, len(fs))
				for k := range fs {
					fs[k] = sp.fault(int64(k), int64(k))
					ptrs[k] = &fs[k]
				}
				if err := inj.RunBatched(ev, ptrs); err != nil {
					return err
				}
				truth = make([]float64, len(fs))
				for k, f := range fs {
					truth[k] = float64(f.Outcome.Critical()) / float64(f.Outcome.Images)
				}
				return nil
			})
			var vf, qsum float64
			for k, y := range truth {
				vf += y / float64(len(truth))
				qsum += q.prob(int64(k))
			}
			if math.Abs(qsum-1) > 1e-9 {
				t.Fatalf("q sums to %.12f over the space", qsum)
			}
			if vf == 0 {
				t.Fatal("no fault of the tiny model changes a prediction: the test cannot tell anything")
			}
			// Draw frequencies follow q: total variation distance over 200k draws.
			r := rand.New(rand.NewPCG(1, 1))
			count := make([]float64, len(truth))
			const draws = 200000
			for range draws {
				count[q.draw(r)]++
			}
			var tv float64
			for k := range count {
				tv += math.Abs(count[k]/draws-q.prob(int64(k))) / 2
			}
			if tv > 0.03 {
				t.Errorf("draws differ from q: total variation %.3f", tv)
			}
			// 400 independent estimates from 500 draws each.
			const reps, n = 400, 500
			var mean, sqIS, sqU float64
			covered := 0
			for range reps {
				w := make([]float64, n)
				y := make([]float64, n)
				u := make([]float64, n)
				for i := range n {
					k := q.draw(r)
					w[i], y[i] = q.p()/q.prob(k), truth[k]
					u[i] = truth[r.IntN(len(truth))]
				}
				e := estimate(w, y)
				ones := make([]float64, n)
				for i := range ones {
					ones[i] = 1
				}
				eu := estimate(ones, u)
				mean += e.Value / reps
				sqIS += e.Variance / reps
				sqU += eu.Variance / reps
				if e.CI95[0] <= vf && vf <= e.CI95[1] {
					covered++
				}
			}
			// Stratified by layer x bit class, pilot plus Neyman: unbiased too.
			strata := q.strata()
			var smean, ssq float64
			scovered := 0
			for rep := range reps { // odd reps: Neyman allocation; even: proportional to q
				ds, err := stratifiedDraws(n, rep%2 == 1, q, strata, r, func(keys []int64, _ string) ([]draw, error) {
					out := make([]draw, len(keys))
					for i, k := range keys {
						out[i] = draw{key: k, q: q.prob(k), p: q.p(), y: truth[k]}
					}
					return out, nil
				})
				if err != nil {
					t.Fatal(err)
				}
				if len(ds) != n {
					t.Fatalf("stratified: %d draws, want %d", len(ds), n)
				}
				e := stratifiedEstimates(sp, strata, ds).VF
				smean += e.Value / reps
				ssq += e.Value * e.Value / reps
				if e.CI95[0] <= vf && vf <= e.CI95[1] {
					scovered++
				}
			}
			sse := math.Sqrt((ssq - smean*smean) / reps)
			t.Logf("%s stratified: mean estimate %.4f (se %.5f), coverage %d/%d", target, smean, sse, scovered, reps)
			if math.Abs(smean-vf) > 4*sse {
				t.Errorf("stratified: mean estimate %.5f differs from the true VF %.5f by more than 4 standard errors (%.5f)", smean, vf, 4*sse)
			}
			if scovered < reps*85/100 {
				t.Errorf("stratified: 95%% intervals covered the truth %d times of %d", scovered, reps)
			}
			se := math.Sqrt(sqIS / n / reps)
			t.Logf("%s: true VF %.4f over %d faults, mean IS estimate %.4f (se %.5f), coverage %d/%d, variance per injection uniform %.2e vs IS %.2e",
				target, vf, len(truth), mean, se, covered, reps, sqU, sqIS)
			if math.Abs(mean-vf) > 4*se {
				t.Errorf("mean estimate %.5f differs from the true VF %.5f by more than 4 standard errors (%.5f)", mean, vf, 4*se)
			}
			// Weights up to 1/alpha make w*y heavy-tailed: t intervals from 500
			// draws under-cover somewhat.
			if covered < reps*85/100 {
				t.Errorf("95%% intervals covered the truth %d times of %d", covered, reps)
			}
		})
	}
}

func TestEstimateAndKendall(t *testing.T) {
	e := estimate([]float64{1, 1, 1, 1}, []float64{0, 1, 0, 1})
	if e.Value != 0.5 || e.SelfNormalised != 0.5 || e.ESS != 4 || e.Hits != 2 || math.Abs(e.Variance-1.0/3) > 1e-12 {
		t.Errorf("estimate %+v", e)
	}
	// Weighted: mean(w*y) = (2*1 + 0.5*0) / 2 = 1; self-normalised 2/2.5.
	e = estimate([]float64{2, 0.5}, []float64{1, 0})
	if e.Value != 1 || math.Abs(e.SelfNormalised-0.8) > 1e-12 || math.Abs(e.ESS-2.5*2.5/4.25) > 1e-12 {
		t.Errorf("weighted estimate %+v", e)
	}
	for _, c := range []struct {
		a, b []float64
		want float64
	}{
		{[]float64{1, 2, 3, 4}, []float64{10, 20, 30, 40}, 1},
		{[]float64{1, 2, 3, 4}, []float64{4, 3, 2, 1}, -1},
		{[]float64{1, 2, 3}, []float64{1, 3, 2}, 1.0 / 3},
	} {
		if got := KendallTau(c.a, c.b); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("KendallTau(%v, %v) = %g, want %g", c.a, c.b, got, c.want)
		}
	}
	if got := bitEffect(0.5, 30, DefaultCap); got != DefaultCap {
		t.Errorf("bit 30 of 0.5: effect %g, want the cap", got)
	}
	if got := bitEffect(0.5, 31, DefaultCap); got != 1 {
		t.Errorf("sign of 0.5: effect %g, want 1", got)
	}
}

func TestRunRejectsBadInput(t *testing.T) {
	base := Options{Checkpoint: "x", Target: Weights, Mode: SearchMode, Budget: 10, Tau: 0.05, Images: 10, Alpha: 0.1, Out: t.TempDir()}
	for _, c := range []struct {
		name string
		edit func(*Options)
		want string
	}{
		{"budget 0", func(o *Options) { o.Budget = 0 }, "budget 0"},
		{"alpha 1.5", func(o *Options) { o.Alpha = 1.5 }, "alpha 1.5 outside [0, 1]"},
		{"alpha -0.1", func(o *Options) { o.Alpha = -0.1 }, "alpha -0.1"},
		{"target", func(o *Options) { o.Target = "biases" }, `unknown target "biases"`},
		{"mode", func(o *Options) { o.Mode = "hunt" }, `unknown mode "hunt"`},
		{"tau", func(o *Options) { o.Tau = 0 }, "tau 0"},
		{"checkpoint", func(o *Options) { o.Checkpoint = "/nonexistent/ckpt" }, "/nonexistent/ckpt"},
		{"stratify in search mode", func(o *Options) { o.Stratify = true }, "stratification needs estimate mode"},
		{"allocation", func(o *Options) { o.Allocation = "even" }, `unknown allocation "even"`},
		{"score floor", func(o *Options) { o.ScoreFloor = -1 }, "score floor -1"},
	} {
		o := base
		c.edit(&o)
		_, err := Run(context.Background(), o)
		if err == nil || !contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func TestRankPostStratifiesByBitClass(t *testing.T) {
	// One layer of 3 units of 2 elements each.
	sp := &space{target: Weights, elems: 6, layers: []layerSpace{{site: model.Site{Name: "fc"}, n: 6, unit: 2}}}
	key := func(e int64, b int) int64 { return e*Bits + int64(b) }
	keys := []int64{key(0, 30), key(1, 3), key(2, 30), key(3, 5)}
	w := []float64{0.1, 5, 0.1, 5} // the mantissa draws carry large weights
	y := []float64{0.5, 0, 0.25, 0}
	crit := []bool{true, false, true, false}
	got := rank(sp, keys, w, y, crit)
	// Unit 0: exp_msb 0.5 -> 0.5/32; unit 1: 0.25/32; unit 2 has no draw and
	// takes the layer's exp_msb mean (0.1*0.5 + 0.1*0.25)/0.2 = 0.375 -> 0.375/32,
	// but ranks last: a unit never drawn has a lower bound of 0.
	want := []struct {
		index int64
		score float64
	}{{0, 0.5 / 32}, {1, 0.25 / 32}, {2, 0.375 / 32}}
	for i, u := range got {
		if u.Index != want[i].index || math.Abs(*u.Score-want[i].score) > 1e-12 || u.Rank != i+1 {
			t.Errorf("rank %d: unit %d score %g, want unit %d score %g", i+1, u.Index, *u.Score, want[i].index, want[i].score)
		}
	}
	if got[0].Faults != 2 || got[0].Critical != 1 || got[2].Faults != 0 || *got[2].ScoreLower != 0 {
		t.Errorf("fault counts %+v", got)
	}
}

// The ranking orders units by their lower confidence bound: a unit drawn once
// with a high score ranks below a well-sampled unit with a lower one, and a
// unit whose two draws fall in two bit classes (a delta-method interval of
// zero width) gets no credit for its narrow interval.
func TestRankByLowerBound(t *testing.T) {
	// One layer of 5 units of one element each.
	sp := &space{target: Weights, elems: 5, layers: []layerSpace{{site: model.Site{Name: "fc"}, n: 5, unit: 1}}}
	key := func(e int64, b int) int64 { return e*Bits + int64(b) }
	var keys []int64
	var w, y []float64
	draw := func(e int64, b int, wt, v float64) {
		keys, w, y = append(keys, key(e, b)), append(w, wt), append(y, v)
	}
	draw(0, 30, 1, 0.95) // unit 0: drawn once, the highest score
	for range 12 {
		draw(1, 30, 1, 0.8) // unit 1: twelve draws at 0.8
	}
	draw(2, 30, 1, 0.9) // unit 2: one exp_msb and one mantissa draw
	draw(2, 3, 1, 0)
	draw(3, 30, 1, 0.5) // unit 3: two draws, weights 1 and 3: Kish n = 16/10
	draw(3, 30, 3, 0.5)
	// unit 4: never drawn
	got := rank(sp, keys, w, y, make([]bool, len(keys)))
	// Wilson's 95% lower ends (z = 1.96): 0.8 over 12 draws 0.51727, 0.95 over
	// one 0.18653, 0.9 over one 0.16772, 0.5 over 1.6 0.07989; only the
	// exp_msb class (1 bit of 32) holds draws with y > 0.
	want := []struct {
		index        int64
		score, lower float64
		faults       int
	}{
		{1, 0.8 / 32, 0.51727 / 32, 12},
		{0, 0.95 / 32, 0.18653 / 32, 1},
		{2, 0.9 / 32, 0.16772 / 32, 2},
		{3, 0.5 / 32, 0.07989 / 32, 2},
		{4, (0.95 + 12*0.8 + 0.9 + 0.5 + 3*0.5) / 18 / 32, 0, 0}, // the layer's weighted exp_msb mean
	}
	if len(got) != len(want) {
		t.Fatalf("%d units, want %d", len(got), len(want))
	}
	for i, u := range got {
		wt := want[i]
		if u.Index != wt.index || u.Rank != i+1 || u.Faults != wt.faults || math.Abs(*u.Score-wt.score) > 1e-12 || math.Abs(*u.ScoreLower-wt.lower) > 1e-6 {
			t.Errorf("rank %d: unit %d score %g lower %g faults %d, want unit %d score %g lower %g faults %d",
				i+1, u.Index, *u.Score, *u.ScoreLower, u.Faults, wt.index, wt.score, wt.lower, wt.faults)
		}
	}
	// Unit 2's delta-method interval has no width: one draw per class.
	if u := got[2]; u.CI95 == nil || u.CI95[0] != u.CI95[1] {
		t.Errorf("unit 2's delta-method interval %v, want one of zero width", u.CI95)
	}
}

// The split-half tau is 1 when every draw of a unit gives the same value (the
// halves rank the units alike) and near 0 when values are noise.
func TestSplitHalf(t *testing.T) {
	const units = 40
	sp := &space{target: Weights, elems: 2 * units, layers: []layerSpace{{site: model.Site{Name: "fc"}, n: 2 * units, unit: 2}}}
	rng := rand.New(rand.NewPCG(1, 2))
	draws := func(y func(u int64) float64) []draw {
		var ds []draw
		for range 4000 {
			e := rng.Int64N(2 * units)
			ds = append(ds, draw{key: e*Bits + 30, p: 1, q: 1, y: y(e / 2), stratum: -1})
		}
		return ds
	}
	sh := splitHalf(sp, draws(func(u int64) float64 { return float64(u) / units }))
	if sh == nil || sh.Draws != 2000 || sh.Units != units || sh.KendallTau != 1 {
		t.Errorf("values set by the unit: %+v, want tau 1 over %d units", sh, units)
	}
	sh = splitHalf(sp, draws(func(int64) float64 { return rng.Float64() }))
	if math.Abs(sh.KendallTau) > 0.3 {
		t.Errorf("noise: tau %.3f, want near 0", sh.KendallTau)
	}
	if splitHalf(sp, nil) != nil {
		t.Error("no draws: a split-half result")
	}
}
