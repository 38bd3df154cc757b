package gorgonnx

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/faultline/faultline/internal/corpus"
	"github.com/faultline/faultline/model/onnx"
)

// The corpus: CNNs exported by PyTorch at opsets 11-17 (eval: BatchNorm
// folded; preserve: kept), built by `python3 scripts/onnx-corpus.py --out
// DIR`; FAULTLINE_ONNX_CORPUS=DIR runs TestCorpus on it. Every file gorgonnx
// supports must reproduce PyTorch's logits (manifest.json's per-model
// logits) on the first corpusImages images; a file it does not support must
// be reported by Supports with the ops named (corpusUnsupported).

// corpusImages is how many corpus images each file is run on.
const corpusImages = 16

// corpusUnsupported lists the corpus files gorgonnx cannot run, with the ops
// Supports names. Every corpus model runs (after the rewrites) today.
var corpusUnsupported = map[string][]string{}

func TestCorpus(t *testing.T) {
	dir := os.Getenv(corpus.Env)
	if dir == "" {
		t.Skip("FAULTLINE_ONNX_CORPUS not set (build a corpus with python3 scripts/onnx-corpus.py --out DIR)")
	}
	c, err := corpus.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		t.Skipf("no corpus in %s", dir)
	}
	if err != nil {
		t.Fatal(err)
	}
	images, shape, err := c.Images(corpusImages)
	if err != nil {
		t.Fatal(err)
	}
	if shape[0] < corpusImages {
		t.Fatalf("images of shape %v", shape)
	}
	// The rewrites and gorgonnx's results do not depend on the opset (the
	// differences were identical over 11 to 17), so one opset per model is
	// checked unless FAULTLINE_GORGONNX_ALL=1: MobileNetV2 alone takes 20 to 40 s
	// per file.
	everyOpset := os.Getenv("FAULTLINE_GORGONNX_ALL") == "1"
	var table []string
	for _, model := range slices.Sorted(maps.Keys(c.Manifest.Models)) {
		want, _, err := c.Logits(model, -1)
		if err != nil {
			t.Fatal(err)
		}
		for _, file := range slices.Sorted(maps.Keys(c.Manifest.Models[model].Files)) {
			if !everyOpset && !strings.Contains(file, "-opset13-") {
				continue
			}
			t.Run(file, func(t *testing.T) {
				path := c.Path(file)
				g, err := onnx.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				err = Supports(g)
				if ops, ok := corpusUnsupported[file]; ok {
					var u *UnsupportedError
					if !errors.As(err, &u) || !slices.Equal(u.OpNames(), ops) {
						t.Fatalf("Supports = %v, want the unsupported ops %v", err, ops)
					}
					table = append(table, fmt.Sprintf("%s | unsupported: %s", file, strings.Join(ops, ", ")))
					return
				}
				if err != nil {
					t.Fatalf("Supports: %v", err)
				}
				start := time.Now()
				got, classes, err := Run(path, images, shape)
				elapsed := time.Since(start)
				if err != nil {
					t.Fatal(err)
				}
				diff := agree(t, got, want[:len(got)], classes)
				table = append(table, fmt.Sprintf("%s | max |diff| %.2g | %v for %d images",
					file, diff, elapsed.Round(time.Millisecond), corpusImages))
			})
		}
	}
	t.Logf("file | gorgonnx vs PyTorch\n%s", strings.Join(table, "\n"))
}
