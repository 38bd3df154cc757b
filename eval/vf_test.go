package eval

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/faultline/faultline/eval/deepvigor"
	"github.com/faultline/faultline/internal/testckpt"
	"github.com/sugarme/gotch"
)

func TestRunVFWritesResultsAndValidates(t *testing.T) {
	ckpt := testckpt.Trained(t, 600)
	out := filepath.Join(t.TempDir(), "vf")
	o := VFOptions{Checkpoint: ckpt, Device: gotch.CPU, Threads: 1, Target: "both", Ratio: 0.1, Images: 20,
		Seed: 2, Validate: 0.1, ValidateOperands: 40, Out: out} // default semantics and tail check
	var phases []string
	o.OnProgress = func(phase string, done, total int64) {
		if len(phases) == 0 || phases[len(phases)-1] != phase {
			phases = append(phases, phase)
		}
	}
	vf, err := RunVF(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(phases, ",") != "analysis,validation" {
		t.Errorf("progress phases %v", phases)
	}
	b, err := os.ReadFile(filepath.Join(out, VFFile))
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"kind", "schema_version", "mvf", "mvf_paper", "layers", "image_forwards", "sfi_baseline", "validation", "semantics"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("vf.json lacks %q", k)
		}
	}
	if raw["kind"] != VFKind || vf.Semantics != deepvigor.Exact || !vf.TailCheck || raw["weight_errors"] != "mean" {
		t.Errorf("kind %v, semantics %s, tail %v, weight errors %v: want the defaults exact, on and mean", raw["kind"], vf.Semantics, vf.TailCheck, raw["weight_errors"])
	}
	// conv1 reads the (signed) images: its weights are analysed by pattern.
	if l := vf.Layers; l[0].WeightErrors != deepvigor.Pattern || l[1].WeightErrors != deepvigor.Averaged || len(l[0].ChannelVFs[0].OperandVF) == 0 {
		t.Errorf("weight error models %s, %s", l[0].WeightErrors, l[1].WeightErrors)
	}
	m := raw["mvf"].(map[string]any)
	for _, k := range []string{"activations", "weights", "total"} {
		v, ok := m[k].(float64)
		if !ok || v < 0 || v > 1 {
			t.Errorf("mvf.%s = %v", k, m[k])
		}
	}
	if len(vf.MVF.Layers) != 5 || len(vf.MVFPaper.Layers) != 2 {
		t.Errorf("mvf layers %v, mvf_paper layers %v", vf.MVF.Layers, vf.MVFPaper.Layers)
	}
	v := vf.Validation
	if v == nil || v.MAECVF == nil || v.MaxCVF == nil || v.Weights == nil || v.Activations == nil {
		t.Fatal("validation lacks figures")
	}
	want := 0 // max(ceil(0.1 C), 1) of each layer's analysed channels
	for _, l := range vf.Layers {
		want += min(max(int(math.Ceil(0.1*float64(l.Channels))), 1), len(l.ChannelVFs))
	}
	if v.Weights.N != want || v.Activations.N != want || len(v.Units) != 2*want {
		t.Errorf("validated %d filters, %d neurons, %d units; want %d of each", v.Weights.N, v.Activations.N, len(v.Units), want)
	}
	if v.Exhaustive { // fc1's filters have 400 weights, more than 40
		t.Error("validation with --validate-operands 40 says exhaustive")
	}
	if *v.MAECVF > 0.005 || v.Activations.MAE > 0.005 {
		t.Errorf("DV vs FI: weights MAE %.4f, activations MAE %.4f, want at most 0.5 pp", *v.MAECVF, v.Activations.MAE)
	}
	if len(v.Layers) != len(vf.Layers) || v.Layers[0].Layer != "conv1" || v.Layers[0].Weights == nil || v.Layers[0].Weights.N != 1 {
		t.Errorf("per-layer validation %+v", v.Layers)
	}
	s := vf.SFIBaseline.Confidences
	if len(s) != 2 || s[0].Weights.DataAware <= 0 || s[1].Weights.DataAware <= s[0].Weights.DataAware || s[0].Reduction <= 0 {
		t.Errorf("sfi baseline %+v", s)
	}
	f, err := os.Open(filepath.Join(out, VFCSVFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range vf.Layers {
		n += len(l.ChannelVFs)
	}
	if len(rows) != n+1 || rows[0][0] != "layer" {
		t.Errorf("vf.csv: %d rows, want %d and a header", len(rows), n+1)
	}
}

func TestSFIBaselineReproducesPaperTableVI(t *testing.T) {
	// DeepVigor+ Table VI, VGG-11 (CIFAR-10) filters at t = 1.96: layer-wise
	// 75,351, data-unaware 2,141,913, data-aware 66,934. The paper floors the sum
	// of unrounded sizes; faultline rounds each stratum up (a campaign injects
	// whole faults), so it may exceed the paper by up to one per stratum.
	var r deepvigor.Result
	for _, w := range []int64{1728, 73728, 294912, 589824, 1179648, 2359296, 2359296, 2359296} {
		r.Layers = append(r.Layers, deepvigor.Layer{Weights: w, Neurons: 1})
	}
	w := sfiBaseline(&r, false, true).Confidences[0].Weights
	for _, c := range []struct {
		name       string
		got, paper int64
		strata     int64
	}{{"layer-wise", w.LayerWise, 75351, 8}, {"data-unaware", w.DataUnaware, 2141913, 8 * 32}, {"data-aware", w.DataAware, 66934, 8}} {
		if c.got < c.paper || c.got > c.paper+c.strata {
			t.Errorf("%s SFI at 95%%: %d, want the paper's %d plus at most %d", c.name, c.got, c.paper, c.strata)
		}
	}
}

func TestSpearmanAndRanks(t *testing.T) {
	if r := spearman([]float64{1, 2, 3, 4}, []float64{10, 20, 30, 40}); r == nil || *r != 1 {
		t.Errorf("monotone: %v", r)
	}
	if r := spearman([]float64{1, 2, 3, 4}, []float64{4, 3, 2, 1}); r == nil || *r != -1 {
		t.Errorf("reversed: %v", r)
	}
	if r := spearman([]float64{1, 1, 1}, []float64{1, 2, 3}); r != nil {
		t.Errorf("constant side: %v", *r)
	}
	got := ranks([]float64{5, 1, 5, 3})
	want := []float64{3.5, 1, 3.5, 2}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("ranks %v, want %v", got, want)
		}
	}
}

