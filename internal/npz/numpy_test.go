package npz

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"math"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gorgonia.org/tensor"

	"github.com/faultline/faultline/internal/testdeps"
)

// systemPython is Debian's interpreter, which has numpy; the python3 first in PATH
// may be another one without it.
const systemPython = "/usr/bin/python3"

// dumpPy prints, for every array of the archive sys.argv[1] in file order: its name,
// little-endian dtype, shape, C-order little-endian data in hex, np.save's bytes for
// it in hex, and whether this numpy pads headers for a growing first axis (the layout
// encodeHeader copies).
const dumpPy = `
import io, json, sys
import numpy as np
out = []
with np.load(sys.argv[1]) as z:
    for k in z.files:
        a = z[k]
        a = a.astype(a.dtype.newbyteorder('<'), order='C')
        b = io.BytesIO()
        np.save(b, a)
        out.append({"name": k, "descr": a.dtype.str, "shape": list(a.shape),
                    "data": a.tobytes().hex(), "npy": b.getvalue().hex(),
                    "growth": hasattr(np.lib.format, "GROWTH_AXIS_MAX_DIGITS")})
print(json.dumps(out))
`

// pyArray is one record printed by dumpPy.
type pyArray struct {
	Name   string
	Descr  string
	Shape  []int
	Data   string
	Npy    string
	Growth bool
}

// needNumpy skips the test unless systemPython can import numpy.
func needNumpy(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs Python; skipped in -short mode")
	}
	out, err := exec.Command(systemPython, "-c", "import numpy").CombinedOutput()
	if err != nil {
		testdeps.Skipf(t, testdeps.Torch, "%s cannot import numpy (scripts/setup.sh --test installs python3-numpy): %v: %s",
			systemPython, err, bytes.TrimSpace(out))
	}
}

// python runs a script with arguments and returns its standard output.
func python(t *testing.T, script string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(systemPython, append([]string{"-c", script}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, stderr.String())
	}
	return out
}

// numpyView loads path in NumPy and returns what dumpPy prints.
func numpyView(t *testing.T, path string) []pyArray {
	t.Helper()
	var arrays []pyArray
	if err := json.Unmarshal(python(t, dumpPy, path), &arrays); err != nil {
		t.Fatal(err)
	}
	return arrays
}

// compareWithNumpy checks our arrays against NumPy's view of the same archive.
func compareWithNumpy(t *testing.T, ours []Array, theirs []pyArray) {
	t.Helper()
	if len(ours) != len(theirs) {
		t.Fatalf("Go has %d arrays, NumPy %d", len(ours), len(theirs))
	}
	for i, py := range theirs {
		a := ours[i]
		d, _ := dtypeOf(a.T.Dtype())
		if a.Name != py.Name || d.descr() != py.Descr || formatShape(a.T.Shape()) != formatShape(py.Shape) {
			t.Errorf("array %d: Go %q %s %s, NumPy %q %s %s", i,
				a.Name, d.descr(), formatShape(a.T.Shape()), py.Name, py.Descr, formatShape(py.Shape))
			continue
		}
		var data bytes.Buffer
		if err := encode(&data, a.T, a.T.Shape().TotalSize()); err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(data.Bytes()); got != py.Data {
			t.Errorf("%s: data differ\nGo    %s\nNumPy %s", a.Name, got, py.Data)
		}
		if npy := hex.EncodeToString(npyBytes(t, a.T)); py.Growth && npy != py.Npy {
			t.Errorf("%s: np.save writes other bytes\nGo    %s\nNumPy %s", a.Name, npy, py.Npy)
		}
	}
}

func TestNumpyLoadsWrite(t *testing.T) {
	needNumpy(t)
	arrays := append(checkpoint(),
		Array{"special", tensor.New(tensor.WithShape(4), tensor.WithBacking([]float32{
			float32(math.NaN()), float32(math.Inf(1)), -0.0, math.SmallestNonzeroFloat32}))},
		Array{"wide", tensor.New(tensor.WithShape(1, 1000), tensor.WithBacking(make([]float64, 1000)))},
	)
	path := filepath.Join(t.TempDir(), "model.npz")
	if err := Write(path, arrays); err != nil {
		t.Fatal(err)
	}
	compareWithNumpy(t, arrays, numpyView(t, path))
}

func TestReadNumpySavez(t *testing.T) {
	needNumpy(t)
	dir := t.TempDir()
	const savePy = `
import sys
import numpy as np
rng = np.random.default_rng(1)
w = rng.standard_normal((6, 1, 5, 5)).astype("<f4")
w[0, 0, 0, :3] = [np.nan, np.inf, -0.0]
arrays = {
    "conv1.weight": w,
    "conv1.bias": rng.standard_normal(6).astype("<f4"),
    "bn1.num_batches_tracked": np.array(938, dtype=np.int64),
    "bn1.running_var": rng.random(6),
    "fc.weight": rng.standard_normal((10, 84)).astype("<f4"),
    "big_endian": np.arange(5, dtype=">i4"),
    "fortran_vector": np.asfortranarray(np.arange(3.0)),
    "column": np.arange(4, dtype=np.int64).reshape(4, 1).copy(order="F"),
    "pixels": rng.integers(0, 256, (2, 3, 3), dtype=np.uint8),
    "keep": rng.random((2, 2)) > 0.5,
    "labels": rng.integers(-5, 5, 7).astype("<i4"),
}
np.savez(sys.argv[1], **arrays)
np.savez_compressed(sys.argv[2], **arrays)
`
	stored, deflated := filepath.Join(dir, "stored.npz"), filepath.Join(dir, "deflated.npz")
	python(t, savePy, stored, deflated)
	for _, path := range []string{stored, deflated} {
		t.Run(filepath.Base(path), func(t *testing.T) {
			arrays, err := Read(path)
			if err != nil {
				t.Fatal(err)
			}
			compareWithNumpy(t, arrays, numpyView(t, path))
		})
	}
}

func TestNumpyFortranOrderRefused(t *testing.T) {
	needNumpy(t)
	path := filepath.Join(t.TempDir(), "f.npz")
	python(t, `import sys, numpy as np; np.savez(sys.argv[1], m=np.asfortranarray(np.ones((2, 3), dtype="<f4")))`, path)
	_, err := Read(path)
	if err == nil || !strings.Contains(err.Error(), `entry "m.npy": shape (2, 3) is in Fortran order`) {
		t.Fatalf("got %v", err)
	}
}
