package fault

import (
	"math"
	"strings"
	"testing"

	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model"
	"github.com/sugarme/gotch/ts"
)

// profile returns each site's output range on the evaluation set.
func profile(t *testing.T, m *model.Model, ev *EvalSet) model.Clamps {
	t.Helper()
	c := model.Clamps{}
	do(t, func() error {
		return torch.NoGrad(func() error {
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
	})
	return c
}

// With clamps (range restriction), the batched engine's shortcuts (deltas at
// lead layers, footprints into the next stage) still agree with the reference
// injector, fault by fault, and the clamps mask most exponent-MSB faults.
func TestBatchedAgreesWithReferenceUnderClamps(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a small model")
	}
	m, te, stats := trained(t, "lenet5")
	var inj *Injector
	var ev *EvalSet
	do(t, func() error {
		var err error
		if inj, err = NewInjector(m); err != nil {
			return err
		}
		inj.BatchSize = 256
		ev, err = inj.LoadEvalSet(te, stats, 40)
		return err
	})
	defer do(t, func() error { ev.Drop(); return nil })
	clamps := profile(t, m, ev)
	spaces := []Space{
		{Target: Weight, Kind: BitFlip, Bits: []int{30, 29, 28}},
		{Target: Activation, Point: Output, Kind: BitFlip, Bits: []int{30, 29, 28}},
		{Target: Activation, Point: Input, Kind: BitFlip, Bits: []int{30, 29, 28}},
		{Target: Activation, Point: MAC, Kind: BitFlip, Bits: []int{30, 29, 28}},
	}
	for si, sp := range spaces {
		run := func(c model.Clamps) (ref, bat []*Fault) {
			if err := m.SetClamps(c); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = m.SetClamps(nil) }()
			do(t, func() error {
				plan, err := NewPlan(m, sp, PlanOptions{Sampler: Uniform, Faults: 150, Seed: int64(si)})
				if err != nil {
					return err
				}
				for i := int64(0); i < plan.Total; i++ {
					f, g := plan.Fault(i), plan.Fault(i)
					ref, bat = append(ref, &f), append(bat, &g)
				}
				// The engine caches golden activations per evaluation set: a fresh
				// one for each clamp setting.
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
			return ref, bat
		}
		ref, bat := run(clamps)
		differ, crit := 0, 0
		for i := range ref {
			r, b := ref[i].Outcome, bat[i].Outcome
			crit += r.Critical()
			if r.SDC != b.SDC || r.DUE != b.DUE || r.Masked != b.Masked || r.Images != b.Images {
				differ++
				t.Logf("space %d fault %+v: reference %+v, batched %+v", si, *ref[i], *r, *b)
			}
		}
		if differ > 1 {
			t.Errorf("space %d (%s/%s): %d of %d faults differ under clamps", si, sp.Target, sp.Point, differ, len(ref))
		}
		plain, _ := run(nil)
		critPlain := 0
		for _, f := range plain {
			critPlain += f.Outcome.Critical()
		}
		t.Logf("space %d %s/%s: critical fault-image pairs %d with clamps, %d without; %d differ", si, sp.Target, sp.Point, crit, critPlain, differ)
		if crit >= critPlain {
			t.Errorf("space %d: clamps did not reduce critical pairs (%d vs %d)", si, crit, critPlain)
		}
	}
}

// weightRanges returns each site's weight range.
func weightRanges(t *testing.T, m *model.Model) model.Clamps {
	t.Helper()
	c := model.Clamps{}
	do(t, func() error {
		for _, s := range m.Sites() {
			w, err := m.Param(s.Weight())
			if err != nil {
				return err
			}
			v, err := torch.Float32s(w)
			if err != nil {
				return err
			}
			b := model.Bounds{Min: float32(math.Inf(1)), Max: float32(math.Inf(-1))}
			for _, x := range v {
				b.Min, b.Max = min(b.Min, x), max(b.Max, x)
			}
			c[s.Name] = b
		}
		return nil
	})
	return c
}

// With weight clamps, batched weight faults (exact deltas from the clamped
// corrupted value) agree with reference injection (the forward pass clamps the
// stored value), and exponent-MSB flips become mostly harmless.
func TestBatchedAgreesWithReferenceUnderWeightClamps(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a small model")
	}
	m, te, stats := trained(t, "lenet5")
	wc := weightRanges(t, m)
	sp := Space{Target: Weight, Kind: BitFlip, Bits: []int{30, 29, 28}}
	run := func(c model.Clamps) (ref, bat []*Fault) {
		do(t, func() error {
			if err := m.SetWeightClamps(c); err != nil {
				return err
			}
			inj, err := NewInjector(m)
			if err != nil {
				return err
			}
			inj.BatchSize = 256
			plan, err := NewPlan(m, sp, PlanOptions{Sampler: Uniform, Faults: 200, Seed: 5})
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
		return ref, bat
	}
	ref, bat := run(wc)
	differ, crit := 0, 0
	for i := range ref {
		r, b := ref[i].Outcome, bat[i].Outcome
		crit += r.Critical()
		if r.SDC != b.SDC || r.DUE != b.DUE || r.Masked != b.Masked {
			differ++
			t.Logf("fault %+v: reference %+v, batched %+v", *ref[i], *r, *b)
		}
	}
	plain, _ := run(nil)
	critPlain := 0
	for _, f := range plain {
		critPlain += f.Outcome.Critical()
	}
	t.Logf("weight clamps: %d critical pairs, %d without; %d of %d faults differ", crit, critPlain, differ, len(ref))
	if differ > 1 {
		t.Errorf("%d of %d faults differ under weight clamps", differ, len(ref))
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
