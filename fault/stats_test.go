package fault

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"
)

func TestQuantile(t *testing.T) {
	for _, c := range []struct{ conf, want float64 }{{0.95, 1.959964}, {0.99, 2.575829}, {0.999, 3.290527}} {
		if got := Quantile(c.conf); math.Abs(got-c.want) > 1e-5 {
			t.Errorf("Quantile(%v) = %v, want %v", c.conf, got, c.want)
		}
	}
}

func TestWilson(t *testing.T) {
	// Hand-computed: k=10, n=100, z=1.959964: centre 0.1173, half 0.0589.
	ci := Wilson(10, 100, 0.95)
	if math.Abs(ci[0]-0.05523) > 1e-4 || math.Abs(ci[1]-0.17437) > 1e-4 {
		t.Errorf("Wilson(10,100) = %v, want [0.0552, 0.1744]", ci)
	}
	ci = Wilson(0, 50, 0.95)
	if ci[0] != 0 || math.Abs(ci[1]-0.07135) > 1e-4 {
		t.Errorf("Wilson(0,50) = %v", ci)
	}
	ci = Wilson(50, 50, 0.99)
	if ci[1] != 1 || ci[0] > 0.9 || ci[0] < 0.8 {
		t.Errorf("Wilson(50,50) = %v", ci)
	}
	// No rounding residue at the ends: 0 of 100 (once 3.5e-18) and 100 of 100.
	for _, n := range []int64{1, 7, 50, 100, 1000} {
		if lo, hi := Wilson(0, n, 0.95)[0], Wilson(n, n, 0.95)[1]; lo != 0 || hi != 1 {
			t.Errorf("Wilson(0, %d) lower end %g, Wilson(%d, %d) upper end %g: want 0 and 1", n, lo, n, n, hi)
		}
	}
	if w99, w95 := Wilson(30, 200, 0.99), Wilson(30, 200, 0.95); w99[0] >= w95[0] || w99[1] <= w95[1] {
		t.Errorf("99%% interval %v not wider than 95%% %v", w99, w95)
	}
}

// WilsonEffective is Wilson's interval at a mean and an effective sample
// size: Wilson's own for whole counts, wide but not empty for one draw.
func TestWilsonEffective(t *testing.T) {
	for _, tc := range []struct {
		p, n     float64
		want     [2]float64
		tolerate float64
	}{
		{0.1, 100, Wilson(10, 100, 0.95), 1e-15},
		// One draw at 0.86: centre (0.86 + z^2/2)/(1 + z^2) = 0.5743, half
		// z/(1 + z^2) sqrt(0.86*0.14 + z^2/4) = 0.4209.
		{0.86, 1, [2]float64{0.1534, 0.9952}, 1e-4},
		{0.5, 0, [2]float64{0, 1}, 0},
	} {
		got := WilsonEffective(tc.p, tc.n, 0.95)
		if math.Abs(got[0]-tc.want[0]) > tc.tolerate || math.Abs(got[1]-tc.want[1]) > tc.tolerate {
			t.Errorf("WilsonEffective(%g, %g) = %v, want %v", tc.p, tc.n, got, tc.want)
		}
	}
}

