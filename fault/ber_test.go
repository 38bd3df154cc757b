package fault

import (
	"context"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model"
)

// The binomial quantile is exact on a hand-computed case, has the binomial's mean
// and variance over a grid of u, and grows with p for a fixed u (nested flip sets).
func TestBERBinomialQuantile(t *testing.T) {
	for _, c := range []struct {
		n    int64
		p, u float64
		want int64
	}{
		// Binomial(3, 1/2): CDF 1/8, 4/8, 7/8, 1
		{3, 0.5, 0.1, 0}, {3, 0.5, 0.2, 1}, {3, 0.5, 0.6, 2}, {3, 0.5, 0.9, 3},
		{10, 1, 0.3, 10},
		// Binomial(1e6, 1e-9): P(0) = exp(-1e-3) ~ 0.9990005
		{1_000_000, 1e-9, 0.999, 0}, {1_000_000, 1e-9, 0.9991, 1},
	} {
		if got := binomialQuantile(c.n, c.p, c.u); got != c.want {
			t.Errorf("binomialQuantile(%d, %g, %g) = %d, want %d", c.n, c.p, c.u, got, c.want)
		}
	}
	const grid = 2000
	for _, c := range []struct {
		n int64
		p float64
	}{{50, 0.3}, {2_000_000, 1e-6}, {2_000_000, 1e-3}, {3_000_000_000, 1e-3}} {
		var s, s2 float64
		for i := 0; i < grid; i++ {
			k := float64(binomialQuantile(c.n, c.p, (float64(i)+0.5)/grid))
			s, s2 = s+k, s2+k*k
		}
		mean := s / grid
		v := s2/grid - mean*mean
		wantMean, wantVar := float64(c.n)*c.p, float64(c.n)*c.p*(1-c.p)
		if math.Abs(mean-wantMean) > 0.01*math.Sqrt(wantVar)+1e-3 || math.Abs(v-wantVar) > 0.02*wantVar {
			t.Errorf("Binomial(%d, %g): mean %g variance %g, want %g and %g", c.n, c.p, mean, v, wantMean, wantVar)
		}
	}
	rates := []float64{1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.5, 1}
	for i := 0; i < 200; i++ {
		u := (float64(i) + 0.5) / 200
		prev := int64(0)
		for _, p := range rates {
			k := binomialQuantile(2_000_000, p, u)
			if k < prev {
				t.Fatalf("u %g: %d flips at p %g, fewer than %d at a lower p", u, k, p, prev)
			}
			prev = k
		}
	}
}

func TestBERStudentT(t *testing.T) {
	for _, c := range []struct {
		conf float64
		df   int
		want float64
	}{{0.95, 1, 12.7062}, {0.95, 2, 4.3027}, {0.95, 5, 2.5706}, {0.95, 9, 2.2622}, {0.95, 30, 2.0423}, {0.99, 9, 3.2498}, {0.95, 10000, 1.9602}} {
		if got := StudentT(c.conf, c.df); math.Abs(got-c.want) > 1e-3 {
			t.Errorf("StudentT(%g, %d) = %.5f, want %.4f", c.conf, c.df, got, c.want)
		}
	}
}

// Two bits of one element share its mask; positions map to (layer, param, index, bit).
func TestBERGroupSameElement(t *testing.T) {
	b := &berSpace{bits: []int{0, 5, 31}, segs: []berSegment{
		{layer: "a", param: "weight", name: "a.weight", n: 4, start: 0},
		{layer: "a", param: "bias", name: "a.bias", n: 2, start: 12},
	}, total: 18}
	g := b.group([]int64{0, 2, 4, 13, 14, 17})
	if len(g) != 2 || g[0].seg.name != "a.weight" || g[1].seg.name != "a.bias" {
		t.Fatalf("groups %+v", g)
	}
	if !reflect.DeepEqual(g[0].idx, []int64{0, 1}) || !reflect.DeepEqual(g[0].mask, []uint32{1 | 1<<31, 1 << 5}) {
		t.Errorf("weight: elements %v masks %x", g[0].idx, g[0].mask)
	}
	if !reflect.DeepEqual(g[1].idx, []int64{0, 1}) || !reflect.DeepEqual(g[1].mask, []uint32{1<<5 | 1<<31, 1 << 31}) {
		t.Errorf("bias: elements %v masks %x", g[1].idx, g[1].mask)
	}
	want := []Flip{{"a", "weight", 0, 0}, {"a", "weight", 0, 31}, {"a", "weight", 1, 5}, {"a", "bias", 0, 5}, {"a", "bias", 0, 31}, {"a", "bias", 1, 31}}
	if got := b.flips([]int64{0, 2, 4, 13, 14, 17}); !reflect.DeepEqual(got, want) {
		t.Errorf("flips %v, want %v", got, want)
	}
}

