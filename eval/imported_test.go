package eval

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/faultline/faultline/datasets"
	"github.com/faultline/faultline/fault"
	"github.com/faultline/faultline/internal/testgraph"
	"github.com/faultline/faultline/model"
)

// importedLoaded builds the model of an ONNX file (folded for 1x28x28 images)
// with a synthetic test split.
func importedLoaded(t *testing.T, path string, images int) *fault.Loaded {
	t.Helper()
	m := testgraph.FromONNX(t, path)
	set := datasets.Synthetic(datasets.SyntheticConfig{N: images, C: 1, H: 28, W: 28, Classes: 10, Seed: 3, Split: datasets.Test})
	stats := datasets.ComputeStats(set)
	meta := model.Metadata{Arch: model.GraphArch, Dataset: "synthetic"}
	meta.Normalization.Mean, meta.Normalization.Std = stats.Mean, stats.Std
	return &fault.Loaded{Model: m, Meta: meta, Dataset: "synthetic", Set: set, Stats: stats, Checkpoint: filepath.Base(path)}
}

// eval vf on an imported graph: smallnet's depthwise conv (16 groups) and the
// pointwise conv after it, both inside a stage without a lead layer, are
// analysed, and the analysis agrees with exhaustive FI on every channel
// (weights: every bit of every weight of the filter; activations: every bit of
// every MAC operand of a neuron per channel).
func TestVFImportedSmallnet(t *testing.T) {
	if testing.Short() {
		t.Skip("runs DeepVigor+ and FI on an imported graph")
	}
	l := importedLoaded(t, "../model/testdata/onnx/smallnet-opset13-eval.onnx", 20)
	for _, s := range l.Model.Sites() {
		if st, _ := l.Model.StageOf(s.Name); (s.Name == "dw.0" || s.Name == "pw.0") && l.Model.Lead(st) != "" {
			t.Fatalf("%s is in stage %d led by %s: the test is about stages without a lead", s.Name, st, l.Model.Lead(st))
		}
	}
	o := VFOptions{Threads: 1, Target: "both", Ratio: 1, Images: 20, Seed: 2, Layers: []string{"dw.0", "pw.0"},
		Validate: 1, Out: t.TempDir()}
	vf, err := RunVFOn(context.Background(), l, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(vf.Layers) != 2 || vf.Layers[0].Name != "dw.0" || vf.Layers[1].Name != "pw.0" {
		t.Fatalf("layers %+v", vf.Layers)
	}
	v := vf.Validation
	if v == nil || v.Weights == nil || v.Activations == nil || !v.Exhaustive {
		t.Fatalf("validation %+v", v)
	}
	for _, la := range v.Layers {
		t.Logf("%s: weights n %d MAE %.4f max %.4f (DV %.4f, FI %.4f); activations n %d MAE %.4f max %.4f (DV %.4f, FI %.4f)", la.Layer,
			la.Weights.N, la.Weights.MAE, la.Weights.Max, la.Weights.MeanDV, la.Weights.MeanFI,
			la.Activations.N, la.Activations.MAE, la.Activations.Max, la.Activations.MeanDV, la.Activations.MeanFI)
		if la.Weights.N != 16 || la.Activations.N != 16 {
			t.Errorf("%s: %d filters and %d neurons validated, want 16 of each", la.Layer, la.Weights.N, la.Activations.N)
		}
		if la.Weights.MAE > 0.01 || la.Activations.MAE > 0.01 {
			t.Errorf("%s: DV vs FI MAE weights %.4f, activations %.4f: want at most 1 pp", la.Layer, la.Weights.MAE, la.Activations.MAE)
		}
	}
}
