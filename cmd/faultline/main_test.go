package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/faultline/faultline/internal/testdeps"
)

// TestMain lets a test re-run this binary as the faultline CLI (CLI_TEST_ARGS holds
// the arguments, one per line), to test process-level behaviour such as start-up.
func TestMain(m *testing.M) {
	if args := os.Getenv("CLI_TEST_ARGS"); args != "" {
		os.Exit(run(strings.Split(args, "\n")))
	}
	os.Exit(m.Run())
}

// cli runs the CLI in-process and returns stdout, stderr and the exit code.
func cli(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	a := &app{stdout: &out, stderr: &errb}
	root := a.rootCommand()
	root.SetArgs(args)
	code := 0
	if err := root.Execute(); err != nil {
		errb.WriteString("faultline: " + err.Error() + "\n")
		code = 1
	}
	return out.String(), errb.String(), code
}

func TestTrainTestImportEndToEnd(t *testing.T) {
	dir := t.TempDir()
	ckpt := filepath.Join(dir, "lenet")
	out, errs, code := cli(t, "train", "--preset", "lenet5-fashion", "--dataset", "synthetic", "--train-limit", "1000",
		"--test-limit", "300", "--epochs", "2", "--seed", "3", "--threads", "1", "--out", ckpt)
	if code != 0 {
		t.Fatalf("train failed: %s", errs)
	}
	if !strings.Contains(out, "test accuracy") || !strings.Contains(errs, "epoch 2/2") {
		t.Errorf("train output:\n%s\n%s", out, errs)
	}
	var meta map[string]any
	b, err := os.ReadFile(filepath.Join(ckpt, "model.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &meta); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"arch", "dataset", "epochs", "seed", "test_accuracy", "timing"} {
		if _, ok := meta[k]; !ok {
			t.Errorf("model.json lacks %q", k)
		}
	}
	if meta["arch"] != "lenet5" || meta["epochs"] != 2.0 || meta["seed"] != 3.0 {
		t.Errorf("metadata %v", meta)
	}
	out, errs, code = cli(t, "test", "--checkpoint", ckpt, "--json", "--limit", "300")
	if code != 0 {
		t.Fatalf("test failed: %s", errs)
	}
	var res struct {
		Accuracy float64 `json:"accuracy"`
		Images   int     `json:"images"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("test --json printed %q: %v", out, err)
	}
	if res.Images != 300 || res.Accuracy != meta["test_accuracy"].(float64) {
		t.Errorf("test --json = %+v, checkpoint says %v", res, meta["test_accuracy"])
	}
	imported := filepath.Join(dir, "imported")
	out, errs, code = cli(t, "import", "--arch", "lenet5", "--weights", filepath.Join(ckpt, "model.npz"), "--dataset", "synthetic", "--out", imported)
	if code != 0 || !strings.Contains(out, "imported lenet5") {
		t.Fatalf("import failed: %s %s", out, errs)
	}
	out2, _, _ := cli(t, "test", "--checkpoint", imported, "--json", "--limit", "300")
	if out2 != strings.Replace(out, ckpt, imported, 1) && !strings.Contains(out2, `"accuracy":`) {
		t.Errorf("imported checkpoint: %s", out2)
	}
	var res2 struct{ Accuracy float64 }
	_ = json.Unmarshal([]byte(out2), &res2)
	if res2.Accuracy != res.Accuracy {
		t.Errorf("imported accuracy %v != trained %v", res2.Accuracy, res.Accuracy)
	}
}

func TestBadInputsGiveClearErrors(t *testing.T) {
	dir := t.TempDir()
	badYAML := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(badYAML, []byte("train:\n  epoch: 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"train", "--preset", "nope", "--out", dir}, "nope"},
		{[]string{"train", "--config", badYAML, "--out", dir}, `"train.epochs"`},
		{[]string{"train", "--lr", "-1", "--out", dir}, "train.lr"},
		{[]string{"train"}, "--out"},
		{[]string{"train", "--device", "cuda", "--dataset", "synthetic", "--out", dir}, "cuda"},
		{[]string{"train", "--dataset", "mnist", "--out", dir}, "mnist"},
		{[]string{"test", "--checkpoint", filepath.Join(dir, "missing")}, "missing"},
		{[]string{"test"}, "--checkpoint"},
		{[]string{"import", "--arch", "alexnet", "--weights", "x.npz", "--out", dir}, "alexnet"},
		{[]string{"import", "--arch", "lenet5", "--weights", filepath.Join(dir, "none.npz"), "--dataset", "synthetic", "--out", dir}, "none.npz"},
		{[]string{"config", "show", "--width", "0"}, "model.width"},
	}
	for _, tc := range cases {
		_, errs, code := cli(t, tc.args...)
		if code == 0 || !strings.Contains(errs, tc.want) || strings.Contains(errs, "goroutine ") {
			t.Errorf("%v: code %d, stderr %q; want an error mentioning %q", tc.args, code, errs, tc.want)
		}
	}
}

func TestConfigShowPrecedence(t *testing.T) {
	t.Setenv("FAULTLINE_TRAIN_EPOCHS", "5")
	out, errs, code := cli(t, "config", "show", "--preset", "vgg11-fashion")
	if code != 0 || !strings.Contains(out, "epochs: 5") || !strings.Contains(out, "arch: vgg11") {
		t.Fatalf("config show: %s %s", out, errs)
	}
	out, _, _ = cli(t, "config", "show", "--epochs", "7")
	if !strings.Contains(out, "epochs: 7") {
		t.Errorf("flag did not override env: %s", out)
	}
	t.Setenv("FAULTLINE_TRAIN_EPOCH", "5")
	if _, errs, code := cli(t, "config", "show"); code == 0 || !strings.Contains(errs, "FAULTLINE_TRAIN_EPOCHS") {
		t.Errorf("unknown env var: %q", errs)
	}
}

// gotch's init used to end the process when $HOME/.cache was not writable.
func TestStartsWithUnwritableHome(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "CLI_TEST_ARGS=version", "HOME=/proc/nonexistent", "GOTCH_CACHE=")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "libtorch") {
		t.Fatalf("version with an unwritable HOME: %v\n%s", err, out)
	}
}

func TestHelpForEveryCommand(t *testing.T) {
	for _, c := range [][]string{{"--help"}, {"train", "--help"}, {"test", "--help"}, {"import", "--help"}, {"config", "show", "--help"}, {"version", "--help"}, {"inject", "--help"}, {"merge", "--help"}, {"importance", "--help"}, {"harden", "--help"}, {"eval", "vf", "--help"}, {"report", "--help"}} {
		out, errs, code := cli(t, c...)
		if code != 0 || !strings.Contains(out, "Usage:") {
			t.Errorf("%v: %d %s %s", c, code, out, errs)
		}
	}
}

// The model.npz of a checkpoint trained on the real Fashion-MNIST gives, rebuilt in
// PyTorch from the .npz alone, the same test accuracy as `faultline test`.
func TestPyTorchAccuracyOfExportedNPZ(t *testing.T) {
	if testing.Short() {
		t.Skip("trains on Fashion-MNIST and runs PyTorch; skipped in -short mode")
	}
	const fashion = "/usr/share/datasets/fashion-mnist"
	if _, err := os.Stat(filepath.Join(fashion, "t10k-images-idx3-ubyte.gz")); err != nil {
		t.Skipf("Fashion-MNIST is not installed (make setup installs it): %v", err)
	}
	if out, err := exec.Command("/usr/bin/python3", "-c", "import torch, numpy").CombinedOutput(); err != nil {
		testdeps.Skipf(t, testdeps.Torch, "python3-torch is not installed (make test installs it): %v: %s", err, out)
	}
	ckpt := filepath.Join(t.TempDir(), "lenet")
	if _, errs, code := cli(t, "train", "--preset", "lenet5-fashion", "--train-limit", "3000", "--test-limit", "2000",
		"--epochs", "1", "--seed", "5", "--out", ckpt, "--quiet"); code != 0 {
		t.Fatalf("train failed: %s", errs)
	}
	out, errs, code := cli(t, "test", "--checkpoint", ckpt, "--json", "--limit", "2000")
	if code != 0 {
		t.Fatalf("test failed: %s", errs)
	}
	var goRes, pyRes struct {
		Accuracy float64 `json:"accuracy"`
		Images   int     `json:"images"`
	}
	if err := json.Unmarshal([]byte(out), &goRes); err != nil {
		t.Fatal(err)
	}
	py, err := exec.Command("/usr/bin/python3", filepath.Join("..", "..", "model", "testdata", "pytorch_zoo.py"),
		"accuracy", ckpt, "--limit", "2000").CombinedOutput()
	if err != nil {
		t.Fatalf("pytorch_zoo.py accuracy: %v\n%s", err, py)
	}
	if err := json.Unmarshal(py, &pyRes); err != nil {
		t.Fatalf("pytorch_zoo.py printed %q: %v", py, err)
	}
	if goRes.Accuracy < 0.5 {
		t.Errorf("faultline test accuracy %v after one epoch on 3000 images: the model did not train", goRes.Accuracy)
	}
	if goRes != pyRes {
		t.Errorf("faultline test %+v, PyTorch on model.npz %+v", goRes, pyRes)
	}
	// With range restriction in model.json (tight enough to change predictions),
	// PyTorch applying the clamps as the README documents gives faultline's
	// accuracy again.
	meta := filepath.Join(ckpt, "model.json")
	b, err := os.ReadFile(meta)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	raw["extra"] = map[string]any{"clamps": map[string]any{"conv1": map[string]any{"min": -0.3, "max": 0.3},
		"fc1": map[string]any{"min": -1, "max": 1}}}
	if b, err = json.Marshal(raw); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(meta, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, errs, code = cli(t, "test", "--checkpoint", ckpt, "--json", "--limit", "2000")
	if code != 0 {
		t.Fatalf("test (clamped) failed: %s", errs)
	}
	clamped := goRes
	if err := json.Unmarshal([]byte(out), &clamped); err != nil {
		t.Fatal(err)
	}
	py, err = exec.Command("/usr/bin/python3", filepath.Join("..", "..", "model", "testdata", "pytorch_zoo.py"),
		"accuracy", ckpt, "--limit", "2000").CombinedOutput()
	if err != nil {
		t.Fatalf("pytorch_zoo.py accuracy (clamped): %v\n%s", err, py)
	}
	var pyClamped struct {
		Accuracy float64 `json:"accuracy"`
		Images   int     `json:"images"`
	}
	if err := json.Unmarshal(py, &pyClamped); err != nil {
		t.Fatalf("pytorch_zoo.py printed %q: %v", py, err)
	}
	if clamped.Accuracy == goRes.Accuracy {
		t.Errorf("the clamps did not change the accuracy (%v): the check cannot tell", clamped.Accuracy)
	}
	if clamped.Accuracy != pyClamped.Accuracy || clamped.Images != pyClamped.Images {
		t.Errorf("clamped: faultline test %+v, PyTorch with the clamps %+v", clamped, pyClamped)
	}
}

// Every command that does something has --json (a machine-readable result on
// stdout) and inherits --quiet; the config listings print valid JSON with it.
func TestEveryCommandHasJSONAndQuiet(t *testing.T) {
	a := &app{stdout: io.Discard, stderr: io.Discard}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Runnable() && c.Name() != "help" && c.Name() != "completion" && c.Parent() != nil && c.Parent().Name() != "completion" {
			if c.Flags().Lookup("json") == nil {
				t.Errorf("%s has no --json", c.CommandPath())
			}
			if c.InheritedFlags().Lookup("quiet") == nil {
				t.Errorf("%s has no --quiet", c.CommandPath())
			}
		}
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(a.rootCommand())
	for _, args := range [][]string{{"config", "show", "--json"}, {"config", "keys", "--json"}, {"config", "presets", "--json"}} {
		out, errs, code := cli(t, args...)
		var v any
		if code != 0 || json.Unmarshal([]byte(out), &v) != nil {
			t.Errorf("%v: exit %d, not JSON: %q %s", args, code, out, errs)
		}
	}
}
