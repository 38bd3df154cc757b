package datasets

import (
	"math"
	"testing"
)

func TestComputeStats(t *testing.T) {
	// Channel 0 holds 0 and 255 (mean 0.5, std 0.5); channel 1 is constant 51 (0.2, 0).
	s := &Set{N: 2, C: 2, H: 1, W: 1, Classes: 1, Pixels: []uint8{0, 51, 255, 51}, Labels: []uint8{0, 0}}
	st := ComputeStats(s)
	want := Stats{Mean: []float32{0.5, 0.2}, Std: []float32{0.5, 0}}
	for c := range 2 {
		if math.Abs(float64(st.Mean[c]-want.Mean[c])) > 1e-7 || math.Abs(float64(st.Std[c]-want.Std[c])) > 1e-7 {
			t.Errorf("channel %d: got %v/%v, want %v/%v", c, st.Mean[c], st.Std[c], want.Mean[c], want.Std[c])
		}
	}
	wantErr(t, st.Validate(2), "std[1] = 0")
	if e := ComputeStats(&Set{C: 1, H: 1, W: 1}); e.Mean[0] != 0 || e.Std[0] != 0 {
		t.Errorf("empty set: %+v", e)
	}
}

func TestStatsValidate(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	for _, tc := range []struct {
		st       Stats
		channels int
		want     string
	}{
		{Stats{[]float32{0.1}, []float32{0.3}}, 1, ""},
		{Stats{[]float32{0.1}, []float32{0.3}}, 3, "1 means and 1 stds for 3 channels"},
		{Stats{[]float32{nan}, []float32{0.3}}, 1, "mean[0] = NaN"},
		{Stats{[]float32{0}, []float32{-1}}, 1, "std[0] = -1"},
		{Stats{[]float32{0}, []float32{nan}}, 1, "std[0] = NaN"},
		{Stats{[]float32{0}, []float32{inf}}, 1, "std[0] = +Inf"},
	} {
		err := tc.st.Validate(tc.channels)
		if tc.want == "" {
			if err != nil {
				t.Error(err)
			}
			continue
		}
		wantErr(t, err, tc.want)
	}
}

func TestKnownStats(t *testing.T) {
	for _, name := range Names() {
		st, ok := KnownStats(name)
		if name == "synthetic" {
			if ok {
				t.Errorf("synthetic has known stats")
			}
			continue
		}
		channels := 1
		if name == "cifar10" {
			channels = 3
		}
		if !ok || st.Validate(channels) != nil {
			t.Errorf("%s: %+v, %v", name, st, ok)
		}
	}
	st, _ := KnownStats("mnist")
	st.Mean[0] = 9
	if again, _ := KnownStats("mnist"); again.Mean[0] != 0.1307 {
		t.Error("KnownStats returns shared slices")
	}
}

// TestKnownStatsFashionMNIST checks the hard-coded Fashion-MNIST statistics against
// the installed training images.
func TestKnownStatsFashionMNIST(t *testing.T) {
	s := loadFashionMNIST(t, Train)
	got := ComputeStats(s)
	want, _ := KnownStats("fashion-mnist")
	t.Logf("computed mean %.7f std %.7f", got.Mean[0], got.Std[0])
	if math.Abs(float64(got.Mean[0]-want.Mean[0])) > 1e-4 || math.Abs(float64(got.Std[0]-want.Std[0])) > 1e-4 {
		t.Errorf("computed %v/%v, hard-coded %v/%v", got.Mean, got.Std, want.Mean, want.Std)
	}
}
