package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/faultline/faultline/internal/testckpt"
	"github.com/faultline/faultline/internal/testfs"
)

// runChild runs the CLI in a child process (so that an abort in libtorch would
// show as a crash, not take the test binary down) and returns its exit code and
// combined output.
func runChild(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := cliCommand(context.Background(), args)
	out, err := cmd.CombinedOutput()
	code := cmd.ProcessState.ExitCode()
	if err != nil && code <= 0 {
		t.Fatalf("running the CLI: %v\n%s", err, out)
	}
	return code, string(out)
}

// oneLineError checks a failed run: exit code 1, one line "faultline: ..." that
// names path, and no panic or libtorch trace.
func oneLineError(t *testing.T, code int, out, path string) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	last := lines[len(lines)-1]
	t.Logf("exit %d: %s", code, last)
	if code != 1 || !strings.HasPrefix(last, "faultline: ") || !strings.Contains(last, path) {
		t.Errorf("exit %d, last line %q; want exit 1 and an error naming %s\n%s", code, last, path, out)
	}
	for _, bad := range []string{"panic", "goroutine ", "terminate called", "SIGABRT", "frame #"} {
		if strings.Contains(out, bad) {
			t.Errorf("output holds %q:\n%s", bad, out)
		}
	}
}

// TestTrainOutOfSpace trains into a directory on a disk too small for the
// checkpoint: a one-line error naming the directory, no half checkpoint.
func TestTrainOutOfSpace(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a model")
	}
	disk := testfs.Full(t, 128<<10)
	out := filepath.Join(disk, "lenet")
	code, text := runChild(t, "train", "--preset", "lenet5-fashion", "--dataset", "synthetic", "--train-limit", "200",
		"--test-limit", "100", "--epochs", "1", "--threads", "1", "--quiet", "--out", out)
	oneLineError(t, code, text, out)
	if !strings.Contains(text, "no space left") {
		t.Errorf("the error does not say the disk is full:\n%s", text)
	}
	if _, err := os.Stat(filepath.Join(out, "model.json")); err == nil {
		t.Error("model.json written although the checkpoint is incomplete")
	}
	entries, _ := os.ReadDir(out)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp") {
			t.Errorf("temporary file left: %s", e.Name())
		}
	}
}

// TestInjectReadOnlyOut runs a campaign whose --out is on a read-only file
// system: a one-line error naming the directory, and what was there is kept.
func TestInjectReadOnlyOut(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a model")
	}
	ckpt := testckpt.Trained(t, 200)
	ro := testfs.ReadOnly(t, func(dir string) {
		if err := os.WriteFile(filepath.Join(dir, "keep.txt"), []byte("kept"), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	for _, out := range []string{ro, filepath.Join(ro, "fi")} {
		code, text := runChild(t, "inject", "--checkpoint", ckpt, "--dataset", "synthetic", "--target", "weights",
			"--sampler", "uniform", "--faults", "20", "--images", "10", "--threads", "1", "--quiet", "--out", out)
		oneLineError(t, code, text, out)
	}
	if b, err := os.ReadFile(filepath.Join(ro, "keep.txt")); err != nil || string(b) != "kept" {
		t.Errorf("keep.txt: %q, %v", b, err)
	}
}

// TestReadOnlyOutFailsBeforeWork: train, eval vf and harden check their --out
// before the long work, so a read-only output directory fails at once, with a
// one-line error naming it (not after an hour of training).
func TestReadOnlyOutFailsBeforeWork(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a model")
	}
	ckpt := testckpt.Trained(t, 200)
	ro := testfs.ReadOnly(t, func(string) {})
	out := filepath.Join(ro, "x")
	for _, args := range [][]string{
		{"train", "--preset", "lenet5-fashion", "--dataset", "synthetic", "--train-limit", "200", "--test-limit", "100", "--epochs", "50"},
		{"eval", "vf", "--checkpoint", ckpt, "--dataset", "synthetic"},
		{"harden", "--checkpoint", ckpt, "--dataset", "synthetic"},
		{"importance", "--checkpoint", ckpt, "--dataset", "synthetic"},
	} {
		start := time.Now()
		code, text := runChild(t, append(args, "--threads", "1", "--quiet", "--out", out)...)
		oneLineError(t, code, text, out)
		// 50 epochs or a whole analysis would take minutes; the check takes
		// the start-up time of the process.
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("%s: failed only after %v", args[0], d)
		}
	}
}
