package fault

import (
	"slices"
	"strings"
	"testing"

	"github.com/faultline/faultline/model"
	"github.com/sugarme/gotch"
)

// --multi K with stuck-at kinds draws K distinct sorted bits from --bits, as
// multi-bit flips do; K beyond the bit positions, K < 1 and several bits for
// zero or random faults are refused.
func TestPlanMultiBitStuckAt(t *testing.T) {
	var m *model.Model
	do(t, func() error {
		var err error
		m, err = model.New(model.Spec{Arch: "lenet5", InChannels: 1, Height: 28, Width: 28, Classes: 10, WidthMult: 1}, gotch.CPU)
		return err
	})
	o := PlanOptions{Sampler: Uniform, Faults: 200, Seed: 5}
	for _, c := range []struct {
		sp   Space
		bits []int // the bit positions every fault draws from
	}{
		{Space{Target: Weight, Kind: StuckAt0, Multi: 2, Bits: []int{30, 23}}, []int{23, 30}},
		{Space{Target: Activation, Kind: StuckAt1, Multi: 3}, nil},
		{Space{Target: Weight, Kind: StuckAt1, Multi: 4, Bits: []int{31, 30, 29, 28, 27, 23}}, []int{31, 30, 29, 28, 27, 23}},
	} {
		p, err := NewPlan(m, c.sp, o)
		if err != nil {
			t.Fatal(err)
		}
		again, _ := NewPlan(m, c.sp, o)
		seen := map[string]bool{}
		for i := range p.Total {
			f := p.Fault(i)
			if err := f.Validate(); err != nil {
				t.Fatalf("fault %d: %v", i, err)
			}
			if f.Kind != c.sp.Kind || len(f.Bits) != c.sp.Multi || !slices.IsSorted(f.Bits) {
				t.Fatalf("fault %d: kind %s bits %v", i, f.Kind, f.Bits)
			}
			for _, b := range f.Bits {
				if c.bits != nil && !slices.Contains(c.bits, b) {
					t.Fatalf("fault %d: bit %d outside %v", i, b, c.bits)
				}
			}
			if g := again.Fault(i); !slices.Equal(g.Bits, f.Bits) || !slices.Equal(g.Index, f.Index) {
				t.Fatalf("fault %d differs between two plans of the same seed", i)
			}
			seen[string(mustJSON(f.Bits))] = true
		}
		if c.sp.Multi < len(c.bits) && len(seen) < 2 || c.bits == nil && len(seen) < 100 {
			t.Errorf("%+v: only %d distinct bit sets", c.sp, len(seen))
		}
	}
	for _, c := range []struct {
		sp   Space
		want string
	}{
		{Space{Target: Weight, Kind: StuckAt0, Multi: 3, Bits: []int{30, 23}}, "multi 3: more distinct bits per fault than the 2 bit positions"},
		{Space{Target: Weight, Kind: StuckAt1, Multi: 33}, "multi 33: more distinct bits per fault than the 32 bit positions"},
		{Space{Target: Weight, Kind: StuckAt1, Multi: -1}, "multi -1: want at least 1"},
		{Space{Target: Weight, Kind: Zero, Multi: 2}, "not zero"},
		{Space{Target: Weight, Kind: RandomValue, Multi: 2}, "not random"},
	} {
		if _, err := NewPlan(m, c.sp, o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want %q", c.sp, err, c.want)
		}
	}
}
