package fault

import (
	"math"
	"strings"
	"testing"

	"github.com/faultline/faultline/datasets"
	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model"
	"github.com/sugarme/gotch"
)

// Inactive faults on hand-computed float32 patterns. 0.75 is 0x3f400000: sign 0,
// exponent 126 = 0b01111110 (bits 30..23: 0 1 1 1 1 1 1 0), mantissa 0x400000
// (bit 22 set). 1.0 is 0x3f800000 (exponent 127: bits 29..23 set), -2.0 is
// 0xc0000000 (sign and bit 30 set), the quiet NaN 0x7fc00000 and +Inf 0x7f800000.
func TestInactiveHandComputed(t *testing.T) {
	v75 := Value(0.75)
	negZero := math.Float32frombits(0x80000000)
	for _, c := range []struct {
		name     string
		f        Fault
		in       uint32
		want     uint32 // the corrupted pattern
		inactive bool
	}{
		{"stuck0 {30,23} of 0.75: both bits already 0", Fault{Kind: StuckAt0, Bits: []int{30, 23}}, 0x3f400000, 0x3f400000, true},
		{"stuck1 {30,23} of 0.75 gives a quiet NaN", Fault{Kind: StuckAt1, Bits: []int{30, 23}}, 0x3f400000, 0x7fc00000, false},
		{"stuck0 {29,23} of 0.75: bit 23 holds, bit 29 drops (0.75 * 2^-64): partly active is active",
			Fault{Kind: StuckAt0, Bits: []int{29, 23}}, 0x3f400000, 0x1f400000, false},
		{"stuck0 bit 22 of 0.75 gives 0.5", Fault{Kind: StuckAt0, Bits: []int{22}}, 0x3f400000, 0x3f000000, false},
		{"stuck1 bit 22 of 0.75: already 1", Fault{Kind: StuckAt1, Bits: []int{22}}, 0x3f400000, 0x3f400000, true},
		{"stuck1 bits 29..23 of 1.0: all already 1", Fault{Kind: StuckAt1, Bits: []int{29, 28, 27, 26, 25, 24, 23}}, 0x3f800000, 0x3f800000, true},
		{"stuck1 {30,23} of 1.0 gives +Inf (bit 23 holds, bit 30 changes)", Fault{Kind: StuckAt1, Bits: []int{30, 23}}, 0x3f800000, 0x7f800000, false},
		{"stuck0 on +0: every bit already 0", Fault{Kind: StuckAt0, Bits: []int{31, 30, 0}}, 0x00000000, 0x00000000, true},
		{"stuck1 sign of +0 gives -0: equal as numbers, yet a changed bit", Fault{Kind: StuckAt1, Bits: []int{31}}, 0x00000000, 0x80000000, false},
		{"stuck1 bit 30 of +0 gives 2.0", Fault{Kind: StuckAt1, Bits: []int{30}}, 0x00000000, 0x40000000, false},
		{"stuck1 sign of -2.0: already 1", Fault{Kind: StuckAt1, Bits: []int{31}}, 0xc0000000, 0xc0000000, true},
		{"stuck1 {31,30} of -2.0: both already 1", Fault{Kind: StuckAt1, Bits: []int{31, 30}}, 0xc0000000, 0xc0000000, true},
		{"stuck0 sign of -2.0 gives 2.0", Fault{Kind: StuckAt0, Bits: []int{31}}, 0xc0000000, 0x40000000, false},
		{"stuck1 bit 30 of a NaN: already 1", Fault{Kind: StuckAt1, Bits: []int{30}}, 0x7fc00000, 0x7fc00000, true},
		{"stuck0 bit 22 of the quiet NaN gives +Inf", Fault{Kind: StuckAt0, Bits: []int{22}}, 0x7fc00000, 0x7f800000, false},
		{"stuck1 on the exponent of +Inf: all 1", Fault{Kind: StuckAt1, Bits: []int{30, 29, 28, 27, 26, 25, 24, 23}}, 0x7f800000, 0x7f800000, true},
		{"stuck1 bit 0 of +Inf gives a NaN", Fault{Kind: StuckAt1, Bits: []int{0}}, 0x7f800000, 0x7f800001, false},
		{"a bit flip is never inactive, not even on +0", Fault{Kind: BitFlip, Bits: []int{0}}, 0x00000000, 0x00000001, false},
		{"zero on +0", Fault{Kind: Zero}, 0x00000000, 0x00000000, true},
		{"zero on -0 writes +0", Fault{Kind: Zero}, math.Float32bits(negZero), 0x00000000, false},
		{"random value equal to the old one", Fault{Kind: RandomValue, Value: &v75}, 0x3f400000, 0x3f400000, true},
		{"random value of the other sign", Fault{Kind: RandomValue, Value: &v75}, 0xbf400000, 0x3f400000, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := math.Float32frombits(c.in)
			if got := math.Float32bits(c.f.Corrupt(in)); got != c.want {
				t.Errorf("corrupt 0x%08x -> 0x%08x, want 0x%08x", c.in, got, c.want)
			}
			if got := c.f.Inactive(in); got != c.inactive {
				t.Errorf("inactive = %v, want %v", got, c.inactive)
			}
		})
	}
}

