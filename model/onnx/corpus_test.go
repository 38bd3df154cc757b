package onnx

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"gorgonia.org/tensor"

	"github.com/faultline/faultline/internal/corpus"
	"github.com/faultline/faultline/internal/testdeps"
	"github.com/faultline/faultline/model/graph"
)

// The corpus: CNNs exported by PyTorch at opsets 11-17, built by
// `python3 scripts/onnx-corpus.py --out DIR`; FAULTLINE_ONNX_CORPUS=DIR runs
// TestCorpus on it (`make test` builds one in .cache/onnx-corpus with
// scripts/onnx-corpus-cache.sh and sets it, with FAULTLINE_REQUIRE_ONNX=1).

// corpusLayers are each corpus model's conv and linear layer counts.
var corpusLayers = map[string][2]int{
	"resnet18": {20, 1}, "mobilenet_v2": {52, 1}, "squeezenet1_1": {26, 0},
	"shufflenet_v2_x0_5": {56, 1}, "smallnet": {8, 1},
}

// resnet18Sites are resnet18's layers in node order.
var resnet18Sites = func() []string {
	s := []string{"conv1"}
	for l := 1; l <= 4; l++ {
		for b := 0; b < 2; b++ {
			p := fmt.Sprintf("layer%d.%d.", l, b)
			s = append(s, p+"conv1", p+"conv2")
			if b == 0 && l > 1 {
				s = append(s, p+"downsample.0")
			}
		}
	}
	return append(s, "fc")
}()

// corpusImages is how many of the corpus images ONNX Runtime is run on.
const corpusImages = 16

func TestCorpus(t *testing.T) {
	dir := os.Getenv(corpus.Env)
	if dir == "" {
		testdeps.Skipf(t, testdeps.ONNX, "FAULTLINE_ONNX_CORPUS not set (build a corpus with scripts/onnx-corpus-cache.sh DIR, or python3 scripts/onnx-corpus.py --out DIR)")
	}
	c, err := corpus.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		testdeps.Skipf(t, testdeps.ONNX, "no corpus in %s (no manifest.json)", dir)
	}
	if err != nil {
		t.Fatal(err)
	}
	checker, ort := haveOnnxChecker(), haveORT()
	requireCheckers(t, checker, ort)
	if !checker {
		t.Log("onnx.checker not run")
	}
	var images string
	if ort {
		images = writeFirst(t, readNpy(t, c.Path("images.npy")), corpusImages)
	} else {
		t.Log("ONNX Runtime not run")
	}
	var table []string
	for _, model := range slices.Sorted(maps.Keys(c.Manifest.Models)) {
		mm := c.Manifest.Models[model]
		var torchLogits *tensor.Dense
		if ort {
			torchLogits = readNpy(t, c.Path(mm.Logits))
		}
		for _, file := range slices.Sorted(maps.Keys(mm.Files)) {
			meta := mm.Files[file]
			t.Run(file, func(t *testing.T) {
				row, err := corpusFile(t, c.Path(file), model, meta.Opset, meta.Ops, checker, images, torchLogits)
				if err != nil {
					t.Fatal(err)
				}
				table = append(table, row)
			})
		}
	}
	t.Logf("file | nodes | folded | ops after folding | sites | ORT max |diff| folded vs original (vs PyTorch)\n%s",
		strings.Join(table, "\n"))
}

// corpusFile runs the pipeline on one corpus file and returns its table row.
func corpusFile(t *testing.T, path, model string, opset int, ops map[string]int, checker bool,
	images string, torchLogits *tensor.Dense) (string, error) {
	g, err := ReadFile(path)
	if err != nil {
		return "", err
	}
	got := map[string]int{}
	for _, n := range g.Nodes {
		got[n.Op]++
	}
	if g.Opset != opset || !maps.Equal(got, ops) {
		return "", fmt.Errorf("opset %d, ops %v; manifest: opset %d, ops %v", g.Opset, got, opset, ops)
	}
	g2, _ := roundTrip(t, g)
	sameGraph(t, g, g2)

	h, err := graph.Fold(g, []int64{1, 28, 28})
	if err != nil {
		return "", err
	}
	if err := graph.Check(h); err != nil {
		return "", err
	}
	after := map[string]int{}
	for _, n := range h.Nodes {
		after[n.Op]++
		if folded[n.Op] {
			t.Errorf("%s (%s) left after folding", n.Ref(), n.Op)
		}
	}
	sites, err := graph.WeightSites(h)
	if err != nil {
		return "", err
	}
	var convs, linears int
	var names []string
	for _, s := range sites {
		names = append(names, s.Name)
		if s.Kind == graph.ConvSite {
			convs++
		} else {
			linears++
		}
		if strings.Contains(s.Name, "::") || s.InShape == nil || s.OutShape == nil {
			t.Errorf("site %+v", s)
		}
	}
	if want := corpusLayers[model]; convs != want[0] || linears != want[1] {
		t.Errorf("%d conv and %d linear sites, want %v: %v", convs, linears, want, names)
	}
	if len(slices.Compact(slices.Sorted(slices.Values(names)))) != len(names) {
		t.Errorf("site names repeat: %v", names)
	}
	if model == "resnet18" && !slices.Equal(names, resnet18Sites) {
		t.Errorf("sites %v, want %v", names, resnet18Sites)
	}

	out := filepath.Join(t.TempDir(), filepath.Base(path))
	if err := WriteFile(out, h); err != nil {
		return "", err
	}
	h2, err := ReadFile(out)
	if err != nil {
		return "", err
	}
	sameGraph(t, h, h2)
	if checker {
		checkModels(t, out)
	}
	agree := "not run"
	if images != "" {
		orig, folded := runORT(t, path, images), runORT(t, out, images)
		diff, scale, err := maxDiff(folded, orig, corpusImages)
		if err != nil || diff > 1e-5*max(1, scale) {
			t.Errorf("ONNX Runtime: folded vs original model: max diff %g (logits up to %g) %v", diff, scale, err)
		}
		torchDiff, _, err := maxDiff(orig, torchLogits, corpusImages)
		if err != nil || torchDiff > 1e-3*max(1, scale) {
			t.Errorf("ONNX Runtime vs PyTorch: max diff %g (logits up to %g) %v", torchDiff, scale, err)
		}
		agree = fmt.Sprintf("%.2g (%.2g)", diff, torchDiff)
	}
	var opList []string
	for _, op := range slices.Sorted(maps.Keys(after)) {
		opList = append(opList, fmt.Sprintf("%s:%d", op, after[op]))
	}
	sort.Strings(opList)
	return fmt.Sprintf("%s | %d | %d | %s | %d+%d | %s", filepath.Base(path), len(g.Nodes), len(h.Nodes),
		strings.Join(opList, " "), convs, linears, agree), nil
}
