package model

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The ONNX corpus (CNNs exported by PyTorch at opsets 11-17, eval and PRESERVE
// exports, built by `python3 scripts/onnx-corpus.py --out DIR`):
// FAULTLINE_ONNX_CORPUS=DIR runs every file on the corpus images and compares
// its logits with PyTorch's; FAULTLINE_ONNX_CORPUS_IMAGES=N uses the first N
// images only (default: all).

// corpusManifest is the part of DIR/manifest.json the test reads.
type corpusManifest struct {
	Images struct {
		Count int    `json:"count"`
		File  string `json:"file"`
	} `json:"images"`
	Models map[string]struct {
		Logits string `json:"logits"`
		Files  map[string]struct {
			Mode  string `json:"mode"`
			Opset int    `json:"opset"`
		} `json:"files"`
	} `json:"models"`
}

func TestONNXCorpus(t *testing.T) {
	dir := os.Getenv("FAULTLINE_ONNX_CORPUS")
	if dir == "" {
		t.Skip("FAULTLINE_ONNX_CORPUS not set (build a corpus with python3 scripts/onnx-corpus.py --out DIR)")
	}
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var man corpusManifest
	if err := json.Unmarshal(b, &man); err != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	x, xshape := readNpy(t, filepath.Join(dir, man.Images.File))
	n := xshape[0]
	if s := os.Getenv("FAULTLINE_ONNX_CORPUS_IMAGES"); s != "" {
		k, err := strconv.Atoi(s)
		if err != nil || k < 1 {
			t.Fatalf("FAULTLINE_ONNX_CORPUS_IMAGES=%q: want a positive count", s)
		}
		n = min(n, k)
	}
	per := len(x) / xshape[0]
	x = x[:n*per]
	shape := []int64{int64(n), int64(xshape[1]), int64(xshape[2]), int64(xshape[3])}
	var table []string
	for _, name := range slices.Sorted(maps.Keys(man.Models)) {
		mm := man.Models[name]
		ref, rshape := readNpy(t, filepath.Join(dir, mm.Logits))
		classes := rshape[1]
		ref = ref[:n*classes]
		worst, worstScale, worstFile := 0.0, 0.0, ""
		for _, file := range slices.Sorted(maps.Keys(mm.Files)) {
			t.Run(file, func(t *testing.T) {
				m := loadONNX(t, filepath.Join(dir, file))
				got := corpusLogits(t, m, x, shape, 100)
				diff, scale := compareRef(t, file, got, ref, n)
				table = append(table, fmt.Sprintf("%s | %d sites | %d stages | %.3g | %.3g", file, len(m.Sites()), m.NumStages(), diff, scale))
				if diff > worst || worstFile == "" {
					worst, worstScale, worstFile = diff, scale, file
				}
			})
		}
		t.Logf("%s: max |faultline - pytorch| = %.3g (max |logit| %.3g, %s)", name, worst, worstScale, worstFile)
	}
	t.Logf("%d images; file | sites | stages | max |faultline - pytorch| | max |logit|\n%s", n, strings.Join(table, "\n"))
}

// corpusLogits runs m in eval mode on x in batches of at most batch.
func corpusLogits(t *testing.T, m *Model, x []float32, shape []int64, batch int) []float32 {
	t.Helper()
	per := len(x) / int(shape[0])
	var out []float32
	for i := 0; i < int(shape[0]); i += batch {
		k := min(batch, int(shape[0])-i)
		s := append([]int64{int64(k)}, shape[1:]...)
		out = append(out, evalLogits(t, m, x[i*per:(i+k)*per], s)...)
	}
	return out
}
