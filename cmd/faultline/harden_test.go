package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/faultline/faultline/internal/testckpt"
)

func TestHardenBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"harden", "--out", "x"}, "--checkpoint DIR is required"},
		{[]string{"harden", "--checkpoint", "x"}, "--out DIR is required"},
		{[]string{"harden", "--checkpoint", "x", "--out", "y", "--ber", "1e-5,lots"}, "--ber"},
		{[]string{"harden", "--checkpoint", "x", "--out", "y", "--ber", "2"}, "harden.ber[0]"},
		{[]string{"harden", "--checkpoint", "x", "--out", "y", "--config", "testdata/harden-bad.yaml"}, "harden.epochs"},
		{[]string{"harden", "--checkpoint", "x", "--out", "y", "--config", "testdata/harden-unknown.yaml"}, "harden.clamp"},
		{[]string{"harden", "--checkpoint", "x", "--out", "y", "--clamps=false", "--fat=false", "--weight-clamps=false"}, "nothing to do"},
		{[]string{"harden", "--checkpoint", "/nonexistent/ckpt", "--out", t.TempDir()}, "/nonexistent/ckpt"},
	} {
		_, errs, code := cli(t, c.args...)
		if code == 0 || !strings.Contains(errs, c.want) || strings.Contains(errs, "goroutine") {
			t.Errorf("%v: exit %d, stderr %q, want %q", c.args, code, errs, c.want)
		}
	}
}

// A --config file sets the recipe, and flags override it.
func TestHardenConfigFileAndFlags(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a model; skipped in -short mode")
	}
	ckpt := testckpt.Trained(t, 500)
	dir := t.TempDir()
	conf := filepath.Join(dir, "harden.yaml")
	yaml := "harden:\n  fat: false\n  profile_images: 200\n  vf_ratio: 0.2\n  vf_images: 20\n  ber: [1e-3]\n  ber_trials: 2\n  ber_images: 40\n"
	if err := os.WriteFile(conf, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "hard")
	stdout, errs, code := cli(t, "harden", "--checkpoint", ckpt, "--config", conf, "--ber-trials", "3", "--threads", "1", "--out", out)
	if code != 0 {
		t.Fatalf("harden failed: %s", errs)
	}
	for _, want := range []string{"clean accuracy", "95% interval", "MVF total", "BER 0.001 mean accuracy", "range restriction: 5 layers clamped (bounds from 200 training images)"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	b, err := os.ReadFile(filepath.Join(out, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Recipe struct {
			FAT *json.RawMessage `json:"fat"`
		} `json:"recipe"`
		Before struct {
			BER map[string]struct {
				Trials int `json:"trials"`
			} `json:"ber"`
		} `json:"before"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Recipe.FAT != nil || len(rep.Before.BER) != 1 || rep.Before.BER["0.001"].Trials != 3 {
		t.Errorf("recipe fat %v, ber %+v: want no FAT and 3 trials at 0.001", rep.Recipe.FAT, rep.Before.BER)
	}
}
