package deepvigor

import (
	"math"
	"slices"
	"testing"

	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model"
	"github.com/sugarme/gotch/ts"
)

// runSearch drives one state with an oracle that misclassifies from magnitude
// cut on (monotone; never when cut is +Inf), and returns the state.
func runSearch(t *testing.T, g grid, d *dist, side int, guess int, cut float64) *state {
	t.Helper()
	j := &job{ds: []dist{*d}}
	cands, inf := candidates(j.dist(0), g, side)
	st := &state{j: j, side: side, cands: cands, inf: inf, lo: -1}
	st.hi = st.n()
	st.guess = guess
	if guess > st.n() {
		st.guess = st.n()
	}
	for k := st.next(); k >= 0; k = st.next() {
		if st.tests > 2*len(g.t) {
			t.Fatalf("search does not end: lo %d hi %d", st.lo, st.hi)
		}
		st.last = k
		st.tests++
		if !math.IsInf(cut, 1) && math.Abs(float64(st.value(g, k))) >= cut {
			st.hi = k
		} else {
			st.lo = k
		}
	}
	return st
}

// The search ends at the same cut whatever its first guess, a correct guess
// costs at most two tests and a safe image one, and the counts are the
// errors below the cut (half of the bin holding it), with infinite errors
// decided by the infinite delta.
func TestSearchFindsTheCutAndCountsBelowIt(t *testing.T) {
	tail := newGrid(1, true)
	plain := newGrid(1, false)
	inf := float32(math.Inf(1))
	errs := []float32{0, 0, 1e-4, 0.3, 0.3, 3, 3, 3, 100, 5000, 1e20, 1e30, inf, -0.3, -3, -1e30, float32(math.Inf(-1)), float32(math.NaN())}
	for _, c := range []struct {
		name      string
		g         grid
		side      int
		cut       float64 // the oracle misclassifies from this magnitude on
		wantCount float64
	}{
		// positive side: cdf counts errors below the cut, the 4 negatives included.
		{"tail grid, positive, cut inside [2,4)", tail, 1, 3.5, 4 + 5 + 1.5}, // 0, 0, 1e-4, 0.3, 0.3; half of the three 3s
		{"tail grid, positive, everything safe", tail, 1, math.Inf(1), 17},
		{"tail grid, positive, only +Inf critical", tail, 1, 1e39, 16},
		{"tail grid, positive, cut in the tail", tail, 1, 1e25, 4 + 11}, // up to 1e20: no error between 2^80 and 2^96
		{"plain grid, positive, safe: tail critical", plain, 1, math.Inf(1), 4 + 9},
		// negative side: cdf counts errors below the negative cut (critical).
		{"tail grid, negative, everything safe", tail, 0, math.Inf(1), 0},
		{"tail grid, negative, only -Inf critical", tail, 0, 1e39, 1},
		{"tail grid, negative, cut inside [-4,-2)", tail, 0, 3.5, 2 + 0.5},
		{"plain grid, negative, safe: tail critical", plain, 0, math.Inf(1), 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := binHost(c.g, errs)
			var first *state
			for guess := -1; guess <= len(c.g.t); guess++ {
				st := runSearch(t, c.g, &d, c.side, guess, c.cut)
				if got := st.count(c.g); got != c.wantCount {
					t.Fatalf("guess %d: count %g, want %g (lo %d hi %d of %d)", guess, got, c.wantCount, st.lo, st.hi, st.n())
				}
				if first == nil {
					first = st
				} else if st.lo != first.lo || st.hi != first.hi {
					t.Errorf("guess %d ends at (%d, %d), guess -1 at (%d, %d)", guess, st.lo, st.hi, first.lo, first.hi)
				}
			}
			// The best guess: the first failing candidate (or none when safe).
			best := first.hi
			if best == first.n() {
				if st := runSearch(t, c.g, &d, c.side, first.n(), c.cut); st.tests != 1 {
					t.Errorf("a safe prediction took %d tests, want 1", st.tests)
				}
			} else if st := runSearch(t, c.g, &d, c.side, best, c.cut); st.tests > 2 {
				t.Errorf("a correct prediction took %d tests, want at most 2", st.tests)
			}
		})
	}
}

