package onnx

import (
	"path/filepath"
	"testing"

	"github.com/faultline/faultline/internal/npz"
	"github.com/faultline/faultline/internal/testdeps"
	"github.com/faultline/faultline/model/graph"
)

// TestFixturesExternalCheckers: the folded fixtures pass onnx.checker, and ONNX
// Runtime computes PyTorch's logits from them (smallnet_io.npz).
func TestFixturesExternalCheckers(t *testing.T) {
	checker, ort := haveOnnxChecker(), haveORT()
	if !checker && !ort {
		testdeps.Skipf(t, testdeps.ONNX, "neither checker is installed: %s; %s", noChecker, noORT)
	}
	requireCheckers(t, checker, ort)
	arrays, err := npz.Read("../testdata/onnx/smallnet_io.npz")
	if err != nil {
		t.Fatal(err)
	}
	var input, logits string
	for _, a := range arrays {
		switch a.Name {
		case "input":
			input = writeFirst(t, a.T, 8)
		case "logits":
			logits = writeFirst(t, a.T, 8)
		}
	}
	want := readNpy(t, logits)
	for _, path := range fixtures {
		t.Run(filepath.Base(path), func(t *testing.T) {
			g, err := ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			h, err := graph.Fold(g, []int64{1, 28, 28})
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "folded.onnx")
			if err := WriteFile(out, h); err != nil {
				t.Fatal(err)
			}
			if checker {
				checkModels(t, out)
			}
			if ort {
				diff, scale, err := maxDiff(runORT(t, out, input), want, 8)
				t.Logf("ONNX Runtime vs PyTorch: max diff %g (logits up to %g)", diff, scale)
				if err != nil || diff > 1e-4*max(1, scale) {
					t.Errorf("ONNX Runtime on the folded model vs PyTorch: max diff %g (scale %g) %v", diff, scale, err)
				}
			}
		})
	}
}
