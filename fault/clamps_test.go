package fault

import (
	"math"
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
