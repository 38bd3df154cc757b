package model

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// model.json keeps its timing in a timing object; checkpoints written before it
// had train_seconds at the top level, which is read into Timing.
func TestMetadataTiming(t *testing.T) {
	old, err := os.ReadFile(filepath.Join("testdata", "lenet5.model.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(old), `"train_seconds": 67.757061748`) || strings.Contains(string(old), `"timing"`) {
		t.Fatal("testdata/lenet5.model.json is no longer an old-style model.json")
	}
	meta, err := ParseMetadata(old, "old")
	if err != nil {
		t.Fatal(err)
	}
	if meta.Timing.TrainSeconds != 67.757061748 {
		t.Errorf("old train_seconds read as %v", meta.Timing.TrainSeconds)
	}
	b, err := json.Marshal(meta)
	if err != nil {
		t.Fatal(err)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		t.Fatal(err)
	}
	if _, ok := top["train_seconds"]; ok {
		t.Errorf("train_seconds written at the top level: %s", b)
	}
	if got := string(top["timing"]); got != `{"train_seconds":67.757061748}` {
		t.Errorf("timing written as %s", got)
	}
	// a new file's timing wins over a stray top-level field
	both := strings.Replace(string(old), `"train_seconds": 67.757061748`, `"train_seconds":1,"timing":{"train_seconds":2}`, 1)
	if meta, err = ParseMetadata([]byte(both), "both"); err != nil || meta.Timing.TrainSeconds != 2 {
		t.Errorf("timing and train_seconds: %v, %v", meta.Timing, err)
	}
	neg := strings.Replace(string(old), `"train_seconds": 67.757061748`, `"timing":{"train_seconds":-1}`, 1)
	if _, err := ParseMetadata([]byte(neg), "neg"); err == nil || !strings.Contains(err.Error(), "timing.train_seconds") {
		t.Errorf("negative timing.train_seconds: %v", err)
	}
}

// ContentSHA256 ignores the timing and sees the weights and every other field:
// two saves of one training run (same seed) resume each other's journals.
func TestContentSHA256(t *testing.T) {
	old, err := os.ReadFile(filepath.Join("testdata", "lenet5.model.json"))
	if err != nil {
		t.Fatal(err)
	}
	write := func(meta, weights string) string {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, MetadataFile), []byte(meta), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, WeightsFile), []byte(weights), 0o644); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	sum := func(dir string) string {
		s, err := ContentSHA256(dir)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	base := sum(write(string(old), "weights"))
	for _, c := range []struct {
		name, meta, weights string
		same                bool
	}{
		{"timing", strings.Replace(string(old), `"train_seconds": 67.757061748`, `"timing":{"train_seconds":12.5}`, 1), "weights", true},
		{"weights (no sums in model.json)", string(old), "other weights", false},
		{"clamps", strings.Replace(string(old), `"seed": 1,`, `"seed": 1, "extra": {"clamps": {"conv1": {"min": 0, "max": 6}}},`, 1), "weights", false},
		{"accuracy", strings.Replace(string(old), `"test_accuracy": 0.9036`, `"test_accuracy": 0.9037`, 1), "weights", false},
	} {
		if got := sum(write(c.meta, c.weights)); (got == base) != c.same {
			t.Errorf("%s: content SHA-256 %s, base %s; want same = %v", c.name, got, base, c.same)
		}
	}
	if _, err := ContentSHA256(t.TempDir()); err == nil || !strings.Contains(err.Error(), MetadataFile) {
		t.Errorf("no checkpoint: %v", err)
	}
}