func TestRunVFBadInputs(t *testing.T) {
	ckpt := testckpt.Trained(t, 600)
	base := VFOptions{Checkpoint: ckpt, Device: gotch.CPU, Threads: 1, Target: "both", Ratio: 0.1, Images: 10, TailCheck: "auto", Out: t.TempDir()}
	for _, c := range []struct {
		name string
		mod  func(*VFOptions)
		want string
	}{
		{"images beyond the data set", func(o *VFOptions) { o.Images = 5000 }, "only 1000 images"},
		{"ratio 0", func(o *VFOptions) { o.Ratio = 0 }, "sampling ratio 0"},
		{"ratio above 1", func(o *VFOptions) { o.Ratio = 2 }, "sampling ratio 2"},
		{"target", func(o *VFOptions) { o.Target = "biases" }, `target "biases"`},
		{"tail check", func(o *VFOptions) { o.TailCheck = "sometimes" }, `tail check "sometimes"`},
		{"validate", func(o *VFOptions) { o.Validate = 1.5 }, "validate 1.5"},
		{"validate neurons", func(o *VFOptions) { o.Validate, o.ValidateNeurons = 1, -1 }, "validate neurons -1"},
		{"validate operands", func(o *VFOptions) { o.Validate, o.ValidateOperands = 1, -3 }, "validate operands -3"},
		{"reference tail", func(o *VFOptions) { o.Semantics, o.TailCheck = deepvigor.Reference, "on" }, "needs exact semantics"},
		{"missing checkpoint", func(o *VFOptions) { o.Checkpoint = filepath.Join(o.Out, "nope") }, "nope"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := base
			c.mod(&o)
			_, err := RunVF(context.Background(), o)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one containing %q", err, c.want)
			}
		})
	}
}

