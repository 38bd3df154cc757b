package deepvigor

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/faultline/faultline/model"
)

func TestEstimateCompleteAndSmallCases(t *testing.T) {
	cases := []struct {
		name     string
		strata   []stratumSample
		channels int
		complete bool
		wantV    float64
		wantCI   *[2]float64
	}{
		{"complete", []stratumSample{{size: 3, cv: []float64{0.01, 0.02, 0.03}}}, 3, true, 0.02, &[2]float64{0.02, 0.02}},
		// Two of ten channels: var = (1-0.2) * 2e-6 / 2, t(0.95, 1) = 12.706.
		{"srs", []stratumSample{{size: 10, cv: []float64{0.010, 0.012}}}, 10, false, 0.011,
			&[2]float64{0, 0.011 + 12.706*math.Sqrt(0.8*2e-6/2)}},
		{"one draw", []stratumSample{{size: 10, cv: []float64{0.010}}}, 10, false, 0.010, nil},
		// Every channel drawn (a precision target grew the layer), one position
		// each: nothing is sampled, so the interval is the value.
		{"every channel", []stratumSample{{size: 2, cv: []float64{0.01, 0.02}}, {size: 2, cv: []float64{0.03, 0.04}}}, 4, false, 0.025,
			&[2]float64{0.025, 0.025}},
		// Weights 0.6 and 0.4; the second stratum is complete, so only the first
		// varies: var = 0.36 * (1 - 2/6) * 2e-4 / 2, df = 6 - 2, t = 2.776.
		{"strata", []stratumSample{{size: 6, cv: []float64{0.02, 0.04}}, {size: 4, cv: []float64{0.01, 0.01, 0.02, 0.02}}}, 10, false,
			0.6*0.03 + 0.4*0.015, &[2]float64{0.024 - 2.776*math.Sqrt(0.36*(2.0/3)*2e-4/2), 0.024 + 2.776*math.Sqrt(0.36*(2.0/3)*2e-4/2)}},
		// Two strata whose two channels agree: the stratified variance is 0,
		// so the strata collapsed decide: var = (1 - 4/10) * s^2 / 4 with
		// s^2 = 4e-4/3 of {1%, 1%, 3%, 3%}, t(0.95, 3) = 3.182.
		{"agreeing strata", []stratumSample{{size: 5, cv: []float64{0.01, 0.01}}, {size: 5, cv: []float64{0.03, 0.03}}}, 10, false, 0.02,
			&[2]float64{0.02 - 3.182*math.Sqrt(0.6*(4e-4/3)/4), 0.02 + 3.182*math.Sqrt(0.6*(4e-4/3)/4)}},
	}
	for _, c := range cases {
		v, ci := estimate(c.strata, c.channels, 1, 1, c.complete)
		if math.Abs(v-c.wantV) > 1e-12 {
			t.Errorf("%s: v = %g, want %g", c.name, v, c.wantV)
		}
		if (ci == nil) != (c.wantCI == nil) {
			t.Fatalf("%s: interval %v, want %v", c.name, ci, c.wantCI)
		}
		if ci != nil && (math.Abs(ci[0]-c.wantCI[0]) > 1e-4 || math.Abs(ci[1]-c.wantCI[1]) > 1e-4) {
			t.Errorf("%s: interval %v, want %v", c.name, *ci, *c.wantCI)
		}
	}
}

// TestStratifiedSamplingCoversAndBeatsUniform draws 9 of 84 channels of a
// left-skewed population (15% of channels far below the rest, the shape of
// LeNet-5's fc2) 2,000 times, with a sensitivity that ranks the channels only
// roughly (Spearman ~0.5, as measured there), and checks that the stratified
// estimate is unbiased, its 95% interval covers the true mean at least 92% of
// the time, and its error is smaller than uniform sampling's.
func TestStratifiedSamplingCoversAndBeatsUniform(t *testing.T) {
	const c, runs = 84, 2000
	rng := rand.New(rand.NewPCG(1, 2))
	pop := make([]float64, c)
	sens := make([]float64, c)
	var truth float64
	for i := range pop {
		pop[i] = 0.015 + 0.002*rng.NormFloat64()
		if i%7 == 0 {
			pop[i] = 0.009 + 0.001*rng.NormFloat64()
		}
		sens[i] = pop[i] + 0.004*rng.NormFloat64()
		truth += pop[i] / c
	}
	site := model.Site{Name: "fc2", OutShape: []int64{c}}
	var covered int
	var sumErr, sqStrat, sqUniform float64
	for seed := range runs {
		a := &analyzer{o: Options{Semantics: Exact, SamplingRatio: 0.1, Seed: int64(seed)}}
		for _, s := range [][]float64{sens, nil} {
			p := a.draw(site, 3, s)
			v, ci := estimate(p.sampleOf(pop), c, 1, 1, false)
			if ci == nil {
				t.Fatalf("seed %d: no interval from %d channels", seed, len(p.channels))
			}
			if s == nil {
				sqUniform += (v - truth) * (v - truth)
				continue
			}
			if len(p.channels) != 9 || len(p.strata) != 4 {
				t.Fatalf("drew %d channels in %d strata, want 9 in 4", len(p.channels), len(p.strata))
			}
			sumErr += v - truth
			sqStrat += (v - truth) * (v - truth)
			if ci[0] <= truth && truth <= ci[1] {
				covered++
			}
		}
	}
	rmse := math.Sqrt(sqStrat / runs)
	if bias := sumErr / runs; math.Abs(bias) > 4*rmse/math.Sqrt(runs) {
		t.Errorf("bias %.2e, above 4 standard errors (%.2e)", bias, 4*rmse/math.Sqrt(runs))
	}
	if cov := float64(covered) / runs; cov < 0.92 {
		t.Errorf("95%% interval covered the truth in %.1f%% of runs, want >= 92%%", 100*cov)
	}
	if u := math.Sqrt(sqUniform / runs); rmse >= u {
		t.Errorf("stratified RMSE %.2e not below uniform's %.2e", rmse, u)
	}
	t.Logf("coverage %d/%d, RMSE stratified %.2e, uniform %.2e", covered, runs, rmse, math.Sqrt(sqUniform/runs))
}

