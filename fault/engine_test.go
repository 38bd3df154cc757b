package fault

import (
	"context"
	"math"
	"testing"

	"github.com/faultline/faultline/configs"
	"github.com/faultline/faultline/datasets"
	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model"
	"github.com/faultline/faultline/train"
	"github.com/sugarme/gotch"
)

// trained returns a small model trained briefly on synthetic data (so predictions
// have margins, unlike a random network) and its test set.
func trained(t testing.TB, arch string) (*model.Model, *datasets.Set, datasets.Stats) {
	t.Helper()
	c, err := configs.Preset(arch + "-fashion")
	if err != nil {
		t.Fatal(err)
	}
	c.Train.Epochs, c.Train.BatchSize, c.Train.EvalBatchSize, c.Runtime.Threads, c.Runtime.Seed = 2, 64, 250, 1, 7
	tr := datasets.Synthetic(datasets.SyntheticConfig{N: 1200, C: 1, H: 28, W: 28, Classes: 10, Seed: 3, Split: datasets.Train})
	te := datasets.Synthetic(datasets.SyntheticConfig{N: 200, C: 1, H: 28, W: 28, Classes: 10, Seed: 3, Split: datasets.Test})
	data := &train.Data{Name: "synthetic", Train: tr, Test: te, Stats: datasets.ComputeStats(tr)}
	res, err := train.Run(context.Background(), train.Options{Config: c, Data: data, Device: gotch.CPU})
	if err != nil {
		t.Fatal(err)
	}
	return res.Model, te, data.Stats
}

func do(t testing.TB, fn func() error) {
	t.Helper()
	if err := torch.Do(fn); err != nil {
		t.Fatal(err)
	}
}

// paramBits snapshots every parameter's bit patterns.
func paramBits(t testing.TB, m *model.Model) map[string][]uint32 {
	out := map[string][]uint32{}
	do(t, func() error {
		for _, p := range m.Params() {
			v, err := torch.Float32s(p.Tensor)
			if err != nil {
				return err
			}
			b := make([]uint32, len(v))
			for i, x := range v {
				b[i] = math.Float32bits(x)
			}
			out[p.Name] = b
		}
		return nil
	})
	return out
}

func sameBits(t testing.TB, a, b map[string][]uint32) {
	t.Helper()
	for name, x := range a {
		y := b[name]
		for i := range x {
			if x[i] != y[i] {
				t.Fatalf("%s[%d] changed: 0x%08x -> 0x%08x", name, i, x[i], y[i])
			}
		}
	}
}

