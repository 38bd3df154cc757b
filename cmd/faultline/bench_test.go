package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/faultline/faultline/fault"
	"github.com/faultline/faultline/internal/testckpt"
)

func TestBenchFI(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	if _, errs, code := cli(t, "bench", "fi", "--checkpoint", missing); code == 0 || !strings.Contains(errs, missing) {
		t.Errorf("missing checkpoint: exit %d, stderr %q does not name %s", code, errs, missing)
	}
	if testing.Short() {
		t.Skip("loads a model")
	}
	ckpt := testckpt.Untrained(t)
	args := []string{"bench", "fi", "--checkpoint", ckpt, "--images", "10", "--faults", "60", "--reference-faults", "10", "--agree", "20",
		"--batch", "32", "--warmup", "1", "--golden-images", "64", "--threads", "1"}
	out, errs, code := cli(t, args...)
	if code != 0 {
		t.Fatalf("bench fi: %s", errs)
	}
	for _, want := range []string{"reference faults/s", "batched/reference", "lenet5     weights", "lenet5     activations",
		"one-fault-per-sample batch costs", "than the golden batch", "of 20 faults differ", "warm-up"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errs, "bench: "+ckpt+" weights: reference, 10 faults") {
		t.Errorf("progress:\n%s", errs)
	}
	out, errs, code = cli(t, append(args, "--json", "--agree", "0", "-q")...)
	if code != 0 || errs != "" {
		t.Fatalf("bench fi --json -q: exit %d, stderr %q", code, errs)
	}
	var r fault.BenchResult
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	if r.Kind != fault.BenchKind || len(r.Rows) != 2 || r.Rows[0].Batched.Faults != 60 || r.Rows[1].Agreement != nil {
		t.Errorf("JSON result: %s", out)
	}
}
