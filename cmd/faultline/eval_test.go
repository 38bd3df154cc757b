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
		Kind   string `json:"kind"`
		Layers []struct {
			Name     string   `json:"name"`
			LVFAct   *float64 `json:"lvf_activations"`
			LVFW     *float64 `json:"lvf_weights"`
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
		len(vf.Layers[0].Channels) != 2 || vf.Layers[0].Channels[0].CVFW == nil || vf.Validation.MAE == nil {
		t.Errorf("vf.json: %s", b[:min(len(b), 400)])
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
