package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/faultline/faultline/fault"
	"github.com/faultline/faultline/internal/testckpt"
)

func TestImportanceEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a model; skipped in -short mode")
	}
	ckpt := testckpt.Trained(t, 500)
	out := filepath.Join(t.TempDir(), "is")
	args := []string{"importance", "--checkpoint", ckpt, "--budget", "300", "--images", "50", "--sens-batches", "1",
		"--m", "5", "--threads", "1", "--seed", "3", "--out", out}
	stdout, errs, code := cli(t, args...)
	if code != 0 {
		t.Fatalf("importance failed: %s", errs)
	}
	t.Logf("stdout:\n%s", stdout)
	for _, want := range []string{"precision@100", "injections to 5 critical faults", "VF: IS", "protecting 20% of the elements"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	b, err := os.ReadFile(filepath.Join(out, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s map[string]any
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"kind", "schema_version", "precision_at_k", "injections_to_m_critical", "vf_is", "vf_is_ci95",
		"vf_uniform", "vf_uniform_ci95", "ess", "protection", "images_sha256"} {
		if _, ok := s[k]; !ok {
			t.Errorf("summary.json lacks %q", k)
		}
	}
	p := s["precision_at_k"].(map[string]any)
	for _, sampler := range []string{"is", "uniform"} {
		if _, ok := p[sampler].(map[string]any)["100"]; !ok {
			t.Errorf("precision_at_k.%s lacks k = 100: %v", sampler, p[sampler])
		}
	}
	// Every critical fault replays through the engine's reader, and the ranking
	// covers every unit (LeNet-5 at width 1: 6+16+120+84+10 filters).
	crit, err := fault.ReadFaults(filepath.Join(out, "critical.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range crit {
		if err := f.Validate(); err != nil || f.Outcome == nil {
			t.Fatalf("critical fault %+v: %v", f, err)
		}
	}
	csv, err := os.ReadFile(filepath.Join(out, "ranking.csv"))
	if err != nil {
		t.Fatal(err)
	}
	if rows := strings.Count(string(csv), "\n") - 1; rows != 236 {
		t.Errorf("ranking.csv has %d rows, want 236", rows)
	}
	// ranking.json orders the units by their lower confidence bound.
	rb, err := os.ReadFile(filepath.Join(out, "ranking.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rk struct {
		Units []struct {
			Score      float64  `json:"score"`
			ScoreLower *float64 `json:"score_lower"`
			Rank       int      `json:"rank"`
		} `json:"units"`
	}
	if err := json.Unmarshal(rb, &rk); err != nil {
		t.Fatal(err)
	}
	for i, u := range rk.Units {
		if u.ScoreLower == nil || *u.ScoreLower > u.Score || u.Rank != i+1 || i > 0 && *u.ScoreLower > *rk.Units[i-1].ScoreLower {
			t.Fatalf("ranking.json unit %d (rank %d): score %v, lower bound %v, after %v", i, u.Rank, u.Score, u.ScoreLower, rk.Units[max(i-1, 0)].ScoreLower)
		}
	}
	// The same seed gives the same summary, timings aside, and the same ranking
	// (Kendall's tau 1 against the first run's).
	out2 := filepath.Join(t.TempDir(), "is2")
	args[len(args)-1] = out2
	stdout2, errs, code := cli(t, append(args, "--compare-ranking", filepath.Join(out, "ranking.json"))...)
	if code != 0 {
		t.Fatalf("second run failed: %s", errs)
	}
	if !strings.Contains(stdout2, "Kendall tau 1.000") {
		t.Errorf("same seed, ranking comparison: %s", stdout2)
	}
	b2, err := os.ReadFile(filepath.Join(out2, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	if stripTiming(t, b) != stripTiming(t, b2) {
		t.Error("two runs with the same seed differ")
	}
}

// stripTiming re-encodes a summary without its timing and checkpoint path.
func stripTiming(t *testing.T, b []byte) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "timing")
	delete(m, "ranking_stability")
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func TestImportanceBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"importance", "--out", "x"}, "--checkpoint DIR is required"},
		{[]string{"importance", "--checkpoint", "x"}, "--out DIR is required"},
		{[]string{"importance", "--checkpoint", "x", "--out", "y", "--target", "biases"}, `unknown target "biases"`},
		{[]string{"importance", "--checkpoint", "x", "--out", "y", "--budget", "0"}, "budget 0"},
		{[]string{"importance", "--checkpoint", "x", "--out", "y", "--alpha", "2"}, "alpha 2 outside [0, 1]"},
	} {
		_, errs, code := cli(t, c.args...)
		if code == 0 || !strings.Contains(errs, c.want) || strings.Contains(errs, "goroutine") {
			t.Errorf("%v: exit %d, stderr %q, want %q", c.args, code, errs, c.want)
		}
	}
}
