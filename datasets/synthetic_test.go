package datasets

import (
	"bytes"
	"testing"
)

func TestSyntheticDeterministic(t *testing.T) {
	cfg := SyntheticConfig{N: 50, C: 3, H: 4, W: 5, Classes: 7, Seed: 42}
	a, b := Synthetic(cfg), Synthetic(cfg)
	if !bytes.Equal(a.Pixels, b.Pixels) || !bytes.Equal(a.Labels, b.Labels) {
		t.Fatal("two calls with the same config differ")
	}
	if err := a.Validate(); err != nil {
		t.Fatal(err)
	}
	if a.N != 50 || a.C != 3 || a.H != 4 || a.W != 5 || a.Classes != 7 || a.Split != Train {
		t.Errorf("shape %+v", a)
	}
	cfg.Seed = 43
	if bytes.Equal(Synthetic(cfg).Pixels, a.Pixels) {
		t.Error("seeds 42 and 43 give the same pixels")
	}
	cfg.Seed, cfg.Split = 42, Test
	if bytes.Equal(Synthetic(cfg).Pixels, a.Pixels) {
		t.Error("train and test splits give the same pixels")
	}
}

func TestSyntheticDefaults(t *testing.T) {
	s := Synthetic(SyntheticConfig{N: 20})
	d := syntheticDefaults
	if s.C != d.C || s.H != d.H || s.W != d.W || s.Classes != d.Classes || s.N != 20 {
		t.Errorf("defaults not applied: %dx%dx%d, %d classes", s.C, s.H, s.W, s.Classes)
	}
}

func TestSyntheticConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  SyntheticConfig
		want string
	}{
		{SyntheticConfig{N: -1}, "negative shape"},
		{SyntheticConfig{Classes: 300}, "300 classes"},
		{SyntheticConfig{Split: "val"}, `unknown split "val"`},
		{SyntheticConfig{N: 1 << 20, C: 3, H: 1024, W: 1024}, "more than"},
	} {
		wantErr(t, tc.cfg.Validate(), tc.want)
	}
	defer func() {
		if recover() == nil {
			t.Error("Synthetic accepted an invalid config")
		}
	}()
	Synthetic(SyntheticConfig{N: -1})
}

// TestSyntheticLearnable checks that a nearest-class-mean classifier fitted on the
// train split classifies the test split almost perfectly.
func TestSyntheticLearnable(t *testing.T) {
	cfg := SyntheticConfig{N: 500, C: 1, H: 8, W: 8, Classes: 10, Seed: 7}
	train := Synthetic(cfg)
	cfg.Split, cfg.N = Test, 200
	test := Synthetic(cfg)
	sz := train.ImageSize()
	means := make([]float64, train.Classes*sz)
	counts := make([]int, train.Classes)
	for i := range train.N {
		k := int(train.Labels[i])
		counts[k]++
		for j, p := range train.Image(i) {
			means[k*sz+j] += float64(p)
		}
	}
	for k := range train.Classes {
		for j := range sz {
			means[k*sz+j] /= float64(counts[k])
		}
	}
	correct := 0
	for i := range test.N {
		best, bestD := -1, 0.0
		for k := range test.Classes {
			d := 0.0
			for j, p := range test.Image(i) {
				e := float64(p) - means[k*sz+j]
				d += e * e
			}
			if best < 0 || d < bestD {
				best, bestD = k, d
			}
		}
		if best == int(test.Labels[i]) {
			correct++
		}
	}
	if acc := float64(correct) / float64(test.N); acc < 0.95 {
		t.Errorf("nearest-mean accuracy %.3f, want >= 0.95", acc)
	}
}