// crossing is the smallest margin over the slope among the classes a delta on
// that side brings closer; flat when every slope is zero.
func TestSlopesCrossing(t *testing.T) {
	// One image, three classes, per = 2 outputs (one channel of two positions).
	sl := &slopes{classes: 3, images: 1, per: 2, hw: 2,
		logits: []float32{5, 1, 3}, // golden class 0: margins 4 (class 1) and 2 (class 2)
		jac: []float32{
			1, 0, // d logit0 / d y
			3, 0, // d logit1
			0, 0, // d logit2
		}}
	sl.chanJac = []float32{1, 3, 0}
	neuron := &target{channel: 0, neuron: 0}
	// slopes of margins: class 1: 1-3 = -2; class 2: 1-0 = +1.
	for _, c := range []struct {
		t    *target
		side int
		want float64
		flat bool
	}{
		{neuron, 1, 2, false},            // positive delta: margin to class 1 shrinks at 2 per unit: 4/2
		{neuron, 0, 2, false},            // negative delta: margin to class 2 shrinks at 1 per unit: 2/1
		{&target{neuron: 1}, 1, 0, true}, // position 1 reaches nothing
		{&target{channel: 0, neuron: -1}, 1, 2, false},
	} {
		got, flat := sl.crossing(c.t, 0, 0, c.side)
		if flat != c.flat || !flat && got != c.want {
			t.Errorf("target %+v side %d: crossing %g flat %v, want %g flat %v", *c.t, c.side, got, flat, c.want, c.flat)
		}
	}
}

// The Jacobian from the backward passes predicts the logits' change under a
// small delta (central differences through the real network).
func TestJacobianMatchesFiniteDifferences(t *testing.T) {
	m, set, stats := tiny(t)
	const n = 6
	_, _, ev := analyze(t, m, set, stats, n, Options{Weights: true, Semantics: Exact, SamplingRatio: 1, Layers: []string{"fc2"}})
	do(t, func() error {
		return torch.NoGrad(func() error {
			s := m.Sites()[3] // fc2
			st, err := m.StageOf(s.Name)
			if err != nil {
				return err
			}
			var sc torch.Scope
			defer sc.Drop()
			in, err := sc.KeepErr(m.RunStages(ev.X, 0, st, false, nil))
			if err != nil {
				return err
			}
			var out *ts.Tensor
			if _, err := sc.KeepErr(m.RunStages(in, st, st+1, false, func(site *model.Site, _, o *ts.Tensor) (*ts.Tensor, error) {
				if site.Name == s.Name {
					var err error
					out, err = sc.KeepErr(o.DetachCopy(false))
					return nil, err
				}
				return nil, nil
			})); err != nil {
				return err
			}
			r := &runner{m: m, site: s, stage: st, lead: m.Lead(st) == s.Name, stageIn: in, out: out, golden: ev.Golden,
				classes: 10, per: s.OutShape[0], hw: 1, maxBatch: 64}
			sl, err := r.jacobian()
			if err != nil {
				return err
			}
			// One-sided differences: at a ReLU kink autograd takes one side.
			const h = 1e-3
			for _, neuron := range []int64{0, 7, 20} {
				for b := range n {
					var l [3][]float32
					for k, d := range []float32{-h, 0, h} {
						y, err := sc.KeepErr(out.DetachCopy(false))
						if err != nil {
							return err
						}
						pi, err := sc.KeepErr(torch.FromInt64([]int64{int64(b)*r.per + neuron}, []int64{1}, m.Device()))
						if err != nil {
							return err
						}
						pv, err := sc.KeepErr(torch.FromFloat32([]float32{d}, []int64{1}, m.Device()))
						if err != nil {
							return err
						}
						if err := y.Put_(pi, pv, true); err != nil {
							return err
						}
						it, err := sc.KeepErr(torch.FromInt64([]int64{int64(b)}, []int64{1}, m.Device()))
						if err != nil {
							return err
						}
						yb, err := sc.KeepErr(y.IndexSelect(0, it, false))
						if err != nil {
							return err
						}
						lt, err := r.logits(&sc, yb, it, false)
						if err != nil {
							return err
						}
						if l[k], err = torch.Float32s(lt); err != nil {
							return err
						}
					}
					for j := range 10 {
						left := (float64(l[1][j]) - float64(l[0][j])) / h
						right := (float64(l[2][j]) - float64(l[1][j])) / h
						jac := float64(sl.jac[int64(j*n+b)*r.per+neuron])
						tol := 2e-3 * math.Max(1, math.Abs(jac))
						if math.Abs(left-jac) > tol && math.Abs(right-jac) > tol {
							t.Errorf("neuron %d image %d class %d: Jacobian %g, one-sided differences %g and %g", neuron, b, j, jac, left, right)
						}
					}
				}
			}
			return nil
		})
	})
}