// Outcome counts: every image is masked, SDC, DUE or inactive, once.
func TestOutcomeValidateInactive(t *testing.T) {
	for _, c := range []struct {
		o    Outcome
		want string // "" for valid
	}{
		{Outcome{Images: 5, Masked: 1, SDC: 1, DUE: 1, Inactive: 2, Top5: 2, Misclassified: 3}, ""},
		{Outcome{Images: 4, Inactive: 4, Misclassified: 1}, ""},
		{Outcome{Images: 5, Masked: 3, Inactive: 1}, "masked 3 + sdc 0 + due 0 + inactive 1 is not images 5"},
		{Outcome{Images: 3, Masked: 3, Inactive: 1}, "is not images 3"},
		{Outcome{Images: 2, Masked: 3, Inactive: -1}, "negative count"},
		{Outcome{Images: 3, SDC: 1, Inactive: 2, Top5: 2}, "top5 2 exceeds the 1 active images"},
	} {
		err := c.o.Validate()
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%+v: error %v, want %q", c.o, err, c.want)
		}
	}
	// classifyInactive keeps the golden prediction: misclassified when the
	// golden top-1 misses the label, never SDC, DUE, top-5 or a margin.
	var o Outcome
	classifyInactive(&o, 3, 3)
	classifyInactive(&o, 3, 4)
	var margins []float64
	classify(&o, []float32{0, 2, 1}, 1, 1, &margins)
	finishMargin(&o, margins)
	if o.Images != 3 || o.Inactive != 2 || o.Masked != 1 || o.Misclassified != 1 || o.Top5 != 0 || o.Margin == nil || *o.Margin != 1 || o.Validate() != nil {
		t.Errorf("outcome %+v (margin %v)", o, o.Margin)
	}
}

// Off the lead layers (ResNet-20's residual blocks have none) the batched engine
// cannot read golden values ahead: its hook finds the inactive pairs during the
// pass, as the reference does, and both count the same ones. Weight faults are
// skipped anywhere, from the weight's bits.
func TestInactiveAgreesOffLeadLayers(t *testing.T) {
	if testing.Short() {
		t.Skip("runs reference injections on a ResNet-20")
	}
	te := datasets.Synthetic(datasets.SyntheticConfig{N: 40, C: 1, H: 16, W: 16, Classes: 10, Seed: 3, Split: datasets.Test})
	stats := datasets.ComputeStats(te)
	var (
		m      *model.Model
		inj    *Injector
		layers []string
	)
	torch.ManualSeed(7) // reproducible weights
	do(t, func() error {
		var err error
		if m, err = model.New(model.Spec{Arch: "resnet20", InChannels: 1, Height: 16, Width: 16, Classes: 10, WidthMult: 0.25}, gotch.CPU); err != nil {
			return err
		}
		leads := map[string]bool{}
		for st := range m.NumStages() {
			leads[m.Lead(st)] = true
		}
		for _, n := range m.SiteNames() {
			if !leads[n] && (strings.HasPrefix(n, "layer1.1") || strings.HasPrefix(n, "layer2.0")) {
				layers = append(layers, n)
			}
		}
		inj, err = NewInjector(m)
		inj.BatchSize = 64
		return err
	})
	if len(layers) < 3 {
		t.Fatalf("non-lead layers %v", layers)
	}
	for si, sp := range []Space{
		{Target: Activation, Point: Output, Kind: StuckAt0, Layers: layers},
		{Target: Activation, Point: Input, Kind: StuckAt1, Bits: []int{30, 29}, Layers: layers},
		{Target: Activation, Point: MAC, Kind: StuckAt0, Multi: 2, Bits: []int{31, 30, 29, 23}, Layers: layers},
		{Target: Weight, Kind: StuckAt1, Layers: layers},
	} {
		var ref, bat []*Fault
		skipped := inj.inactive
		do(t, func() error {
			ev, err := inj.LoadEvalSet(te, stats, 20)
			if err != nil {
				return err
			}
			defer ev.Drop()
			plan, err := NewPlan(m, sp, PlanOptions{Sampler: Uniform, Faults: 60, Seed: int64(si)})
			if err != nil {
				return err
			}
			for i := range plan.Total {
				f, g := plan.Fault(i), plan.Fault(i)
				if i%2 == 0 {
					f.Images, g.Images = []int64{i % 13, 6}, []int64{i % 13, 6}
				}
				ref, bat = append(ref, &f), append(bat, &g)
			}
			if err := inj.RunReference(ev, ref); err != nil {
				return err
			}
			return inj.RunBatched(ev, bat)
		})
		skipped = inj.inactive - skipped
		inactive, differ, outcomes := 0, 0, 0
		for i := range ref {
			r, b := ref[i].Outcome, bat[i].Outcome
			inactive += r.Inactive
			if r.Inactive != b.Inactive {
				differ++
				t.Logf("space %d fault %+v: inactive on %d images (reference), %d (batched)", si, *ref[i], r.Inactive, b.Inactive)
			}
			if r.SDC != b.SDC || r.DUE != b.DUE || r.Masked != b.Masked {
				outcomes++
			}
		}
		t.Logf("space %d %s/%s/%s: %d faults, %d inactive pairs (%d skipped), %d inactive counts and %d outcomes differ",
			si, sp.Target, sp.Point, sp.Kind, len(ref), inactive, skipped, differ, outcomes)
		if inactive == 0 {
			t.Errorf("space %d: no inactive pair", si)
		}
		if differ > 1 || outcomes > 2 {
			t.Errorf("space %d: %d faults with other inactive counts, %d with other outcomes", si, differ, outcomes)
		}
		if want := map[Target]bool{Weight: true, Activation: false}[sp.Target]; (skipped > 0) != want || want && skipped != int64(inactive) {
			t.Errorf("space %d: %d of %d inactive pairs skipped before the pass", si, skipped, inactive)
		}
	}
}
