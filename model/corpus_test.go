package model

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/faultline/faultline/internal/corpus"
)

// The ONNX corpus (CNNs exported by PyTorch at opsets 11-17, eval and PRESERVE
// exports, built by `python3 scripts/onnx-corpus.py --out DIR`):
// FAULTLINE_ONNX_CORPUS=DIR runs every file on the corpus images and compares
// its logits with PyTorch's; FAULTLINE_ONNX_CORPUS_IMAGES=N uses the first N
// images only (default: all).

func TestONNXCorpus(t *testing.T) {
	dir := os.Getenv(corpus.Env)
	if dir == "" {
		t.Skip("FAULTLINE_ONNX_CORPUS not set (build a corpus with python3 scripts/onnx-corpus.py --out DIR)")
	}
	c, err := corpus.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := -1 // all
	if s := os.Getenv("FAULTLINE_ONNX_CORPUS_IMAGES"); s != "" {
		if n, err = strconv.Atoi(s); err != nil || n < 1 {
			t.Fatalf("FAULTLINE_ONNX_CORPUS_IMAGES=%q: want a positive count", s)
		}
	}
	x, shape, err := c.Images(n)
	if err != nil {
		t.Fatal(err)
	}
	n = int(shape[0])
	var table []string
	for _, name := range slices.Sorted(maps.Keys(c.Manifest.Models)) {
		ref, _, err := c.Logits(name, n)
		if err != nil {
			t.Fatal(err)
		}
		worst, worstScale, worstFile := 0.0, 0.0, ""
		for _, file := range slices.Sorted(maps.Keys(c.Manifest.Models[name].Files)) {
			t.Run(file, func(t *testing.T) {
				m := loadONNX(t, c.Path(file))
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