// On an exact grid (a weight's own bit-flip changes as candidates) every error
// is decided by its own test: the count at the cut is exact, with no half bin.
func TestExactGridDecidesEachError(t *testing.T) {
	inf := float32(math.Inf(1))
	errs := []float32{0, 0.5, 0.5, 2, 1e30, inf, -1, -3, -1e30, float32(math.NaN())}
	g := exactGrid(errs)
	if !g.exact || !g.tail || g.t[g.zero] != 0 {
		t.Fatalf("grid %+v", g)
	}
	want := []float32{-1e30, -3, -1, 0, math.Nextafter32(0.5, inf), math.Nextafter32(2, inf), math.Nextafter32(1e30, inf)}
	if !slices.Equal(g.t, want) {
		t.Fatalf("thresholds %v, want %v", g.t, want)
	}
	d := binHost(g, errs)
	if d.n != 10 || d.nan != 1 || d.upperTail() != 1 || d.lowerTail() != 0 {
		t.Fatalf("n %d nan %d tails %d %d", d.n, d.nan, d.upperTail(), d.lowerTail())
	}
	for _, c := range []struct {
		side int
		cut  float64
		want float64
	}{
		// positive side: errors below the cut, the 3 negatives included.
		{1, 1, 3 + 3},           // 0, 0.5, 0.5 pass; 2 fails
		{1, 3, 3 + 4},           // and 2
		{1, 1e31, 3 + 5},        // and 1e30; +Inf fails
		{1, math.Inf(1), 3 + 6}, // everything passes
		{1, 0.25, 3 + 1},        // only the zero (below the first candidate) is safe
		{0, 2, 2},               // -1 passes; -3 and -1e30 are critical
		{0, math.Inf(1), 0},     // every negative passes
		{0, 0.5, 3},             // -1 fails, so all three are critical
		{0, 1e31, 0},            // -1e30 passes
	} {
		for guess := -1; guess <= 8; guess++ {
			st := runSearch(t, g, &d, c.side, guess, c.cut)
			if got := st.count(g); got != c.want {
				t.Errorf("side %d cut %g guess %d: count %g, want %g", c.side, c.cut, guess, got, c.want)
			}
		}
	}
}

// A sampled Pattern analysis draws the same weights of a filter whenever the
// filter is drawn, and all of them in a complete analysis.
func TestPatternOperandsAreStable(t *testing.T) {
	a := &analyzer{o: Options{SamplingRatio: 0.1, Seed: 4}}
	x := a.patternOperands(0, 3, 25)
	if len(x) != sampledOperands || !slices.IsSorted(x) || !slices.Equal(x, a.patternOperands(0, 3, 25)) {
		t.Fatalf("operands %v", x)
	}
	if slices.Equal(x, a.patternOperands(0, 4, 25)) {
		t.Error("two filters drew the same weights")
	}
	if got := a.patternOperands(0, 3, 6); !slices.Equal(got, iota(6)) {
		t.Errorf("a filter of 6 weights: %v", got)
	}
	a.o.SamplingRatio = 1
	if got := a.patternOperands(0, 3, 25); len(got) != 25 {
		t.Errorf("complete analysis: %d weights", len(got))
	}
}
