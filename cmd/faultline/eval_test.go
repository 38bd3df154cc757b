package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEvalVFEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a model; skipped in -short mode")
	}
	dir := t.TempDir()
	ckpt := filepath.Join(dir, "lenet")
	if _, errs, code := cli(t, "train", "--preset", "lenet5-fashion", "--dataset", "synthetic", "--train-limit", "500",
		"--test-limit", "100", "--epochs", "1", "--seed", "3", "--threads", "1", "--out", ckpt, "--quiet"); code != 0 {
		t.Fatalf("train failed: %s", errs)
	}
	out := filepath.Join(dir, "vf")
	stdout, errs, code := cli(t, "eval", "vf", "--checkpoint", ckpt, "--images", "10", "--sampling-ratio", "0.1",
		"--validate", "0.05", "--validate-operands", "16", "--threads", "1", "--seed", "4", "--out", out)
	if code != 0 {
		t.Fatalf("eval vf failed: %s", errs)
	}
	t.Logf("stdout:\n%s", stdout)
	for _, want := range []string{"exact semantics", "conv1", "fc3", "MVF (conv+linear)", "MVF (paper, conv)", "image-forwards",
		"data-aware SFI at 95%", "validation weights (filter FI)", "wrote " + filepath.Join(out, "vf.json")} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if !strings.Contains(errs, "analysis") || !strings.Contains(errs, "validation") {
		t.Errorf("no progress on stderr: %q", errs)
	}
	b, err := os.ReadFile(filepath.Join(out, "vf.json"))
	if err != nil {
		t.Fatal(err)
	}
	var vf struct {
		Kind      string  `json:"kind"`
		Precision float64 `json:"lvf_precision"`
		Layers    []struct {
			Name     string      `json:"name"`
			Out      int         `json:"out_channels"`
			Draws    int         `json:"draws"`
			LVFAct   *float64    `json:"lvf_activations"`
			LVFW     *float64    `json:"lvf_weights"`
			CIAct    *[2]float64 `json:"lvf_activations_ci95"`
			CIW      *[2]float64 `json:"lvf_weights_ci95"`
			Channels []struct {
				Index int      `json:"index"`
				CVFA  *float64 `json:"cvf_activations"`
				CVFW  *float64 `json:"cvf_weights"`
			} `json:"channels"`
		} `json:"layers"`
		Validation struct {
			MAE *float64 `json:"mae_cvf"`
		} `json:"validation"`
	}
	if err := json.Unmarshal(b, &vf); err != nil {
		t.Fatal(err)
	}
	if vf.Kind != "faultline.vf" || len(vf.Layers) != 5 || vf.Layers[0].LVFAct == nil || vf.Layers[0].LVFW == nil ||
		len(vf.Layers[0].Channels) < 2 || vf.Layers[0].Channels[0].CVFW == nil || vf.Validation.MAE == nil {
		t.Errorf("vf.json: %s", b[:min(len(b), 400)])
	}
	// By default every sampled layer ends with both LVF intervals within
	// +-0.5 pp, or analysed completely.
	if vf.Precision != 0.005 {
		t.Errorf("lvf_precision %g, want the default 0.005", vf.Precision)
	}
	for _, l := range vf.Layers {
		if len(l.Channels) == l.Out {
			continue
		}
		if l.Draws < 1 {
			t.Errorf("%s: draws %d, want at least 1 under the default precision", l.Name, l.Draws)
		}
		for _, c := range []struct {
			v  *float64
			ci *[2]float64
		}{{l.LVFAct, l.CIAct}, {l.LVFW, l.CIW}} {
			if c.v == nil || c.ci == nil || *c.v-c.ci[0] > 0.005+1e-12 || c.ci[1]-*c.v > 0.005+1e-12 {
				t.Errorf("%s: %d of %d channels, LVF %v interval %v: wider than +-0.5 pp", l.Name, len(l.Channels), l.Out, c.v, c.ci)
			}
		}
	}
	// --json prints the same result on stdout.
	js, _, code := cli(t, "eval", "vf", "--checkpoint", ckpt, "--images", "10", "--target", "weights", "--threads", "1", "--json", "-q", "--out", filepath.Join(dir, "vf2"))
	if code != 0 || !strings.HasPrefix(js, "{") || !strings.Contains(js, `"kind":"faultline.vf"`) {
		t.Errorf("--json output: %.200s", js)
	}
}

func TestEvalVFBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"eval", "vf", "--out", "x"}, "--checkpoint DIR is required"},
		{[]string{"eval", "vf", "--checkpoint", "x"}, "--out DIR is required"},
		{[]string{"eval", "vf", "--checkpoint", "x", "--out", "y", "--semantics", "loose"}, `semantics "loose"`},
		{[]string{"eval", "vf", "--checkpoint", "x", "--out", "y", "--device", "tpu"}, "tpu"},
	} {
		_, errs, code := cli(t, c.args...)
		if code == 0 || !strings.Contains(errs, c.want) || strings.Contains(errs, "goroutine") {
			t.Errorf("%v: exit %d, stderr %q, want %q", c.args, code, errs, c.want)
		}
	}
}

// eval compare on the vf.json files in testdata/compare: a complete run
// (conv1 2.0%, fc1 1.0%) and two sampled seeds (conv1 off by 0.3 and 0.9 pp, fc1
// by 0 and 0.2 pp; seed 2's intervals miss).
func TestEvalCompare(t *testing.T) {
	td := filepath.Join("testdata", "compare")
	out, errs, code := cli(t, "eval", "compare", "--complete", filepath.Join(td, "complete"), filepath.Join(td, "seed1"), filepath.Join(td, "seed2", "vf.json"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{
		"conv1              weights            2.000%       0.600 pp       0.900 pp      1/2",
		"fc1                weights            1.000%       0.100 pp       0.200 pp      1/2",
		"weights: 4 layer x run cases, mean |diff| 0.350 pp, largest 0.900 pp at conv1 (testdata/compare/seed2/vf.json); 3 of 4 under 0.50 pp; the interval held the complete LVF in 2 of 4",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	js, _, code := cli(t, "eval", "compare", "--json", "--tolerance", "0.001", "--complete", filepath.Join(td, "complete"), filepath.Join(td, "seed1"))
	var c struct {
		Kind    string `json:"kind"`
		Summary []struct {
			Cases int `json:"cases"`
			Under int `json:"under_tolerance"`
		} `json:"summary"`
	}
	if code != 0 || json.Unmarshal([]byte(js), &c) != nil || c.Kind != "faultline.vf_sampling_comparison" || len(c.Summary) != 1 || c.Summary[0].Cases != 2 || c.Summary[0].Under != 1 {
		t.Errorf("--json: exit %d, %s", code, js)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"eval", "compare", filepath.Join(td, "seed1")}, "--complete DIR is required"},
		{[]string{"eval", "compare", "--complete", filepath.Join(td, "complete")}, "at least one sampled run"},
		{[]string{"eval", "compare", "--complete", filepath.Join(td, "seed1"), filepath.Join(td, "seed2")}, "sampling ratio 0.1; the complete analysis has 1"},
		{[]string{"eval", "compare", "--complete", filepath.Join(td, "complete"), filepath.Join(td, "none")}, "none"},
	} {
		_, errs, code := cli(t, tc.args...)
		if code == 0 || !strings.Contains(errs, tc.want) || strings.Contains(errs, "goroutine") {
			t.Errorf("%v: exit %d, stderr %q, want %q", tc.args, code, errs, tc.want)
		}
	}
}
