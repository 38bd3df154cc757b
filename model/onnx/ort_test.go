package onnx

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"gorgonia.org/tensor"

	"github.com/faultline/faultline/internal/npz"
	"github.com/faultline/faultline/internal/testdeps"
)

// Independent checkers: ONNX's own checker (Debian's python3-onnx) and ONNX
// Runtime (scripts/ort-run.js with onnxruntime-node from scripts/package.json).
// Tests using them skip when they are not installed, or fail when
// FAULTLINE_REQUIRE_ONNX=1 (as `make test` sets; scripts/setup.sh --test installs
// both).

const python = "/usr/bin/python3"

// scriptsDir is the repository's scripts/ directory.
var scriptsDir = filepath.Join("..", "..", "scripts")

// haveOnnxChecker reports whether python3 imports onnx.
func haveOnnxChecker() bool {
	return exec.Command(python, "-c", "import onnx").Run() == nil
}

// checkModels runs onnx.checker.check_model(full_check=True) on each file.
func checkModels(t *testing.T, paths ...string) {
	t.Helper()
	script := `import sys, onnx
for p in sys.argv[1:]:
    onnx.checker.check_model(onnx.load(p), full_check=True)
`
	cmd := exec.Command(python, append([]string{"-c", script}, paths...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("onnx.checker rejects %v: %v\n%s", paths, err, out)
	}
}

// The messages for a missing checker.
const (
	noChecker = python + " does not import onnx (apt-get install python3-onnx, or scripts/setup.sh --test)"
	noORT     = "node or onnxruntime-node not installed (cd scripts && npm ci --ignore-scripts, or scripts/setup.sh --test)"
)

// requireCheckers fails t when FAULTLINE_REQUIRE_ONNX=1 and either checker is
// missing; otherwise it logs what is missing (the caller skips what it cannot run).
func requireCheckers(t *testing.T, checker, ort bool) {
	t.Helper()
	for _, c := range []struct {
		have bool
		msg  string
	}{{checker, noChecker}, {ort, noORT}} {
		if c.have {
			continue
		}
		if testdeps.Required(testdeps.ONNX) {
			t.Errorf("%s (required: %s=1)", c.msg, testdeps.ONNX)
		} else {
			t.Log(c.msg)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// haveORT reports whether node and onnxruntime-node are installed.
func haveORT() bool {
	if _, err := exec.LookPath("node"); err != nil {
		return false
	}
	_, err := os.Stat(filepath.Join(scriptsDir, "node_modules", "onnxruntime-node"))
	return err == nil
}

// runORT runs model on the images in the .npy file input and returns the logits.
func runORT(t *testing.T, model, input string) *tensor.Dense {
	t.Helper()
	out := filepath.Join(t.TempDir(), "logits.npy")
	cmd := exec.Command("node", filepath.Join(scriptsDir, "ort-run.js"), "--model", model, "--input", input,
		"--out", out, "--threads", "1")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ort-run %s: %v\n%s", model, err, b)
	}
	return readNpy(t, out)
}

func readNpy(t *testing.T, path string) *tensor.Dense {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	x, err := npz.ReadNpy(bytes.NewReader(b), path)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// writeFirst writes the first n rows of x (float32) to a .npy file.
func writeFirst(t *testing.T, x *tensor.Dense, n int) string {
	t.Helper()
	shape := append([]int{n}, x.Shape()[1:]...)
	row := 1
	for _, d := range shape[1:] {
		row *= d
	}
	data := x.Data().([]float32)[:n*row]
	path := filepath.Join(t.TempDir(), "input.npy")
	var buf bytes.Buffer
	if err := npz.WriteNpy(&buf, tensor.New(tensor.WithShape(shape...), tensor.WithBacking(data))); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// maxDiff returns the largest |a-b| over the first n rows and the largest |a|.
func maxDiff(a, b *tensor.Dense, n int) (diff, scale float64, err error) {
	x, y := a.Data().([]float32), b.Data().([]float32)
	if len(a.Shape()) != 2 || len(b.Shape()) != 2 || a.Shape()[1] != b.Shape()[1] || a.Shape()[0] < n || b.Shape()[0] < n {
		return 0, 0, fmt.Errorf("logits of shapes %v and %v", a.Shape(), b.Shape())
	}
	for i := 0; i < n*a.Shape()[1]; i++ {
		diff = max(diff, abs(float64(x[i]-y[i])))
		scale = max(scale, abs(float64(x[i])))
	}
	return diff, scale, nil
}

func abs(v float64) float64 {
	if v < 0 {
		return -v
	}
	return v
}