func TestBER(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a model")
	}
	m, te, stats := trained(t, "lenet5")
	golden := paramBits(t, m)
	var (
		inj *Injector
		ev  *EvalSet
	)
	do(t, func() error {
		var err error
		if inj, err = NewInjector(m); err != nil {
			return err
		}
		inj.BatchSize = 256
		ev, err = inj.LoadEvalSet(te, stats, 200)
		return err
	})
	defer do(t, func() error { ev.Drop(); return nil })
	run := func(o BEROptions) (c *BERCurve, calls int, err error) {
		err = torch.Do(func() error {
			var err error
			c, err = inj.RunBER(context.Background(), ev, o, func(done, total int) { calls++ })
			return err
		})
		return c, calls, err
	}
	var weightBits int64
	for _, s := range m.Sites() {
		weightBits += model.Numel(s.WeightShape) * 32
	}
	golAcc := ev.Accuracy()

	var curve *BERCurve
	t.Run("curve", func(t *testing.T) {
		o := BEROptions{BERs: []float64{1e-2, 1e-7, 1e-6, 1e-4, 1e-3}, Trials: 8, Seed: 1, KeepFlips: true}
		c, calls, err := run(o)
		if err != nil {
			t.Fatal(err)
		}
		sameBits(t, golden, paramBits(t, m))
		curve = c
		if c.Kind != BERKind || c.SchemaVersion != BERSchema || c.Mode != "ber" || c.Bits != weightBits || calls != 40 || len(c.Trials) != 40 {
			t.Fatalf("curve header %s v%d mode %s bits %d (want %d), %d progress calls, %d trials", c.Kind, c.SchemaVersion, c.Mode, c.Bits, weightBits, calls, len(c.Trials))
		}
		for i, pt := range c.Points {
			t.Logf("ber %-6g flips %8.1f (expected %8.1f) accuracy %.3f [%.3f, %.3f] sdc %.3f due %.3f masked %d/%d",
				pt.BER, pt.MeanFlips, pt.ExpectedFlips, pt.Accuracy, pt.AccuracyCI[0], pt.AccuracyCI[1], pt.SDCRate, pt.DUERate, pt.MaskedTrials, pt.Trials)
			if pt.BER != []float64{1e-7, 1e-6, 1e-4, 1e-3, 1e-2}[i] {
				t.Fatalf("point %d has ber %g: points are not ascending", i, pt.BER)
			}
			// the mean of 8 binomial counts is within 5 standard deviations
			if sd := math.Sqrt(pt.ExpectedFlips / 8); math.Abs(pt.MeanFlips-pt.ExpectedFlips) > 5*sd+0.5 {
				t.Errorf("ber %g: %g flips on average, expected %g", pt.BER, pt.MeanFlips, pt.ExpectedFlips)
			}
			if pt.AccuracyCI[0] > pt.Accuracy || pt.AccuracyCI[1] < pt.Accuracy || pt.AccuracyMin > pt.Accuracy || pt.AccuracyMax < pt.Accuracy {
				t.Errorf("ber %g: accuracy %g outside its interval %v or range [%g, %g]", pt.BER, pt.Accuracy, pt.AccuracyCI, pt.AccuracyMin, pt.AccuracyMax)
			}
			if i > 0 && pt.Accuracy > c.Points[i-1].Accuracy+0.02 {
				t.Errorf("accuracy rises from %g at ber %g to %g at ber %g", c.Points[i-1].Accuracy, c.Points[i-1].BER, pt.Accuracy, pt.BER)
			}
		}
		unchanged := 0
		for _, tr := range c.Trials[:8] {
			if tr.Accuracy == golAcc {
				unchanged++
			}
		}
		if unchanged < 6 {
			t.Errorf("ber 1e-7: accuracy equals the golden %g in %d of 8 trials", golAcc, unchanged)
		}
		if p := c.Points[1]; p.Accuracy < golAcc-0.02 {
			t.Errorf("ber 1e-6: accuracy %g, golden %g", p.Accuracy, golAcc)
		}
		if p := c.Points[4]; p.Accuracy > golAcc-0.3 || p.SDCRate+p.DUERate < 0.3 {
			t.Errorf("ber 1e-2: accuracy %g (golden %g), sdc %g, due %g: flipping 1%% of the bits should break the model", p.Accuracy, golAcc, p.SDCRate, p.DUERate)
		}
		seen := make([]map[Flip]bool, 8) // trial -> flips at the previous point
		for _, tr := range c.Trials {
			if int64(len(tr.FlipList)) != tr.Flips || tr.Elements > tr.Flips || (tr.Flips > 0) != (tr.Elements > 0) {
				t.Fatalf("trial %+v: %d flips listed, %d elements", tr, len(tr.FlipList), tr.Elements)
			}
			if tr.Accuracy != float64(tr.Correct)/200 || tr.SDCRate != float64(tr.SDC)/200 {
				t.Fatalf("trial %d of point %d: %+v", tr.Trial, tr.Point, tr)
			}
			cur := map[Flip]bool{}
			for _, f := range tr.FlipList {
				s, err := m.Site(f.Layer)
				if err != nil || f.Param != "weight" || f.Index < 0 || f.Index >= model.Numel(s.WeightShape) || f.Bit < 0 || f.Bit > 31 || cur[f] {
					t.Fatalf("trial %d of point %d: bad or repeated flip %+v", tr.Trial, tr.Point, f)
				}
				cur[f] = true
			}
			for f := range seen[tr.Trial] {
				if !cur[f] {
					t.Fatalf("trial %d: flip %+v at a lower ber is missing at ber %g", tr.Trial, f, tr.BER)
				}
			}
			seen[tr.Trial] = cur
		}
	})
	if curve == nil {
		t.FailNow()
	}

	t.Run("seeds", func(t *testing.T) {
		o := BEROptions{BERs: []float64{1e-2, 1e-7, 1e-6, 1e-4, 1e-3}, Trials: 8, Seed: 1, KeepFlips: true}
		again, _, err := run(o)
		if err != nil {
			t.Fatal(err)
		}
		a, b := *curve, *again
		a.Timing, b.Timing = BERTiming{}, BERTiming{}
		if !reflect.DeepEqual(a, b) {
			t.Errorf("the same seed gave different curves")
		}
		raw, err := json.Marshal(curve)
		if err != nil {
			t.Fatal(err)
		}
		var back BERCurve
		if err := json.Unmarshal(raw, &back); err != nil || !reflect.DeepEqual(&back, curve) {
			t.Errorf("JSON round trip: %v", err)
		}
		// a point does not depend on which other points the curve has
		one, _, err := run(BEROptions{BERs: []float64{1e-3}, Trials: 8, Seed: 1, KeepFlips: true})
		if err != nil {
			t.Fatal(err)
		}
		for i, tr := range one.Trials {
			want := curve.Trials[3*8+i]
			want.Point = 0
			if !reflect.DeepEqual(tr, want) {
				t.Fatalf("ber 1e-3 trial %d alone: %+v, in the curve: %+v", i, tr, want)
			}
		}
		o.Seed = 2
		other, _, err := run(o)
		if err != nil {
			t.Fatal(err)
		}
		same, flipped := 0, 0
		for i := range other.Trials {
			a, b := other.Trials[i].FlipList, curve.Trials[i].FlipList
			if len(a)+len(b) > 0 {
				flipped++
				if reflect.DeepEqual(a, b) {
					same++
				}
			}
		}
		if same > 0 || flipped < 20 {
			t.Errorf("seeds 1 and 2 flipped the same bits in %d of the %d trials with flips", same, flipped)
		}
		sameBits(t, golden, paramBits(t, m))
	})

	t.Run("count", func(t *testing.T) {
		// conv1 has 150 weights and 6 biases: 500 of its 4992 bits hit some elements twice
		o := BEROptions{Space: Space{Layers: []string{"conv1"}, Bias: true}, Count: 500, Trials: 3, Seed: 5, KeepFlips: true}
		c, _, err := run(o)
		if err != nil {
			t.Fatal(err)
		}
		sameBits(t, golden, paramBits(t, m))
		s, _ := m.Site("conv1")
		if wantBits := (model.Numel(s.WeightShape) + s.WeightShape[0]) * 32; c.Mode != "count" || c.Bits != wantBits || !reflect.DeepEqual(c.Layers, []string{"conv1"}) {
			t.Fatalf("mode %s, %d bits (want %d), layers %v", c.Mode, c.Bits, wantBits, c.Layers)
		}
		biases := 0
		for _, tr := range c.Trials {
			distinct := map[Flip]bool{}
			elems := map[[2]any]bool{}
			for _, f := range tr.FlipList {
				if f.Layer != "conv1" {
					t.Fatalf("flip %+v outside the selection", f)
				}
				distinct[f] = true
				elems[[2]any{f.Param, f.Index}] = true
				if f.Param == "bias" {
					biases++
				}
			}
			if tr.Flips != 500 || len(distinct) != 500 || tr.Elements != int64(len(elems)) || tr.Elements >= 500 {
				t.Errorf("trial %d: %d flips, %d distinct, %d elements (%d listed)", tr.Trial, tr.Flips, len(distinct), tr.Elements, len(elems))
			}
			// the same flips applied one element at a time give the same predictions
			var faults []*Fault
			byElem := map[[2]any]*Fault{}
			for _, f := range tr.FlipList {
				k := [2]any{f.Param, f.Index}
				if byElem[k] == nil {
					byElem[k] = &Fault{Target: Weight, Layer: f.Layer, Param: f.Param, Index: []int64{f.Index}, Kind: BitFlip, Duration: Permanent}
					faults = append(faults, byElem[k])
				}
				byElem[k].Bits = append(byElem[k].Bits, f.Bit)
			}
			var o Outcome
			do(t, func() error {
				var restores []func() error
				for _, f := range faults {
					r, err := inj.Apply(f)
					if err != nil {
						return err
					}
					restores = append(restores, r)
				}
				var margins []float64
				err := torch.NoGrad(func() error { return inj.berEval(ev, 0, &o, &margins) })
				for i := len(restores) - 1; i >= 0; i-- {
					if rerr := restores[i](); rerr != nil && err == nil {
						err = rerr
					}
				}
				return err
			})
			if o.SDC != tr.SDC || o.DUE != tr.DUE || o.Images-o.Misclassified != tr.Correct {
				t.Errorf("trial %d: %d correct, %d sdc, %d due; the same faults applied with Apply: %+v", tr.Trial, tr.Correct, tr.SDC, tr.DUE, o)
			}
		}
		if biases == 0 {
			t.Errorf("no bias bit flipped in 1500 draws from a space with %d bias bits", 6*32)
		}
		sameBits(t, golden, paramBits(t, m))
	})

	t.Run("options", func(t *testing.T) {
		bers := []float64{1e-3}
		for _, c := range []struct {
			o    BEROptions
			want string
		}{
			{BEROptions{BERs: bers}, "trials 0"},
			{BEROptions{Trials: 1}, "give bit error rates or a count"},
			{BEROptions{BERs: bers, Count: 3, Trials: 1}, "not both"},
			{BEROptions{BERs: []float64{0}, Trials: 1}, "bit error rate 0 outside (0, 1]"},
			{BEROptions{BERs: []float64{1e-3, 1.5}, Trials: 1}, "bit error rate 1.5 outside (0, 1]"},
			{BEROptions{BERs: []float64{-1e-3}, Trials: 1}, "outside (0, 1]"},
			{BEROptions{BERs: []float64{math.NaN()}, Trials: 1}, "bit error rate NaN outside"},
			{BEROptions{BERs: []float64{1e-3, 1e-3}, Trials: 1}, "given twice"},
			{BEROptions{Count: -1, Trials: 1}, "count -1 outside"},
			{BEROptions{Count: int(weightBits) + 1, Trials: 1}, "outside 1.."},
			{BEROptions{BERs: bers, Trials: 1, Confidence: 1.5}, "confidence 1.5"},
			{BEROptions{BERs: bers, Trials: 1, Space: Space{Layers: []string{"nope"}}}, `unknown layer "nope"`},
			{BEROptions{BERs: bers, Trials: 1, Space: Space{Layers: []string{"fc1", "fc1"}}}, "selected twice"},
			{BEROptions{BERs: bers, Trials: 1, Space: Space{Target: Activation}}, "target"},
			{BEROptions{BERs: bers, Trials: 1, Space: Space{Kind: StuckAt0}}, "kind"},
			{BEROptions{BERs: bers, Trials: 1, Space: Space{Point: MAC}}, "point"},
			{BEROptions{BERs: bers, Trials: 1, Space: Space{Multi: 2}}, "multi"},
			{BEROptions{BERs: bers, Trials: 1, Space: Space{Duration: Transient}}, "duration"},
			{BEROptions{BERs: bers, Trials: 1, Space: Space{Bits: []int{3, 40}}}, "bits"},
			{BEROptions{BERs: bers, Trials: 1, Space: Space{Bits: []int{3, 3}}}, "bits"},
		} {
			_, _, err := run(c.o)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%+v: error %v, want one containing %q", c.o, err, c.want)
			}
		}
		var err error
		_ = torch.Do(func() error {
			_, err = inj.RunBER(context.Background(), nil, BEROptions{BERs: bers, Trials: 1}, nil)
			return nil
		})
		if err == nil || !strings.Contains(err.Error(), "no evaluation images") {
			t.Errorf("nil evaluation set: %v", err)
		}
		sameBits(t, golden, paramBits(t, m))
	})

	t.Run("apply", func(t *testing.T) {
		nan := Value(Bits(0x7fc00123).Float()) // a quiet NaN with a payload
		for _, f := range []Fault{
			{Layer: "conv1", Param: "weight", Index: []int64{3}, Kind: BitFlip, Bits: []int{30}},
			{Layer: "fc1", Param: "bias", Index: []int64{2}, Kind: BitFlip, Bits: []int{0, 22, 31}},
			{Layer: "conv2", Param: "weight", Index: []int64{100}, Kind: StuckAt1, Bits: []int{30}},
			{Layer: "fc3", Param: "weight", Index: []int64{7}, Kind: Zero},
			{Layer: "fc2", Param: "weight", Index: []int64{11}, Kind: RandomValue, Value: &nan},
		} {
			f.Target, f.Duration = Weight, Permanent
			var restore func() error
			do(t, func() error {
				var err error
				restore, err = inj.Apply(&f)
				return err
			})
			faulty := paramBits(t, m)
			name := f.ParamName()
			g := golden[name][f.Index[0]]
			if want := uint32(BitsOf(f.Corrupt(math.Float32frombits(g)))); faulty[name][f.Index[0]] != want || want == g {
				t.Errorf("%s[%d] %s: 0x%08x after Apply, want 0x%08x (golden 0x%08x)", name, f.Index[0], f.Kind, faulty[name][f.Index[0]], want, g)
			}
			faulty[name][f.Index[0]] = g
			sameBits(t, golden, faulty) // nothing else changed
			do(t, restore)
			do(t, restore) // a second call does nothing
			sameBits(t, golden, paramBits(t, m))
		}
		// two faults on one element stack and come off in reverse order
		a := Fault{Target: Weight, Layer: "fc1", Param: "weight", Index: []int64{5}, Kind: BitFlip, Bits: []int{30}}
		b := Fault{Target: Weight, Layer: "fc1", Param: "weight", Index: []int64{5}, Kind: StuckAt1, Bits: []int{30, 1}}
		var ra, rb func() error
		do(t, func() error {
			var err error
			if ra, err = inj.Apply(&a); err != nil {
				return err
			}
			rb, err = inj.Apply(&b)
			return err
		})
		g := math.Float32frombits(golden["fc1.weight"][5])
		if got, want := paramBits(t, m)["fc1.weight"][5], uint32(BitsOf(b.Corrupt(a.Corrupt(g)))); got != want {
			t.Errorf("stacked faults: 0x%08x, want 0x%08x", got, want)
		}
		// a BER trial refuses to start from a non-golden element and leaves the rest alone
		every := int(model.Numel(inj.sites["conv1"].WeightShape) + model.Numel(inj.sites["fc1"].WeightShape)) // bit 0 of every weight
		_, _, err := run(BEROptions{Space: Space{Layers: []string{"conv1", "fc1"}, Bits: []int{0}}, Count: every, Trials: 1})
		if err == nil || !strings.Contains(err.Error(), "fc1.weight[5]") {
			t.Errorf("BER over an applied fault: %v", err)
		}
		do(t, rb)
		do(t, ra)
		sameBits(t, golden, paramBits(t, m))
		for _, f := range []Fault{
			{Target: Activation, Layer: "fc1", Index: []int64{3}, Kind: BitFlip, Bits: []int{1}},
			{Target: Weight, Layer: "fc1", Param: "weight", Index: []int64{1 << 30}, Kind: BitFlip, Bits: []int{1}},
			{Target: Weight, Layer: "nope", Param: "weight", Index: []int64{0}, Kind: BitFlip, Bits: []int{1}},
		} {
			var err error
			_ = torch.Do(func() error { _, err = inj.Apply(&f); return nil })
			if err == nil {
				t.Errorf("Apply(%+v) succeeded", f)
			}
		}
		sameBits(t, golden, paramBits(t, m))
	})
}
