package model

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/faultline/faultline/internal/testdeps"
	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model/graph"
	"github.com/faultline/faultline/model/onnx"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// biting returns output clamps that bite on x: each site's output range on x,
// shrunk to half, and the weight clamps that hold the current weights.
func biting(t *testing.T, m *Model, x []float32, shape []int64) (Clamps, Clamps) {
	t.Helper()
	c := Clamps{}
	forward(t, m, x, shape, func(s *Site, _, out *ts.Tensor) (*ts.Tensor, error) {
		lo, hi, err := minMax(out)
		if err != nil {
			return nil, err
		}
		c[s.Name] = Bounds{Min: lo / 2, Max: hi / 2}
		return nil, nil
	})
	var w Clamps
	do(t, func() error {
		return torch.NoGrad(func() error {
			var err error
			w, err = m.WeightRanges()
			return err
		})
	})
	return c, w
}

// exportCase is a model with clamps that bite, and inputs.
type exportCase struct {
	name  string
	m     *Model
	x     []float32
	shape []int64
}

func exportCases(t *testing.T) []exportCase {
	t.Helper()
	x, _, _ := smallnetIO(t)
	small := loadONNX(t, filepath.Join("testdata", "onnx", "smallnet-opset13-eval.onnx"))
	torch.ManualSeed(4)
	lenet := newModel(t, fashion("lenet5"))
	lx, lshape := randomInput(lenet.Spec(), 8, 9)
	cases := []exportCase{
		{"smallnet", small, x, []int64{8, 1, 28, 28}},
		{"lenet5", lenet, lx, lshape},
	}
	for _, c := range cases {
		unclamped := evalLogits(t, c.m, c.x, c.shape)
		out, w := biting(t, c.m, c.x, c.shape)
		if err := c.m.SetClamps(out); err != nil {
			t.Fatal(err)
		}
		if err := c.m.SetWeightClamps(w); err != nil {
			t.Fatal(err)
		}
		if d, _, _ := maxDiff(evalLogits(t, c.m, c.x, c.shape), unclamped); d < 1e-2 {
			t.Fatalf("%s: the clamps change the logits by %g only", c.name, d)
		}
	}
	return cases
}

// ExportGraph writes the clamps as Clip nodes after the sites, keeping the
// graph's opset, input and output names: the exported graph, built as any
// graph, computes the clamped model's logits; a checkpoint's model.onnx is
// that graph.
func TestExportGraphHoldsClamps(t *testing.T) {
	for _, c := range exportCases(t) {
		t.Run(c.name, func(t *testing.T) {
			plain, err := c.m.Graph()
			if err != nil {
				t.Fatal(err)
			}
			g, err := c.m.ExportGraph()
			if err != nil {
				t.Fatal(err)
			}
			if g.Opset != plain.Opset || !reflect.DeepEqual(g.Inputs, plain.Inputs) || !reflect.DeepEqual(g.Outputs, plain.Outputs) {
				t.Errorf("opset %d, inputs %v, outputs %v; Graph has %d, %v, %v", g.Opset, g.Inputs, g.Outputs, plain.Opset, plain.Inputs, plain.Outputs)
			}
			clips := 0
			for _, n := range g.Nodes {
				if n.Op == "Clip" && strings.HasPrefix(n.Name, clampPrefix) {
					clips++
				}
			}
			if clips != len(c.m.Sites()) || len(g.Nodes) != len(plain.Nodes)+clips {
				t.Errorf("%d Clip nodes added (%d nodes, %d before) for %d clamped sites", clips, len(g.Nodes), len(plain.Nodes), len(c.m.Sites()))
			}
			if d := graph.Diff(stripClamps(g), plain); d != nil {
				t.Errorf("stripClamps(ExportGraph()) differs from Graph(): %v", d)
			}
			path := filepath.Join(t.TempDir(), "hard.onnx")
			if err := onnx.WriteFile(path, g); err != nil {
				t.Fatal(err)
			}
			exported := loadONNX(t, path)
			want := evalLogits(t, c.m, c.x, c.shape)
			compareRef(t, "exported graph vs the clamped model", evalLogits(t, exported, c.x, c.shape), want, int(c.shape[0]))
		})
	}
}