// The batched injector agrees with the reference fault by fault: exactly for
// activation faults, and up to float rounding (near-tied logits only) for weight
// faults; NaN/Inf cases are identical. Parameters come back bit for bit.
func TestBatchedAgreesWithReference(t *testing.T) {
	if testing.Short() {
		t.Skip("trains two small models")
	}
	spaces := []Space{
		{Target: Weight, Kind: BitFlip, Bias: true},
		{Target: Weight, Kind: BitFlip, Multi: 3},
		{Target: Weight, Kind: StuckAt1, Bits: []int{30, 29, 22}},
		{Target: Activation, Point: Output, Kind: BitFlip},
		{Target: Activation, Point: Input, Kind: BitFlip},
		{Target: Activation, Point: MAC, Kind: BitFlip},
		{Target: Activation, Point: Output, Kind: RandomValue},
		{Target: Activation, Point: Output, Kind: Zero},
		{Target: Weight, Kind: StuckAt0, Bits: []int{30}},
		// High exponent bits make most output and input faults critical, so the
		// shortcuts through the next layer are checked on faults that matter.
		{Target: Activation, Point: Output, Kind: BitFlip, Bits: []int{30, 29, 28}},
		{Target: Activation, Point: Input, Kind: BitFlip, Bits: []int{30, 29, 28}},
		// Stuck-at faults, about half of them inactive: the batched engine skips
		// those pairs (weights, and activations at lead layers) where the
		// reference finds them in its forward pass; multi-bit ones may be
		// partly active (active). Golden activations agree between the modes
		// only to rounding, so whether a low mantissa bit already holds its
		// value may differ: activation faults here force bits 20 and up.
		{Target: Activation, Point: Output, Kind: StuckAt0, Bits: []int{31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20}},
		{Target: Activation, Point: Input, Kind: StuckAt1, Bits: []int{30, 29}},
		{Target: Activation, Point: MAC, Kind: StuckAt1, Multi: 2, Bits: []int{30, 29, 23, 22}},
		{Target: Weight, Kind: StuckAt0, Multi: 2, Bits: []int{31, 30, 29, 23}},
	}
	// VGG-11's reference runs dominate the test's time: fewer faults there.
	perSpace := map[string]int64{"lenet5": 150, "vgg11": 100, "mlp": 150}
	for _, arch := range []string{"lenet5", "vgg11", "mlp"} {
		t.Run(arch, func(t *testing.T) {
			m, te, stats := trained(t, arch)
			golden := paramBits(t, m)
			var inj *Injector // one injector: its footprints are probed once
			do(t, func() error {
				var err error
				if inj, err = NewInjector(m); err != nil {
					return err
				}
				inj.BatchSize = 256
				return nil
			})
			var viaAll int64 // weight samples through the one-channel shortcut
			for si, sp := range spaces {
				var ref, bat []*Fault
				inert, via, skipped := inj.inert, inj.viaChannel, inj.inactive
				do(t, func() error {
					ev, err := inj.LoadEvalSet(te, stats, 40)
					if err != nil {
						return err
					}
					defer ev.Drop()
					plan, err := NewPlan(m, sp, PlanOptions{Sampler: Uniform, Faults: perSpace[arch], Seed: int64(si)})
					if err != nil {
						return err
					}
					for i := int64(0); i < plan.Total; i++ {
						f, g := plan.Fault(i), plan.Fault(i)
						if i%3 == 0 { // some faults on a few images only
							f.Images, g.Images = []int64{i % 30, 7}, []int64{i % 30, 7}
						}
						ref, bat = append(ref, &f), append(bat, &g)
					}
					if err := inj.RunReference(ev, ref); err != nil {
						return err
					}
					return inj.RunBatched(ev, bat)
				})
				sameBits(t, golden, paramBits(t, m))
				// skippable: the inactive pairs the batched engine finds before any
				// forward pass (weight faults, activation faults at a lead layer)
				differ, crit, inactive, skippable, pairs := 0, 0, 0, 0, 0
				for i := range ref {
					r, b := ref[i].Outcome, bat[i].Outcome
					crit += r.Critical()
					inactive += r.Inactive
					pairs += r.Images
					st, err := m.StageOf(ref[i].Layer)
					if err != nil {
						t.Fatal(err)
					}
					if sp.Target == Weight || m.Lead(st) == ref[i].Layer {
						skippable += r.Inactive
					}
					for _, o := range []*Outcome{r, b} {
						if err := o.Validate(); err != nil {
							t.Fatalf("space %d fault %v: %v", si, ref[i].ID, err)
						}
					}
					// A weight fault is inactive on all its images or on none, as its
					// weight's bits say; an activation fault at least on its first
					// image when that image's value kept its bits.
					if sp.Target == Weight && (r.Inactive == r.Images) != unchanged(float32(r.Before), float32(r.After)) ||
						sp.Target == Weight && r.Inactive != 0 && r.Inactive != r.Images ||
						sp.Target == Activation && unchanged(float32(r.Before), float32(r.After)) && r.Inactive == 0 {
						t.Errorf("space %d fault %+v: inactive on %d of %d images, before %v after %v", si, *ref[i], r.Inactive, r.Images, r.Before, r.After)
					}
					// Weights are read from the same host copy: bit-identical. Golden
					// activations depend on the batch libtorch computed them in (GEMM
					// blocking), so they agree to rounding; both sides must show the
					// fault's own arithmetic exactly.
					if sp.Target == Weight && (r.BeforeBits != b.BeforeBits || r.AfterBits != b.AfterBits) {
						t.Fatalf("space %d fault %+v: before/after %v/%v vs %v/%v", si, *ref[i], r.Before, r.After, b.Before, b.After)
					}
					if d := math.Abs(float64(r.Before) - float64(b.Before)); d > 1e-5*math.Max(1, math.Abs(float64(r.Before))) {
						t.Errorf("space %d fault %v: golden value %v (reference) vs %v (batched)", si, ref[i].ID, r.Before, b.Before)
					}
					for _, o := range []*Outcome{r, b} {
						if sp.Point != MAC && o.AfterBits != BitsOf(ref[i].Corrupt(float32(o.Before))) {
							t.Errorf("space %d fault %v: after %v is not the fault applied to %v", si, ref[i].ID, o.After, o.Before)
						}
					}
					if r.DUE != b.DUE {
						t.Errorf("space %d fault %v: DUE %d (reference) vs %d (batched)", si, ref[i].ID, r.DUE, b.DUE)
					}
					if r.SDC != b.SDC || r.Masked != b.Masked || r.Top5 != b.Top5 || r.Images != b.Images || r.Inactive != b.Inactive {
						differ++
						t.Logf("space %d fault %+v: reference %+v, batched %+v", si, *ref[i], *r, *b)
					}
				}
				if len(sp.Bits) == 3 && sp.Target == Activation && crit < len(ref) {
					t.Errorf("space %d: only %d critical pairs; the space is meant to exercise critical faults", si, crit)
				}
				if differ > 1 {
					t.Errorf("space %d (%+v): %d of %d faults differ", si, sp, differ, len(ref))
				}
				inert, via, skipped = inj.inert-inert, inj.viaChannel-via, inj.inactive-skipped
				t.Logf("space %d %s/%s/%s: %d faults, %d critical fault-image pairs, %d inactive (%d skipped), %d differ, %d samples inert, %d through the one-channel shortcut",
					si, sp.Target, sp.Point, sp.Kind, len(ref), crit, inactive, skipped, differ, inert, via)
				switch {
				case sp.Kind == BitFlip && inactive != 0:
					t.Errorf("space %d: %d bit-flip pairs inactive", si, inactive)
				case (sp.Kind == StuckAt0 || sp.Kind == StuckAt1) && inactive == 0:
					t.Errorf("space %d: no stuck-at pair inactive", si)
				case skipped != int64(skippable) && differ == 0:
					t.Errorf("space %d: %d inactive pairs, %d of them skippable, %d skipped", si, inactive, skippable, skipped)
				}
				if sp.Target == Weight {
					viaAll += via
				}
				// VGG-11's last convolutions see 1x1 inputs: most of their weights
				// read only padding, so uniform weight faults must hit the shortcut
				// (unless most are inactive: stuck-at-0 on bit 30 of |w| < 2).
				if arch == "vgg11" && sp.Target == Weight && inert == 0 && 2*inactive < pairs {
					t.Errorf("space %d: no sample took the zero-input shortcut", si)
				}
			}
			// LeNet-5's conv1 and VGG-11's convolutions but the last feed a
			// convolution: some of the weight faults must take the shortcut.
			if arch != "mlp" && viaAll == 0 {
				t.Errorf("no weight fault took the one-channel shortcut")
			}
		})
	}
}