// Leveugle's sample sizes for a few populations, errors and confidences
// (hand-checked with the formula of LeveugleN).
func TestSampleSizeLeveugle(t *testing.T) {
	cases := []struct {
		n          int64
		e, conf, p float64
		want       int64
	}{
		{1 << 40, 0.01, 0.99, 0.5, 16588}, // t = 2.5758 exactly (the spec's 16,641 uses t = 2.58)
		{1 << 40, 0.01, 0.95, 0.5, 9604},
		{61706 * 32, 0.01, 0.99, 0.5, 16450}, // 16449.07 by hand
		{100, 0.01, 0.95, 0.5, 99},
		{1, 0.01, 0.95, 0.5, 1},
	}
	for _, c := range cases {
		got, err := SampleSize(c.n, c.e, c.conf, c.p)
		if err != nil || got != c.want {
			t.Errorf("SampleSize(%d, %v, %v, %v) = %d, %v; want %d", c.n, c.e, c.conf, c.p, got, err, c.want)
		}
	}
	// LeNet-5 at t = 2.58: the spec's 16,502.
	if n := LeveugleN(61706*32, 0.01, 2.58, 0.5); math.Ceil(n) != 16502 {
		t.Errorf("LeNet-5 at t=2.58: %v, want 16,502", n)
	}
	// VGG-11 (CIFAR-10) filters, layer-wise, t = 1.96: DeepVigor+'s Table VI count
	// 75,351 (the floor of the unrounded sum).
	vgg := []int64{1728, 73728, 294912, 589824, 1179648, 2359296, 2359296, 2359296}
	sum := 0.0
	for _, w := range vgg {
		sum += LeveugleN(32*w, 0.01, 1.96, 0.5)
	}
	if math.Floor(sum) != 75351 {
		t.Errorf("VGG-11 layer-wise SFI at 95%% = %v, want 75,351", sum)
	}
	for _, bad := range [][4]float64{{0, 0.01, 0.95, 0.5}, {10, 0, 0.95, 0.5}, {10, 0.01, 1, 0.5}, {10, 0.01, 0.95, 0}} {
		if _, err := SampleSize(int64(bad[0]), bad[1], bad[2], bad[3]); err == nil {
			t.Errorf("SampleSize%v: no error", bad)
		}
	}
}

func TestPermutationIsABijection(t *testing.T) {
	for _, n := range []int64{1, 2, 3, 7, 100, 1000, 4097} {
		p := newPermutation(n, 42, 1)
		seen := make([]bool, n)
		for i := int64(0); i < n; i++ {
			v := p.at(i)
			if v < 0 || v >= n || seen[v] {
				t.Fatalf("n=%d: at(%d) = %d repeats or is out of range", n, i, v)
			}
			seen[v] = true
		}
	}
	a, b := newPermutation(1000, 1, 1), newPermutation(1000, 2, 1)
	same := 0
	for i := int64(0); i < 1000; i++ {
		if a.at(i) == b.at(i) {
			same++
		}
	}
	if same > 20 {
		t.Errorf("seeds 1 and 2 agree on %d of 1000 positions", same)
	}
}

func TestStreamIntnUniform(t *testing.T) {
	counts := make([]int, 7)
	for i := int64(0); i < 70000; i++ {
		counts[newStream(9, 3, i).intn(7)]++
	}
	for v, c := range counts {
		if c < 9500 || c > 10500 {
			t.Errorf("value %d drawn %d times of 70000", v, c)
		}
	}
}