// A checkpoint of a graph model (an import) holds model.onnx; Load rebuilds it
// from there with its weights, clamps, ONNX source and labels, and saving it
// again writes the same model.onnx.
func TestGraphCheckpointRoundTrip(t *testing.T) {
	c := exportCases(t)[0]
	src := filepath.Join("testdata", "onnx", "smallnet-opset13-eval.onnx")
	g, err := onnx.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := DescribeONNX(src, g)
	if err != nil {
		t.Fatal(err)
	}
	if len(desc.SHA256) != 64 || desc.Opset != 13 || desc.Producer == "" || desc.Input == "" || desc.Output == "" || len(desc.InputShape) != 4 {
		t.Errorf("DescribeONNX = %+v", desc)
	}
	labels := []string{"t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"}
	meta := Metadata{Dataset: "fashion-mnist", Normalization: Normalization{Mean: []float32{0.2860406}, Std: []float32{0.3530242}},
		TestAccuracy: 0.25, Source: "import:" + src, ONNX: desc, Labels: labels}
	m2, meta2, dir := roundTrip(t, c.m, meta)
	if meta2.Arch != GraphArch || !reflect.DeepEqual(meta2.ONNX, desc) || !reflect.DeepEqual(meta2.Labels, labels) {
		t.Errorf("metadata: arch %q, onnx %+v, labels %v", meta2.Arch, meta2.ONNX, meta2.Labels)
	}
	if _, ok := meta2.Files[ONNXFile]; !ok {
		t.Errorf("files %v lack %s", meta2.Files, ONNXFile)
	}
	if !reflect.DeepEqual(m2.Clamps(), c.m.Clamps()) || !reflect.DeepEqual(m2.WeightClamps(), c.m.WeightClamps()) {
		t.Errorf("clamps not restored")
	}
	if !slices.Equal(m2.SiteNames(), c.m.SiteNames()) || m2.NumStages() != c.m.NumStages() {
		t.Errorf("sites %v, %d stages; want %v, %d", m2.SiteNames(), m2.NumStages(), c.m.SiteNames(), c.m.NumStages())
	}
	want, got := evalLogits(t, c.m, c.x, c.shape), evalLogits(t, m2, c.x, c.shape)
	if !sameLogits(t, "loaded", got, want) {
		t.FailNow()
	}
	again := save(t, m2, meta2)
	a, _ := os.ReadFile(filepath.Join(dir, ONNXFile))
	b, _ := os.ReadFile(filepath.Join(again, ONNXFile))
	if len(a) == 0 || string(a) != string(b) {
		t.Errorf("model.onnx of the reloaded model differs (%d bytes, %d before)", len(b), len(a))
	}
	// A graph checkpoint without model.onnx is refused, naming it.
	if err := os.Remove(filepath.Join(dir, ONNXFile)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Load(dir, gotch.CPU); err == nil || !strings.Contains(err.Error(), ONNXFile) {
		t.Errorf("Load without model.onnx: %v", err)
	}
}

// Zoo checkpoints written before model.onnx (no such file, no sum) still load.
func TestZooCheckpointWithoutONNXLoads(t *testing.T) {
	m := newModel(t, fashion("lenet5"))
	dir := save(t, m, Metadata{})
	if err := os.Remove(filepath.Join(dir, ONNXFile)); err != nil {
		t.Fatal(err)
	}
	dropFileSums(t, dir)
	m2, _ := load(t, dir)
	if a, b := logits(t, m), logits(t, m2); !reflect.DeepEqual(a, b) {
		t.Error("logits differ after load")
	}
}

// The model.onnx of a hardened model (output clamps that bite, weight clamps)
// passes onnx.checker (full_check), and ONNX Runtime computes faultline's logits
// from it: within 1e-4 x max |logit|, same top-1.
func TestHardenedONNXInRuntime(t *testing.T) {
	scripts := filepath.Join("..", "scripts")
	_, nodeErr := exec.LookPath("node")
	_, ortErr := os.Stat(filepath.Join(scripts, "node_modules", "onnxruntime-node"))
	checker := exec.Command(torchPython, "-c", "import onnx").Run() == nil
	ort := nodeErr == nil && ortErr == nil
	if !checker || !ort {
		testdeps.Skipf(t, testdeps.ONNX, "python3-onnx (%v) or node with onnxruntime-node in scripts/node_modules (%v) missing", checker, ort)
	}
	for _, c := range exportCases(t) {
		t.Run(c.name, func(t *testing.T) {
			dir := save(t, c.m, Metadata{})
			path := filepath.Join(dir, ONNXFile)
			if out, err := exec.Command(torchPython, "-c",
				"import onnx, sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)", path).CombinedOutput(); err != nil {
				t.Errorf("onnx.checker: %v\n%s", err, out)
			}
			in := filepath.Join(dir, "input.npy")
			writeNpy(t, in, c.x, c.shape)
			out := filepath.Join(dir, "logits.npy")
			if b, err := exec.Command("node", filepath.Join(scripts, "ort-run.js"), "--model", path, "--input", in,
				"--out", out, "--threads", "1").CombinedOutput(); err != nil {
				t.Fatalf("ort-run: %v\n%s", err, b)
			}
			got, _ := readNpy(t, out)
			diff, scale := compareRef(t, "ONNX Runtime on model.onnx vs faultline", got, evalLogits(t, c.m, c.x, c.shape), int(c.shape[0]))
			t.Logf("ONNX Runtime vs faultline (clamped): max diff %.3g, max |logit| %.3g (%.2g relative)", diff, scale, diff/scale)
		})
	}
}

// ImportONNX's checks: one error per file, naming both shapes on a mismatch,
// and unwrapping to the unsupported ops and dynamic dimensions it lists.
func TestImportONNXChecks(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join("testdata", "onnx", "smallnet-opset13-eval.onnx")
	m, desc, err := ImportONNX(src, []int64{1, 28, 28}, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	if m.Spec().Arch != GraphArch || m.Spec().Classes != 10 || desc.Opset != 13 {
		t.Errorf("spec %+v, source %+v", m.Spec(), desc)
	}
	if _, _, err := ImportONNX(src, []int64{3, 28, 28}, gotch.CPU); err == nil ||
		!strings.Contains(err.Error(), "[batch 1 28 28]") || !strings.Contains(err.Error(), "[batch 3 28 28]") {
		t.Errorf("channel mismatch: %v", err)
	}
	g, err := onnx.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	g.Inputs[0].Shape = []int64{-1, 1, -1, 28}
	g.Inputs[0].DimNames = []string{"batch", "", "h", ""}
	g.Nodes[0].Op = "Erf"
	bad := filepath.Join(dir, "bad.onnx")
	if err := onnx.WriteFile(bad, g); err != nil {
		t.Fatal(err)
	}
	_, _, err = ImportONNX(bad, []int64{1, 28, 28}, gotch.CPU)
	var u *graph.UnsupportedError
	var d *graph.DynamicShapeError
	if !errors.As(err, &u) || !errors.As(err, &d) || len(u.Ops) != 1 || u.Ops[0].Op != "Erf" || len(d.Dims) != 1 || d.Dims[0].Dim != 2 {
		t.Errorf("unsupported op and dynamic height: %v", err)
	}
	if err != nil && strings.Contains(err.Error(), "\n") {
		t.Errorf("error of several lines: %q", err)
	}
}
