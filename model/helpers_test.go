package model

import (
	"encoding/json"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/faultline/faultline/internal/npz"
	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model/graph"
	"github.com/faultline/faultline/model/onnx"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// The model tests' shared helpers: building a model, running it on host floats
// and reading its output back, comparing logits, and a checkpoint round trip.

// do runs fn on the torch thread.
func do(t testing.TB, fn func() error) {
	t.Helper()
	if err := torch.Do(fn); err != nil {
		t.Fatal(err)
	}
}

// newModel builds the zoo model of spec on the CPU.
func newModel(t testing.TB, spec Spec) *Model {
	t.Helper()
	m, err := New(spec, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// fromGraph builds g's model on the CPU.
func fromGraph(t testing.TB, g *graph.Graph) *Model {
	t.Helper()
	m, err := FromGraph(g, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// loadONNX reads an ONNX file and builds its model.
func loadONNX(t testing.TB, path string) *Model {
	t.Helper()
	g, err := onnx.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return fromGraph(t, g)
}

// randomInput is a deterministic N x C x H x W standard normal batch.
func randomInput(s Spec, n int, seed int64) ([]float32, []int64) {
	r := rand.New(rand.NewSource(seed))
	x := make([]float32, n*int(s.InChannels*s.Height*s.Width))
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x, []int64{int64(n), s.InChannels, s.Height, s.Width}
}

// withInput runs fn on the torch thread without gradients, on x (of shape)
// copied into a CPU tensor that it drops afterwards.
func withInput(t testing.TB, x []float32, shape []int64, fn func(in *ts.Tensor) error) {
	t.Helper()
	do(t, func() error {
		return torch.NoGrad(func() error {
			in, err := torch.FromFloat32(x, shape, gotch.CPU)
			if err != nil {
				return err
			}
			defer in.Drop()
			return fn(in)
		})
	})
}

// forward runs m in eval mode on x (of shape) with hook (nil for none) and
// returns the output's values and shape.
func forward(t testing.TB, m *Model, x []float32, shape []int64, hook Hook) (out []float32, outShape []int64) {
	t.Helper()
	withInput(t, x, shape, func(in *ts.Tensor) error {
		y, err := m.Forward(in, false, hook)
		if err != nil {
			return err
		}
		if outShape, err = y.Size(); err != nil {
			_ = y.Drop()
			return err
		}
		out, err = takeFloats(y)
		return err
	})
	return out, outShape
}

// evalLogits runs m in eval mode on x.
func evalLogits(t testing.TB, m *Model, x []float32, shape []int64) []float32 {
	t.Helper()
	out, _ := forward(t, m, x, shape, nil)
	return out
}

// takeFloats returns y's values and drops y.
func takeFloats(y *ts.Tensor) ([]float32, error) {
	defer y.Drop()
	return torch.Float32s(y)
}

// afterLead runs the lead layer of stage k on mid (the stage's input) and the
// network after it in eval mode with hook.
func afterLead(m *Model, k int, mid *ts.Tensor, hook Hook) (*ts.Tensor, error) {
	y, err := m.RunLayer(m.Lead(k), mid)
	if err != nil {
		return nil, err
	}
	defer y.Drop()
	return m.RunAfterLead(k, y, m.NumStages(), false, hook)
}

// bitDiff returns the first index at which a and b differ bit for bit, or -1
// when they are equal (a length difference counts at the shorter length).
func bitDiff(a, b []float32) int {
	n := min(len(a), len(b))
	for i := range n {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return i
		}
	}
	if len(a) != len(b) {
		return n
	}
	return -1
}

// equalFloats reports whether a and b are equal bit for bit.
func equalFloats(a, b []float32) bool { return bitDiff(a, b) < 0 }

// sameLogits reports whether got equals want bit for bit; where it does not,
// it fails t (without stopping it) naming what and the first difference.
func sameLogits(t testing.TB, what string, got, want []float32) bool {
	t.Helper()
	i := bitDiff(got, want)
	switch {
	case i < 0:
		return true
	case len(got) != len(want):
		t.Errorf("%s: %d logits, want %d", what, len(got), len(want))
	default:
		t.Errorf("%s: logit %d = %v, want %v", what, i, got[i], want[i])
	}
	return false
}

// maxDiff returns the largest |got[i] - want[i]| (+Inf for a NaN), the first
// index with it, and the largest |want[i]|; got and want have the same length.
func maxDiff(got, want []float32) (diff float64, at int, scale float64) {
	for i := range got {
		d := math.Abs(float64(got[i]) - float64(want[i]))
		if math.IsNaN(d) {
			d = math.Inf(1)
		}
		if d > diff {
			diff, at = d, i
		}
		scale = max(scale, math.Abs(float64(want[i])))
	}
	return diff, at, scale
}

// onnxTol bounds |faultline - reference| relative to the largest |logit| when
// faultline runs an ONNX export of a PyTorch model.
const onnxTol = 1e-4

// compareRef fails unless got and want (n rows of logits) agree within onnxTol
// times the largest |logit| with the same top-1 class per row; it returns the
// largest difference and the largest |logit|.
func compareRef(t testing.TB, what string, got, want []float32, n int) (diff, scale float64) {
	t.Helper()
	if len(got) != len(want) || n == 0 || len(got)%n != 0 {
		t.Fatalf("%s: %d logits, want %d", what, len(got), len(want))
	}
	diff, at, scale := maxDiff(got, want)
	if diff > onnxTol*scale {
		t.Errorf("%s: logit %d: %v, reference %v (max diff %.3g > %g x max |logit| %.3g)", what, at, got[at], want[at], diff, onnxTol, scale)
	}
	k := len(got) / n
	for r := range n {
		if a, b := Top1(got[r*k:(r+1)*k]), Top1(want[r*k:(r+1)*k]); a != b {
			t.Errorf("%s: image %d: top-1 %d, reference %d", what, r, a, b)
		}
	}
	return diff, scale
}

// pytorchTol bounds |faultline - PyTorch| on any logit (float32, same libtorch
// kernels up to summation order).
const pytorchTol = 1e-4

// compareLogits fails unless got and want agree within pytorchTol, and returns the
// largest difference.
func compareLogits(t testing.TB, what string, got, want []float32) float64 {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d logits, want %d", what, len(got), len(want))
	}
	worst, at, _ := maxDiff(got, want)
	t.Logf("%s: max |faultline - pytorch| = %.3g over %d logits", what, worst, len(got))
	if worst > pytorchTol {
		t.Errorf("%s: logit %d: faultline %v, pytorch %v (diff %.3g > %g)", what, at, got[at], want[at], worst, pytorchTol)
	}
	return worst
}

// npzFloats reads an .npz file of float arrays, by name.
func npzFloats(t testing.TB, path string) map[string][]float32 {
	t.Helper()
	arrays, err := npz.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string][]float32{}
	for _, a := range arrays {
		if m[a.Name], err = float32Values(a.T); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

// save saves m with meta into a new directory and returns it.
func save(t testing.TB, m *Model, meta Metadata) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ckpt")
	if err := m.Save(dir, meta); err != nil {
		t.Fatal(err)
	}
	return dir
}

// load loads the checkpoint in dir on the CPU.
func load(t testing.TB, dir string) (*Model, Metadata) {
	t.Helper()
	m, meta, err := Load(dir, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	return m, meta
}

// editMetadata rewrites dir/model.json after edit has changed it, as JSON
// objects and values.
func editMetadata(t testing.TB, dir string, edit func(raw map[string]any)) {
	t.Helper()
	p := filepath.Join(dir, MetadataFile)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	edit(raw)
	if b, err = json.Marshal(raw); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// roundTrip saves m with meta into a new directory and loads it back; it
// returns the loaded model, its metadata and the directory.
func roundTrip(t testing.TB, m *Model, meta Metadata) (*Model, Metadata, string) {
	t.Helper()
	dir := save(t, m, meta)
	back, meta := load(t, dir)
	return back, meta, dir
}
