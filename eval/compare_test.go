package eval

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/faultline/faultline/eval/deepvigor"
)

func ptr[T any](v T) *T { return &v }

// writeVF writes a minimal vf.json with the given ratio and per-layer weight
// LVFs (and intervals when ci > 0) into a new directory.
func writeVF(t *testing.T, ratio float64, seed int64, lvf map[string]float64, ci float64, edit func(*VF)) string {
	t.Helper()
	vf := &VF{Kind: VFKind, SchemaVersion: VFSchema, Checkpoint: "runs/m", Arch: "lenet5", Dataset: "fashion-mnist", Images: 100,
		GoldenAccuracy: 0.9, Target: "weights", Semantics: deepvigor.Exact, TailCheck: true, SamplingRatio: ratio, Seed: seed, PerOctave: 1}
	for _, name := range []string{"conv1", "fc1"} {
		l := deepvigor.Layer{Name: name, LVFWeights: ptr(lvf[name]), ChannelVFs: make([]deepvigor.Channel, 2)}
		if ci > 0 {
			l.LVFWeightsCI = &[2]float64{lvf[name] - ci, lvf[name] + ci}
		}
		vf.Layers = append(vf.Layers, l)
	}
	if edit != nil {
		edit(vf)
	}
	dir := t.TempDir()
	b, err := json.Marshal(vf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, VFFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestCompareSampledWithComplete(t *testing.T) {
	full := writeVF(t, 1, 1, map[string]float64{"conv1": 0.020, "fc1": 0.010}, 0, nil)
	a := writeVF(t, 0.1, 1, map[string]float64{"conv1": 0.023, "fc1": 0.010}, 0.004, nil) // 0.3 pp, in CI; 0
	b := writeVF(t, 0.1, 2, map[string]float64{"conv1": 0.011, "fc1": 0.012}, 0.001, nil) // 0.9 pp, out; 0.2 pp, out
	c, err := Compare(full, []string{a, b}, DefaultTolerance)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Runs) != 2 || len(c.Summary) != 1 || len(c.Layers) != 2 {
		t.Fatalf("comparison %+v", c)
	}
	d := c.Runs[1].Layers[0]
	if d.Layer != "conv1" || math.Abs(d.Diff-0.009) > 1e-12 || d.InCI == nil || *d.InCI {
		t.Errorf("run 2 conv1: %+v", d)
	}
	if ls := c.Layers[0].Stats; len(ls) != 1 || ls[0].Cases != 2 || math.Abs(ls[0].MaxDiff-0.009) > 1e-12 ||
		math.Abs(ls[0].MeanDiff-0.006) > 1e-12 || ls[0].WithCI != 2 || ls[0].InCI != 1 || ls[0].UnderTolerance != 1 {
		t.Errorf("conv1 across runs: %+v", ls)
	}
	s := c.Summary[0]
	if s.Target != "weights" || s.Cases != 4 || math.Abs(s.MaxDiff-0.009) > 1e-12 || !strings.HasPrefix(s.MaxAt, "conv1 (") ||
		math.Abs(s.MeanDiff-(0.003+0+0.009+0.002)/4) > 1e-12 || s.UnderTolerance != 3 || s.WithCI != 4 || s.InCI != 2 {
		t.Errorf("summary %+v", s)
	}
}

func TestCompareRefusesMismatches(t *testing.T) {
	lvf := map[string]float64{"conv1": 0.02, "fc1": 0.01}
	full := writeVF(t, 1, 1, lvf, 0, nil)
	for _, tc := range []struct {
		name     string
		complete string
		sampled  func() string
		want     string
	}{
		{"tail check differs", full, func() string { return writeVF(t, 0.1, 1, lvf, 0, func(v *VF) { v.TailCheck = false }) }, "tail_check false, the complete run's true"},
		{"other checkpoint", full, func() string { return writeVF(t, 0.1, 1, lvf, 0, func(v *VF) { v.Checkpoint = "runs/x" }) }, "checkpoint runs/x"},
		{"complete is sampled", writeVF(t, 0.5, 1, lvf, 0, nil), func() string { return writeVF(t, 0.1, 1, lvf, 0, nil) }, "sampling ratio 0.5"},
		{"sampled is complete", full, func() string { return writeVF(t, 1, 2, lvf, 0, nil) }, "is a complete analysis too"},
		{"unknown layer", full, func() string {
			return writeVF(t, 0.1, 1, lvf, 0, func(v *VF) { v.Layers[1].Name = "fc9" })
		}, "layer fc9 is not in"},
		{"not a vf.json", full, func() string {
			d := t.TempDir()
			os.WriteFile(filepath.Join(d, VFFile), []byte(`{"kind":"faultline.summary"}`), 0o644)
			return d
		}, `kind "faultline.summary"`},
		{"missing", full, func() string { return filepath.Join(t.TempDir(), "none") }, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compare(tc.complete, []string{tc.sampled()}, DefaultTolerance)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := Compare(full, nil, DefaultTolerance); err == nil {
		t.Error("no sampled run: no error")
	}
	if _, err := Compare(full, []string{full}, 0); err == nil || !strings.Contains(err.Error(), "tolerance 0") {
		t.Errorf("tolerance 0: %v", err)
	}
}