// nextSize grows a layer to the size its current draw's variance predicts, not
// by the draw's t quantile: two channels give t = 12.7 on one degree of freedom,
// and sizing by the interval itself analysed small layers completely.
func TestNextSize(t *testing.T) {
	inf := math.Inf(1)
	cases := []struct {
		name        string
		n, c, df    int
		hw, d       float64
		want        int
		wantAtLeast int
		wantAtMost  int
	}{
		// LeNet-5's conv1 weights at seed 1: 2 of 6 filters, [1.82%, 3.99%];
		// sized by its own half-width it took all 6.
		{name: "two similar of six", n: 2, c: 6, df: 1, hw: 0.01085, d: 0.005, want: 4},
		{name: "no interval grows by two", n: 2, c: 16, df: 1, hw: inf, d: 0.005, want: 4},
		{name: "no degrees of freedom grows by two", n: 3, c: 16, df: 0, hw: 0.02, d: 0.005, want: 5},
		{name: "two short of complete", n: 14, c: 16, df: 7, hw: 0.02, d: 0.005, want: 16},
		{name: "hopeless is complete", n: 2, c: 40, df: 1, hw: 0.5, d: 0.001, want: 40},
		// VGG-11's features.0: 16 filters, CVF sd 1.42 pp; an interval of that sd
		// at n = 2 on one degree of freedom needs most of the layer.
		{name: "spread filters", n: 2, c: 16, df: 1, hw: 12.706 * 0.0142 * math.Sqrt(0.5-1.0/16), d: 0.005, wantAtLeast: 11, wantAtMost: 15},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := nextSize(tc.n, tc.c, tc.df, tc.hw, tc.d)
			if tc.want != 0 && got != tc.want || tc.want == 0 && (got < tc.wantAtLeast || got > tc.wantAtMost) {
				t.Errorf("nextSize(%d, %d, %d, %g, %g) = %d, want %d (or in [%d, %d])", tc.n, tc.c, tc.df, tc.hw, tc.d, got, tc.want, tc.wantAtLeast, tc.wantAtMost)
			}
		})
	}
}

// TestIntervalCoversSmallSpreadLayer draws 4 of 16 channels (two strata) of a
// layer whose channel VFs spread widely (2.3% to 7.1%, the shape of VGG-11's
// first layer) under a sensitivity that ranks them only roughly, 2,000 times.
// Two channels per stratum that happen to agree made the stratified interval
// alone too narrow; with the collapsed-strata floor it covers the true LVF at
// least 93% of the time.
func TestIntervalCoversSmallSpreadLayer(t *testing.T) {
	const c, n, runs = 16, 4, 2000
	rng := rand.New(rand.NewPCG(3, 4))
	pop := make([]float64, c)
	sens := make([]float64, c)
	var truth float64
	for i := range pop {
		pop[i] = 0.023 + 0.048*float64(i)/float64(c-1)*float64(i)/float64(c-1)
		sens[i] = pop[i] + 0.015*rng.NormFloat64()
		truth += pop[i] / c
	}
	site := model.Site{Name: "features.0", OutShape: []int64{c}}
	covered := 0
	for seed := range runs {
		a := &analyzer{o: Options{Semantics: Exact, SamplingRatio: 0.1, Seed: int64(seed)}}
		p := a.drawN(site, 0, sens, n)
		_, ci := estimate(p.sampleOf(pop), c, 1, 1, false)
		if ci == nil {
			t.Fatalf("seed %d: no interval from %d channels in %d strata", seed, len(p.channels), len(p.strata))
		}
		if ci[0] <= truth && truth <= ci[1] {
			covered++
		}
	}
	if cov := float64(covered) / runs; cov < 0.93 {
		t.Errorf("95%% interval covered the truth in %.1f%% of %d draws, want >= 93%%", 100*cov, runs)
	}
	t.Logf("coverage %d/%d", covered, runs)
}

// sampleOf gives a draw's strata with the drawn channels' values in pop, as
// estimate takes them.
func (p plan) sampleOf(pop []float64) []stratumSample {
	ss := make([]stratumSample, len(p.strata))
	for h, size := range p.strata {
		ss[h].size = size
	}
	for k, ch := range p.channels {
		ss[p.stratum[k]].cv = append(ss[p.stratum[k]].cv, pop[ch])
	}
	return ss
}
