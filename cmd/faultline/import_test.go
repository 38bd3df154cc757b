package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/faultline/faultline/internal/testdeps"
	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model"
	"github.com/faultline/faultline/model/graph"
	"github.com/faultline/faultline/model/onnx"
	"github.com/sugarme/gotch"
)

// smallnet is a corpus-like ONNX file (PyTorch export, opset 13, input
// [batch 1 28 28], 10 logits).
var smallnet = filepath.Join("..", "..", "model", "testdata", "onnx", "smallnet-opset13-eval.onnx")

// An ONNX import end to end: the checkpoint records the file, its labels and
// its accuracy, and `test` loads it and measures the same accuracy.
func TestImportONNXEndToEnd(t *testing.T) {
	dir := t.TempDir()
	ckpt := filepath.Join(dir, "smallnet")
	labels := filepath.Join(dir, "classes.txt")
	if err := os.WriteFile(labels, []byte("zero\none\ntwo\nthree\nfour\nfive\nsix\nseven\neight\nnine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errs, code := cli(t, "import", "--onnx", smallnet, "--dataset", "synthetic", "--labels", labels, "--out", ckpt, "--json")
	if code != 0 {
		t.Fatalf("import --onnx failed: %s", errs)
	}
	var res struct {
		Arch         string  `json:"arch"`
		ONNX         string  `json:"onnx"`
		TestAccuracy float64 `json:"test_accuracy"`
		Sites        int     `json:"sites"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Arch != model.GraphArch || res.ONNX != smallnet || res.Sites == 0 {
		t.Fatalf("import --json printed %q (%v)", out, err)
	}
	meta, err := model.ReadMetadata(ckpt)
	if err != nil {
		t.Fatal(err)
	}
	if o := meta.ONNX; o == nil || o.Opset != 13 || len(o.SHA256) != 64 || o.Producer != "pytorch" || o.Input == "" || o.Output == "" {
		t.Errorf("metadata onnx %+v", meta.ONNX)
	}
	if len(meta.Labels) != 10 || meta.Labels[9] != "nine" || meta.Source != "import:"+smallnet || meta.Dataset != "synthetic" {
		t.Errorf("metadata labels %v, source %q, dataset %q", meta.Labels, meta.Source, meta.Dataset)
	}
	if _, ok := meta.Files[model.ONNXFile]; !ok {
		t.Errorf("model.json files lack %s: %v", model.ONNXFile, meta.Files)
	}
	out, errs, code = cli(t, "test", "--checkpoint", ckpt, "--json")
	if code != 0 {
		t.Fatalf("test on the import: %s", errs)
	}
	var tr struct{ Accuracy float64 }
	if err := json.Unmarshal([]byte(out), &tr); err != nil || tr.Accuracy != res.TestAccuracy {
		t.Errorf("test: accuracy %v (%v), import measured %v", tr.Accuracy, err, res.TestAccuracy)
	}
	// --normalization none records none, and test still runs.
	none := filepath.Join(dir, "none")
	if _, errs, code := cli(t, "import", "--onnx", smallnet, "--dataset", "synthetic", "--normalization", "none", "--out", none); code != 0 {
		t.Fatalf("import --normalization none: %s", errs)
	}
	if meta, err := model.ReadMetadata(none); err != nil || len(meta.Normalization.Mean) != 0 {
		t.Errorf("--normalization none: %+v %v", meta.Normalization, err)
	}
	if _, errs, code := cli(t, "test", "--checkpoint", none, "--limit", "50"); code != 0 {
		t.Errorf("test on an import without normalisation: %s", errs)
	}
}

// tinyGraph is a small valid CNN over input (declared shape) with 10 logits;
// extra ops are put between its conv and its pooling.
func tinyGraph(t *testing.T, input []int64, extra ...string) *graph.Graph {
	t.Helper()
	w, err := graph.FromFloat32s("conv.weight", []int64{4, input[1], 3, 3}, make([]float32, 4*int(input[1])*9))
	if err != nil {
		t.Fatal(err)
	}
	fw, err := graph.FromFloat32s("fc.weight", []int64{10, 4}, make([]float32, 40))
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, len(input))
	names[0] = "batch"
	for i := 2; i < len(input); i++ {
		if input[i] < 0 {
			names[i] = "side"
		}
	}
	g := &graph.Graph{Name: "tiny", Opset: 13,
		Inputs:       []graph.Value{{Name: "input", DType: graph.Float32, Shape: input, DimNames: names}},
		Outputs:      []graph.Value{{Name: "logits", DType: graph.Float32, Shape: []int64{-1, 10}, DimNames: []string{"batch", ""}}},
		Initializers: []*graph.Tensor{w, fw},
		Nodes:        []graph.Node{{Name: "/conv/Conv", Op: "Conv", Inputs: []string{"input", "conv.weight"}, Outputs: []string{"c0"}}},
	}
	prev := "c0"
	for i, op := range extra {
		next := "c" + string(rune('1'+i))
		g.Nodes = append(g.Nodes, graph.Node{Name: strings.ToLower(op) + "_" + string(rune('1'+i)), Op: op, Inputs: []string{prev}, Outputs: []string{next}})
		prev = next
	}
	g.Nodes = append(g.Nodes,
		graph.Node{Name: "/pool", Op: "GlobalAveragePool", Inputs: []string{prev}, Outputs: []string{"p"}},
		graph.Node{Name: "/flatten", Op: "Flatten", Inputs: []string{"p"}, Outputs: []string{"f"}},
		graph.Node{Name: "/fc/Gemm", Op: "Gemm", Inputs: []string{"f", "fc.weight"}, Outputs: []string{"logits"},
			Attrs: map[string]graph.Attr{"transB": graph.Int(1)}})
	return g
}

// Every failed check is one clear error, and nothing is written: --out stays
// absent, or unchanged when it held a checkpoint.
func TestImportONNXErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, g *graph.Graph) string {
		p := filepath.Join(dir, name)
		if err := onnx.WriteFile(p, g); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.onnx", tinyGraph(t, []int64{-1, 1, 28, 28}))
	unsupported := write("unsupported.onnx", tinyGraph(t, []int64{-1, 1, 28, 28}, "Erf", "Relu", "Erf", "Resize"))
	dynamic := write("dynamic.onnx", tinyGraph(t, []int64{-1, 1, -1, -1}))
	channels := write("channels.onnx", tinyGraph(t, []int64{-1, 3, 28, 28}))
	both := write("both.onnx", tinyGraph(t, []int64{-1, 1, -1, 28}, "Erf"))
	garbage := filepath.Join(dir, "garbage.onnx")
	if err := os.WriteFile(garbage, []byte("not an onnx file at all"), 0o644); err != nil {
		t.Fatal(err)
	}
	three := filepath.Join(dir, "three.txt")
	if err := os.WriteFile(three, []byte("a\nb\nc\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A checkpoint already in --out must survive a failed import.
	existing := filepath.Join(dir, "existing")
	if _, errs, code := cli(t, "import", "--onnx", good, "--dataset", "synthetic", "--out", existing); code != 0 {
		t.Fatalf("import of a good graph: %s", errs)
	}
	before := map[string][]byte{}
	for _, f := range []string{model.WeightsFile, model.NumpyFile, model.ONNXFile, model.MetadataFile} {
		b, err := os.ReadFile(filepath.Join(existing, f))
		if err != nil {
			t.Fatal(err)
		}
		before[f] = b
	}
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"unsupported ops", []string{"--onnx", unsupported}, []string{"unsupported operations: Erf (nodes erf_1, erf_3), Resize (node resize_4)"}},
		{"dynamic spatial shape", []string{"--onnx", dynamic}, []string{`dynamic shapes other than the batch: "input" dimension 2`, `dimension 3`, "static spatial sizes"}},
		{"unsupported and dynamic", []string{"--onnx", both}, []string{"Erf (node erf_1)", `"input" dimension 2`}},
		{"channel mismatch", []string{"--onnx", channels}, []string{"[batch 3 28 28]", "[batch 1 28 28]"}},
		{"labels count", []string{"--onnx", good, "--labels", three}, []string{"3 class names", "10 classes"}},
		{"mean for 3 channels", []string{"--onnx", good, "--mean", "0.1,0.2,0.3", "--std", "1,1,1"}, []string{"--mean/--std", "3 means"}},
		{"mean without std", []string{"--onnx", good, "--mean", "0.5"}, []string{"--mean and --std"}},
		{"bad normalization", []string{"--onnx", good, "--normalization", "imagenet"}, []string{`"imagenet"`}},
		{"onnx and arch", []string{"--onnx", good, "--arch", "lenet5"}, []string{"either --onnx"}},
		{"zoo flag", []string{"--onnx", good, "--width", "2"}, []string{"--width"}},
		{"missing file", []string{"--onnx", filepath.Join(dir, "none.onnx")}, []string{"none.onnx"}},
		{"not onnx", []string{"--onnx", garbage}, []string{"garbage.onnx"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, out := range []string{filepath.Join(dir, "out-"+strings.ReplaceAll(tc.name, " ", "-")), existing} {
				args := append([]string{"import", "--dataset", "synthetic", "--out", out}, tc.args...)
				_, errs, code := cli(t, args...)
				if code == 0 || strings.Count(strings.TrimSpace(errs), "\n") != 0 || strings.Contains(errs, "goroutine ") {
					t.Fatalf("%v: code %d, stderr %q; want one line of error", args, code, errs)
				}
				for _, w := range tc.want {
					if !strings.Contains(errs, w) {
						t.Errorf("error %q does not mention %q", errs, w)
					}
				}
				if out == existing {
					for f, b := range before {
						if got, _ := os.ReadFile(filepath.Join(existing, f)); string(got) != string(b) {
							t.Errorf("%s changed by a failed import", f)
						}
					}
					entries, _ := os.ReadDir(existing)
					if len(entries) != len(before) {
						t.Errorf("%d files in --out after a failed import, want %d", len(entries), len(before))
					}
				} else if _, err := os.Stat(out); !os.IsNotExist(err) {
					t.Errorf("--out %s exists after a failed import (%v)", out, err)
				}
			}
		})
	}
}

// train --checkpoint fine-tunes an imported graph on its own data set: the
// weights and BatchNorm's running statistics move, the ONNX source and class
// names carry over, and test measures what train recorded.
func TestTrainFineTunesImport(t *testing.T) {
	dir := t.TempDir()
	imported := filepath.Join(dir, "imported")
	labels := filepath.Join(dir, "classes.txt")
	if err := os.WriteFile(labels, []byte("a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	preserve := filepath.Join("..", "..", "model", "testdata", "onnx", "smallnet-opset13-preserve.onnx")
	if _, errs, code := cli(t, "import", "--onnx", preserve, "--dataset", "synthetic", "--labels", labels, "--out", imported); code != 0 {
		t.Fatalf("import: %s", errs)
	}
	if _, errs, code := cli(t, "train", "--checkpoint", imported, "--arch", "lenet5", "--out", filepath.Join(dir, "x")); code == 0 || !strings.Contains(errs, "--arch") {
		t.Errorf("train --checkpoint --arch: exit %d, %q", code, errs)
	}
	tuned := filepath.Join(dir, "tuned")
	out, errs, code := cli(t, "train", "--checkpoint", imported, "--preset", "lenet5-fashion", "--epochs", "1", "--optimizer", "adam", "--lr", "0.002",
		"--train-limit", "512", "--threads", "1", "--resume", "--out", tuned, "--json")
	if code != 0 {
		t.Fatalf("train --checkpoint: %s", errs)
	}
	var res struct {
		Arch         string  `json:"arch"`
		TestAccuracy float64 `json:"test_accuracy"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Arch != model.GraphArch {
		t.Fatalf("train --json printed %q (%v)", out, err)
	}
	meta, err := model.ReadMetadata(tuned)
	if err != nil {
		t.Fatal(err)
	}
	if meta.ONNX == nil || meta.ONNX.Opset != 13 || len(meta.Labels) != 10 || meta.Dataset != "synthetic" || meta.Source != "finetune:"+imported || meta.Epochs != 1 {
		t.Errorf("fine-tuned metadata: onnx %+v, labels %v, dataset %q, source %q, epochs %d", meta.ONNX, meta.Labels, meta.Dataset, meta.Source, meta.Epochs)
	}
	if _, err := os.Stat(tuned + ".resume"); !os.IsNotExist(err) {
		t.Errorf("resume state left behind: %v", err)
	}
	var moved, stats int
	if err := torch.Do(func() error {
		a, _, err := model.Load(imported, gotch.CPU)
		if err != nil {
			return err
		}
		b, _, err := model.Load(tuned, gotch.CPU)
		if err != nil {
			return err
		}
		for _, p := range a.Params() {
			q, err := b.Param(p.Name)
			if err != nil {
				return err
			}
			x, err := torch.Float32s(p.Tensor)
			if err != nil {
				return err
			}
			y, err := torch.Float32s(q)
			if err != nil {
				return err
			}
			if !slices.Equal(x, y) {
				moved++
				if strings.Contains(p.Name, "running_mean") {
					stats++
				}
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if moved == 0 || stats == 0 {
		t.Errorf("fine-tuning changed %d tensors, %d running means", moved, stats)
	}
	out, errs, code = cli(t, "test", "--checkpoint", tuned, "--json")
	if code != 0 {
		t.Fatalf("test on the fine-tuned model: %s", errs)
	}
	var tr struct{ Accuracy float64 }
	if err := json.Unmarshal([]byte(out), &tr); err != nil || tr.Accuracy != res.TestAccuracy {
		t.Errorf("test: accuracy %v (%v), train recorded %v", tr.Accuracy, err, res.TestAccuracy)
	}
}

// scripts/ort-check.sh runs an imported checkpoint's model.onnx in ONNX
// Runtime on its test images: the same top-1 everywhere and the same accuracy.
func TestORTCheckScript(t *testing.T) {
	scripts := filepath.Join("..", "..", "scripts")
	_, nodeErr := exec.LookPath("node")
	_, ortErr := os.Stat(filepath.Join(scripts, "node_modules", "onnxruntime-node"))
	if nodeErr != nil || ortErr != nil {
		testdeps.Skipf(t, testdeps.ONNX, "node (%v) or onnxruntime-node in scripts/node_modules (%v) missing", nodeErr, ortErr)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "faultline")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ckpt := filepath.Join(dir, "smallnet")
	if _, errs, code := cli(t, "import", "--onnx", smallnet, "--dataset", "synthetic", "--out", ckpt); code != 0 {
		t.Fatalf("import: %s", errs)
	}
	cmd := exec.Command("bash", filepath.Join(scripts, "ort-check.sh"), ckpt, "300")
	cmd.Env = append(os.Environ(), "FAULTLINE="+bin, "JSON=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ort-check.sh: %v\n%s", err, out)
	}
	var r testResult
	if err := json.Unmarshal(out, &r); err != nil || r.Compare == nil {
		t.Fatalf("ort-check.sh printed %q (%v)", out, err)
	}
	if c := r.Compare; c.Images != 300 || c.SameTop1 != 300 || c.AccuracyDiff != 0 || c.MaxAbsDiff > 1e-4*c.MaxAbsLogit {
		t.Errorf("ONNX Runtime against faultline: %+v", c)
	}
	if _, err := exec.Command("bash", filepath.Join(scripts, "ort-check.sh"), dir).CombinedOutput(); err == nil {
		t.Error("ort-check.sh on a directory without model.onnx succeeded")
	}
}
