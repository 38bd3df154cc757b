package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/faultline/faultline/datasets"
	"github.com/faultline/faultline/internal/npz"
	"github.com/faultline/faultline/internal/testckpt"
	"github.com/faultline/faultline/internal/testdeps"
	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model"
	"github.com/sugarme/gotch"
)

// forwardLogits runs the checkpoint's model on the first n test images in one
// batch, as a reference independent of `test`: row-major [n, classes].
func forwardLogits(t *testing.T, ckpt string, n int) ([]float32, int) {
	t.Helper()
	m, meta, err := model.Load(ckpt, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	set, err := datasets.Load(meta.Dataset, "", datasets.Test)
	if err != nil {
		t.Fatal(err)
	}
	ld, err := datasets.NewLoader(set, datasets.LoaderOptions{BatchSize: n,
		Stats: datasets.Stats{Mean: meta.Normalization.Mean, Std: meta.Normalization.Std}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := ld.Epoch(0).Next()
	var out []float32
	err = torch.Do(func() error {
		return torch.NoGrad(func() error {
			x, y, err := b.Tensors(gotch.CPU)
			if err != nil {
				return err
			}
			defer x.Drop()
			defer y.Drop()
			l, err := m.Forward(x, false, nil)
			if err != nil {
				return err
			}
			defer l.Drop()
			out, err = torch.Float32s(l)
			return err
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out, int(meta.Spec.Classes)
}

// TestSaveLogits: `test --save-logits` writes the logits of the first --limit
// images as float32 [N, classes], equal to the model's forward pass on them, in
// batches or not, and leaves the rest of test's output as it was.
func TestSaveLogits(t *testing.T) {
	ckpt := testckpt.Trained(t, 200)
	const n = 37
	want, classes := forwardLogits(t, ckpt, n)
	plain, errs, code := cli(t, "test", "--checkpoint", ckpt, "--limit", "37", "--json")
	if code != 0 {
		t.Fatalf("test: %s", errs)
	}
	dir := t.TempDir()
	for _, tc := range []struct {
		name  string
		args  []string
		exact bool // same single batch as the reference: bit for bit
	}{
		{"one batch", []string{"--limit", "37"}, true},
		{"batches of 8", []string{"--limit", "37", "--batch-size", "8"}, false},
		{"json", []string{"--limit", "37", "--json"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"), "logits.npy")
			out, errs, code := cli(t, append([]string{"test", "--checkpoint", ckpt, "--save-logits", path}, tc.args...)...)
			if code != 0 {
				t.Fatalf("test --save-logits: %s", errs)
			}
			if tc.name == "json" {
				if out != plain {
					t.Errorf("--json output changed by --save-logits:\n%s\nwant\n%s", out, plain)
				}
			} else if !strings.Contains(out, "wrote "+path+": float32 logits [37, 10]") {
				t.Errorf("output %q does not name the file", out)
			}
			vals, s := readNpyF32(t, path)
			if len(s) != 2 || s[0] != n || s[1] != classes {
				t.Fatalf("shape %v, want [%d %d]", s, n, classes)
			}
			var scale float64
			for _, v := range want {
				scale = max(scale, math.Abs(float64(v)))
			}
			for i := range want {
				d := math.Abs(float64(vals[i] - want[i]))
				if tc.exact && d != 0 || d > 1e-5*scale {
					t.Fatalf("logit %d (image %d, class %d) = %v, forward gives %v", i, i/classes, i%classes, vals[i], want[i])
				}
			}
			if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
				t.Errorf("%s holds %d files, want the .npy alone (no temporary left)", filepath.Dir(path), len(entries))
			}
		})
	}
}

// TestSaveLogitsReadByNumpy: numpy.load reads the file as float32 [N, classes]
// with the values faultline wrote.
func TestSaveLogitsReadByNumpy(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Python; skipped in -short mode")
	}
	const python = "/usr/bin/python3"
	if out, err := exec.Command(python, "-c", "import numpy").CombinedOutput(); err != nil {
		testdeps.Skipf(t, testdeps.Torch, "%s cannot import numpy (scripts/setup.sh --test installs python3-numpy): %v: %s",
			python, err, bytes.TrimSpace(out))
	}
	ckpt := testckpt.Trained(t, 200)
	path := filepath.Join(t.TempDir(), "logits.npy")
	if _, errs, code := cli(t, "test", "--checkpoint", ckpt, "--limit", "5", "--save-logits", path); code != 0 {
		t.Fatalf("test --save-logits: %s", errs)
	}
	want, _ := forwardLogits(t, ckpt, 5)
	out, err := exec.Command(python, "-c", `
import json, sys
import numpy as np
a = np.load(sys.argv[1])
print(json.dumps({"dtype": a.dtype.str, "shape": list(a.shape), "data": a.astype("<f4").tobytes().hex()}))
`, path).Output()
	if err != nil {
		t.Fatalf("numpy.load: %v", err)
	}
	var got struct {
		Dtype string
		Shape []int
		Data  string
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%s: %v", out, err)
	}
	raw, _ := hex.DecodeString(got.Data)
	var le bytes.Buffer
	for _, v := range want {
		b := math.Float32bits(v)
		le.Write([]byte{byte(b), byte(b >> 8), byte(b >> 16), byte(b >> 24)})
	}
	if got.Dtype != "<f4" || len(got.Shape) != 2 || got.Shape[0] != 5 || got.Shape[1] != 10 || !bytes.Equal(raw, le.Bytes()) {
		t.Errorf("numpy read dtype %s shape %v, data equal %v; want <f4 [5 10] and the forward pass's logits", got.Dtype, got.Shape, bytes.Equal(raw, le.Bytes()))
	}
}

// TestSaveLogitsErrors: a bad --limit or an unwritable path fails before any
// evaluation, with an error that names it.
func TestSaveLogitsErrors(t *testing.T) {
	ckpt := testckpt.Untrained(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"negative limit", []string{"--limit", "-3", "--save-logits", filepath.Join(dir, "a.npy")}, "--limit -3"},
		{"not a number", []string{"--limit", "ten"}, "--limit"},
		{"directory", []string{"--save-logits", dir}, "is a directory"},
		{"under a file", []string{"--save-logits", filepath.Join(file, "a.npy")}, "--save-logits"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errs, code := cli(t, append([]string{"test", "--checkpoint", ckpt}, tc.args...)...)
			if code == 0 || !strings.Contains(errs, tc.want) {
				t.Errorf("code %d, stderr %q; want an error mentioning %q", code, errs, tc.want)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "a.npy")); err == nil {
		t.Errorf("a failed run wrote a.npy")
	}
}

// readNpyF32 reads a float32 .npy file and its shape.
func readNpyF32(t *testing.T, path string) ([]float32, []int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	x, err := npz.ReadNpy(f, path)
	if err != nil {
		t.Fatal(err)
	}
	v, ok := x.Data().([]float32)
	if !ok {
		t.Fatalf("%s: dtype %v, want float32", path, x.Dtype())
	}
	return v, x.Shape()
}

// `test --save-inputs` writes the images normalised as the model reads them;
// `--compare-logits` reports the agreement of another runtime's logits: its
// own logits agree on every image, and logits with one image's top-1 moved
// and one class's logit shifted are reported as such.
func TestSaveInputsCompareLogits(t *testing.T) {
	ckpt := testckpt.Trained(t, 200)
	dir := t.TempDir()
	inputs, logits := filepath.Join(dir, "in.npy"), filepath.Join(dir, "logits.npy")
	if _, errs, code := cli(t, "test", "--checkpoint", ckpt, "--limit", "37", "--save-inputs", inputs, "--save-logits", logits); code != 0 {
		t.Fatalf("test --save-inputs: %s", errs)
	}
	x, shape := readNpyF32(t, inputs)
	if !slices.Equal(shape, []int{37, 1, 28, 28}) {
		t.Fatalf("inputs of shape %v", shape)
	}
	meta, err := model.ReadMetadata(ckpt)
	if err != nil {
		t.Fatal(err)
	}
	set, err := datasets.Load(meta.Dataset, "", datasets.Test)
	if err != nil {
		t.Fatal(err)
	}
	mean, std := meta.Normalization.Mean[0], meta.Normalization.Std[0]
	for i := range x {
		if want := (float32(set.Pixels[i])/255 - mean) / std; math.Abs(float64(x[i]-want)) > 1e-6 {
			t.Fatalf("input %d = %v, want (pixel/255 - mean)/std = %v", i, x[i], want)
		}
	}
	ours, _ := readNpyF32(t, logits)
	plain, errs, code := cli(t, "test", "--checkpoint", ckpt, "--limit", "37", "--json")
	if code != 0 {
		t.Fatal(errs)
	}
	var base testResult
	if err := json.Unmarshal([]byte(plain), &base); err != nil {
		t.Fatal(err)
	}
	other := slices.Clone(ours)
	top := model.Top1(other[:10])
	other[(top+1)%10] = other[top] + 5 // image 0 now predicts another class
	other[10+3] += 0.25                // image 1: a small shift
	otherFile := filepath.Join(dir, "other.npy")
	if err := writeLogits(otherFile, other, 37, 10); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		file      string
		same      int
		maxDiff   float64
		accChange int // correct images gained by the other runtime
	}{
		{logits, 37, 0, 0},
		{otherFile, 36, 5 + float64(ours[top]-ours[(top+1)%10]), 0},
	} {
		out, errs, code := cli(t, "test", "--checkpoint", ckpt, "--limit", "37", "--compare-logits", tc.file, "--json")
		if code != 0 {
			t.Fatalf("--compare-logits %s: %s", tc.file, errs)
		}
		var r testResult
		if err := json.Unmarshal([]byte(out), &r); err != nil || r.Compare == nil {
			t.Fatalf("--json printed %q (%v)", out, err)
		}
		c := r.Compare
		if r.Accuracy != base.Accuracy || c.Images != 37 || c.SameTop1 != tc.same || math.Abs(c.MaxAbsDiff-tc.maxDiff) > 1e-5 {
			t.Errorf("%s: %+v (accuracy %v, plain %v); want %d same, max diff %v", tc.file, c, r.Accuracy, base.Accuracy, tc.same, tc.maxDiff)
		}
		label := int(set.Labels[0])
		want := base.Accuracy
		if tc.same == 36 {
			switch {
			case top == label:
				want -= 1.0 / 37
			case (top+1)%10 == label:
				want += 1.0 / 37
			}
		}
		if math.Abs(c.Accuracy-want) > 1e-12 || math.Abs(c.AccuracyDiff-(want-base.Accuracy)) > 1e-12 {
			t.Errorf("%s: accuracy %v (diff %v), want %v", tc.file, c.Accuracy, c.AccuracyDiff, want)
		}
	}
	short := filepath.Join(dir, "short.npy")
	if err := writeLogits(short, ours[:200], 20, 10); err != nil {
		t.Fatal(err)
	}
	if _, errs, code := cli(t, "test", "--checkpoint", ckpt, "--limit", "37", "--compare-logits", short); code == 0 || !strings.Contains(errs, "short.npy") || !strings.Contains(errs, "37 images") {
		t.Errorf("logits for 20 images against 37: exit %d, %q", code, errs)
	}
	if _, errs, code := cli(t, "test", "--checkpoint", ckpt, "--compare-logits", filepath.Join(dir, "none.npy")); code == 0 || !strings.Contains(errs, "none.npy") {
		t.Errorf("missing logits file: exit %d, %q", code, errs)
	}
}