// The VF interval is Wilson's with one image per fault, and with several it is
// Wilson's over the cluster-robust effective sample size: 10 of 100 faults that
// misclassify all of their 100 images give VF 0.1 with a variance of
// 90000 / (100 * 99 * 100^2), so n_eff = 0.09 / that = 99 (not 10,000 pairs);
// with VF 0 or 1 the effective size is the number of faults.
func TestVFIntervalClustersByFault(t *testing.T) {
	for _, tc := range []struct {
		name     string
		outcomes []Outcome
		want     [2]float64
		critical int64 // faults with an SDC or DUE on some image
	}{
		{"one image per fault", repeatOutcomes(Outcome{Images: 1, SDC: 1}, 7, Outcome{Images: 1, Masked: 1}, 93), Wilson(7, 100, 0.95), 7},
		{"all-or-nothing faults", repeatOutcomes(Outcome{Images: 100, SDC: 100}, 10, Outcome{Images: 100, Masked: 100}, 90),
			wilson(0.1, 0.09/(90000.0/(100*99*100*100)), 0.95), 10},
		{"every pair critical", repeatOutcomes(Outcome{Images: 5, DUE: 5}, 4, Outcome{}, 0), Wilson(4, 4, 0.95), 4},
		{"no pair critical", repeatOutcomes(Outcome{Images: 50, Masked: 50}, 30, Outcome{}, 0), Wilson(0, 30, 0.95), 0},
		{"one fault on many images", repeatOutcomes(Outcome{Images: 1000, SDC: 300, Masked: 700}, 1, Outcome{}, 0), wilson(0.3, 1, 0.95), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b Breakdown
			for i := range tc.outcomes {
				b.add(&tc.outcomes[i])
			}
			b.finish(false)
			if math.Abs(b.VFCI95[0]-tc.want[0]) > 1e-9 || math.Abs(b.VFCI95[1]-tc.want[1]) > 1e-9 {
				t.Errorf("VF %v: interval %v, want %v", b.VF, b.VFCI95, tc.want)
			}
			if b.VFCI95[0] > b.VF || b.VFCI95[1] < b.VF || (b.VF == 0 && b.VFCI95[1] == 0) {
				t.Errorf("VF %v outside or at a zero-width interval %v", b.VF, b.VFCI95)
			}
			if b.CriticalFaults != tc.critical || b.CriticalFaultRate != float64(tc.critical)/float64(b.Faults) ||
				b.CriticalFaultRateCI != Wilson(tc.critical, b.Faults, 0.95) {
				t.Errorf("critical faults %d (rate %v, CI %v), want %d", b.CriticalFaults, b.CriticalFaultRate, b.CriticalFaultRateCI, tc.critical)
			}
		})
	}
	// 99 effective draws for the all-or-nothing case: wider than 10,000 pairs' Wilson.
	if w := wilson(0.1, 99, 0.95); w[1]-w[0] < 5*(Wilson(1000, 10000, 0.95)[1]-Wilson(1000, 10000, 0.95)[0]) {
		t.Errorf("clustered interval %v is not much wider than the pair-level one", w)
	}
}

func repeatOutcomes(a Outcome, na int, b Outcome, nb int) []Outcome {
	var out []Outcome
	for i := 0; i < na; i++ {
		out = append(out, a)
	}
	for i := 0; i < nb; i++ {
		out = append(out, b)
	}
	return out
}

// The streamed summary of a faults.jsonl equals the summary of the same faults in
// memory, field for field (per layer and per bit included).
func TestSummaryStreamedEqualsInMemory(t *testing.T) {
	var faults []Fault
	layers := []string{"conv1", "conv2", "fc1"}
	for i := range 300 {
		o := &Outcome{Images: 4, Masked: 4}
		switch i % 7 {
		case 0:
			o.Masked, o.SDC, o.Misclassified = 2, 2, 2
		case 3:
			o.Masked, o.DUE, o.Misclassified, o.Top5 = 3, 1, 1, 1
		}
		faults = append(faults, Fault{ID: int64(i), Target: Weight, Layer: layers[i%3], Param: "weight",
			Index: []int64{int64(i % 5)}, Kind: BitFlip, Bits: []int{i % 32}, DType: Float32, Duration: Transient, Outcome: o})
	}
	path := filepath.Join(t.TempDir(), FaultsFile)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for i := range faults {
		if err := enc.Encode(&faults[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	h := Header{Images: 4, Faults: int64(len(faults)), ImagesPerFault: 4}
	want := Summarise(h, faults, 0.9, 4, Timing{})
	sm, err := summariseFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got := sm.summary(h, 0.9, 4, Timing{})
	a, _ := json.Marshal(want)
	b, _ := json.Marshal(got)
	if !bytes.Equal(a, b) {
		t.Errorf("streamed summary differs:\n%s\nin memory:\n%s", b, a)
	}
	if want.Faults != 300 || want.SDC == 0 || want.DUE == 0 || len(want.PerLayer) != 3 || len(want.PerBit) != 32 {
		t.Errorf("summary does not cover the faults: %+v", want)
	}
}
