package fault

import (
	"math"
	"strings"
	"testing"

	"github.com/faultline/faultline/datasets"
	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model"
	"github.com/sugarme/gotch/ts"
)

// profileOn returns each site's output range on the evaluation set (call on
// the torch thread).
func profileOn(m *model.Model, ev *EvalSet) (model.Clamps, error) {
	c := model.Clamps{}
	err := torch.NoGrad(func() error {
		hook := func(s *model.Site, _, out *ts.Tensor) (*ts.Tensor, error) {
			v, err := torch.Float32s(out)
			if err != nil {
				return nil, err
			}
			b, ok := c[s.Name]
			if !ok {
				b = model.Bounds{Min: float32(math.Inf(1)), Max: float32(math.Inf(-1))}
			}
			for _, x := range v {
				b.Min, b.Max = min(b.Min, x), max(b.Max, x)
			}
			c[s.Name] = b
			return nil, nil
		}
		y, err := m.Forward(ev.X, false, hook)
		if err != nil {
			return err
		}
		return y.Drop()
	})
	return c, err
}

// bothWays runs n faults of sp (seeded) with the reference and the batched
// injector on a fresh injector and evaluation set (the engine caches golden
// activations per set), and counts the faults whose outcomes differ and the
// critical fault-image pairs.
func bothWays(t *testing.T, m *model.Model, te *datasets.Set, stats datasets.Stats, sp Space, n, seed int64) (differ, crit int) {
	t.Helper()
	var ref, bat []*Fault
	do(t, func() error {
		inj, err := NewInjector(m)
		if err != nil {
			return err
		}
		inj.BatchSize = 256
		plan, err := NewPlan(m, sp, PlanOptions{Sampler: Uniform, Faults: n, Seed: seed})
		if err != nil {
			return err
		}
		for i := int64(0); i < plan.Total; i++ {
			f, g := plan.Fault(i), plan.Fault(i)
			ref, bat = append(ref, &f), append(bat, &g)
		}
		e, err := inj.LoadEvalSet(te, stats, 40)
		if err != nil {
			return err
		}
		defer e.Drop()
		if err := inj.RunReference(e, ref); err != nil {
			return err
		}
		return inj.RunBatched(e, bat)
	})
	for i := range ref {
		r, b := ref[i].Outcome, bat[i].Outcome
		crit += r.Critical()
		if r.SDC != b.SDC || r.DUE != b.DUE || r.Masked != b.Masked || r.Images != b.Images || r.Inactive != b.Inactive {
			differ++
			t.Logf("fault %+v: reference %+v, batched %+v", *ref[i], *r, *b)
		}
	}
	return differ, crit
}

// With clamps (range restriction), the batched engine's shortcuts (deltas at
// lead layers, footprints into the next stage) still agree with the reference
// injector, fault by fault, and the clamps mask most exponent-MSB faults.
func TestBatchedAgreesWithReferenceUnderClamps(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a small model")
	}
	m, te, stats := trained(t, "lenet5")
	var clamps model.Clamps
	do(t, func() error {
		inj, err := NewInjector(m)
		if err != nil {
			return err
		}
		ev, err := inj.LoadEvalSet(te, stats, 40)
		if err != nil {
			return err
		}
		defer ev.Drop()
		clamps, err = profileOn(m, ev)
		return err
	})
	for si, sp := range []Space{
		{Target: Weight, Kind: BitFlip, Bits: []int{30, 29, 28}},
		{Target: Activation, Point: Output, Kind: BitFlip, Bits: []int{30, 29, 28}},
		{Target: Activation, Point: Input, Kind: BitFlip, Bits: []int{30, 29, 28}},
		{Target: Activation, Point: MAC, Kind: BitFlip, Bits: []int{30, 29, 28}},
	} {
		if err := m.SetClamps(clamps); err != nil {
			t.Fatal(err)
		}
		differ, crit := bothWays(t, m, te, stats, sp, 150, int64(si))
		if err := m.SetClamps(nil); err != nil {
			t.Fatal(err)
		}
		_, critPlain := bothWays(t, m, te, stats, sp, 150, int64(si))
		t.Logf("space %d %s/%s: critical fault-image pairs %d with clamps, %d without; %d differ", si, sp.Target, sp.Point, crit, critPlain, differ)
		if differ > 1 {
			t.Errorf("space %d (%s/%s): faults differ under clamps", si, sp.Target, sp.Point)
		}
		if crit >= critPlain {
			t.Errorf("space %d: clamps did not reduce critical pairs (%d vs %d)", si, crit, critPlain)
		}
	}
}

// With weight clamps, batched weight faults (exact deltas from the clamped
// corrupted value) agree with reference injection (the forward pass clamps the
// stored value), and exponent-MSB flips become mostly harmless.
func TestBatchedAgreesWithReferenceUnderWeightClamps(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a small model")
	}
	m, te, stats := trained(t, "lenet5")
	var wc model.Clamps
	do(t, func() error {
		var err error
		if wc, err = m.WeightRanges(); err != nil {
			return err
		}
		return m.SetWeightClamps(wc)
	})
	sp := Space{Target: Weight, Kind: BitFlip, Bits: []int{30, 29, 28}}
	differ, crit := bothWays(t, m, te, stats, sp, 200, 5)
	do(t, func() error { return m.SetWeightClamps(nil) })
	_, critPlain := bothWays(t, m, te, stats, sp, 200, 5)
	t.Logf("weight clamps: %d critical pairs, %d without; %d of 200 faults differ", crit, critPlain, differ)
	if differ > 1 {
		t.Errorf("%d of 200 faults differ under weight clamps", differ)
	}
	if crit*4 > critPlain {
		t.Errorf("weight clamps left %d of %d critical pairs", crit, critPlain)
	}
	// Weights outside their clamps (changed after they were set) are refused.
	do(t, func() error {
		if err := m.SetWeightClamps(wc); err != nil {
			return err
		}
		w, err := m.Param("fc1.weight")
		if err != nil {
			return err
		}
		return torch.NoGrad(func() error { return w.Fill_(ts.FloatScalar(float64(wc["fc1"].Max) + 1)) })
	})
	var err error
	do(t, func() error { _, err = NewInjector(m); return nil })
	if err == nil || !strings.Contains(err.Error(), "outside its clamps") {
		t.Errorf("weights outside the clamps: %v", err)
	}
}