// A precision target draws more channels where a layer's interval is too wide,
// until it is narrow enough or the layer is complete; layers precise at once
// keep the plain run's draw and LVF, channels drawn again keep their positions,
// and the extra work shows in the cost.
func TestPrecisionDrawsMoreChannels(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a model; skipped in -short mode")
	}
	ckpt := testckpt.Trained(t, 600)
	base := VFOptions{Checkpoint: ckpt, Device: gotch.CPU, Threads: 1, Target: "both", Ratio: 0.1, Images: 20,
		Semantics: deepvigor.Exact, TailCheck: "on", Seed: 2}
	plain := base
	plain.Out = filepath.Join(t.TempDir(), "plain")
	pv, err := RunVF(context.Background(), plain)
	if err != nil {
		t.Fatal(err)
	}
	const precision = 0.003
	o := base
	o.Precision, o.Out = precision, filepath.Join(t.TempDir(), "precise")
	var done, total int64
	o.OnProgress = func(_ string, d, n int64) { done, total = d, n }
	vf, err := RunVF(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if vf.Precision != precision || done != total {
		t.Errorf("precision %v in vf.json; progress ended at %d of %d", vf.Precision, done, total)
	}
	grown := 0
	for i, l := range vf.Layers {
		p := pv.Layers[i]
		hw := halfWidthOf(l)
		t.Logf("%s: %d draws, %d of %d channels (plain run %d), half-width %.4f", l.Name, l.Draws, len(l.ChannelVFs), l.Channels, len(p.ChannelVFs), hw)
		if l.Draws < 1 || len(l.ChannelVFs) < len(p.ChannelVFs) {
			t.Errorf("%s: %d draws, %d channels (plain run %d)", l.Name, l.Draws, len(l.ChannelVFs), len(p.ChannelVFs))
		}
		if len(l.ChannelVFs) < l.Channels && hw > precision {
			t.Errorf("%s: %d of %d channels and half-width %.4f > %.4f", l.Name, len(l.ChannelVFs), l.Channels, hw, precision)
		}
		// Two or three channels that agree are no proof of precision.
		if len(l.ChannelVFs) < min(4, l.Channels) {
			t.Errorf("%s: stopped at %d of %d channels, want at least 4", l.Name, len(l.ChannelVFs), l.Channels)
		}
		if l.Draws == 1 && (*l.LVFWeights != *p.LVFWeights || *l.LVFActivations != *p.LVFActivations) {
			t.Errorf("%s: precise at once, but LVFs %v/%v differ from the plain run's %v/%v", l.Name, *l.LVFWeights, *l.LVFActivations, *p.LVFWeights, *p.LVFActivations)
		}
		if l.Draws > 1 {
			grown++
			if len(l.ChannelVFs) <= len(p.ChannelVFs) {
				t.Errorf("%s: drawn %d times but %d channels, as many as the plain run", l.Name, l.Draws, len(l.ChannelVFs))
			}
			// A channel of the first draw (the plain run's) drawn again keeps its
			// positions, so it is not analysed twice.
			first := map[int][]int{}
			for _, c := range p.ChannelVFs {
				first[c.Index] = c.Positions
			}
			for _, c := range l.ChannelVFs {
				if pos, ok := first[c.Index]; ok && !slices.Equal(pos, c.Positions) {
					t.Errorf("%s: channel %d drawn again at positions %v, first analysed at %v", l.Name, c.Index, c.Positions, pos)
				}
			}
		}
	}
	if grown == 0 {
		t.Error("no layer was drawn again: the test's precision should be too tight for 10% of LeNet-5's small layers")
	}
	if vf.ImageForwards <= pv.ImageForwards {
		t.Errorf("image-forwards %d with the precision target, %d without", vf.ImageForwards, pv.ImageForwards)
	}
	bad := base
	bad.Precision, bad.Out = 1.5, filepath.Join(t.TempDir(), "bad")
	if _, err := RunVF(context.Background(), bad); err == nil || !strings.Contains(err.Error(), "LVF precision 1.5") {
		t.Errorf("precision 1.5: %v", err)
	}
}

func halfWidthOf(l deepvigor.Layer) float64 {
	hw := 0.0
	for _, ci := range []*[2]float64{l.LVFActivationsCI, l.LVFWeightsCI} {
		if ci != nil {
			hw = max(hw, (ci[1]-ci[0])/2)
		}
	}
	return hw
}
