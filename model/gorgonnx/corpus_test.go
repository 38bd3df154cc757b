package gorgonnx

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/faultline/faultline/internal/npz"
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

type corpusManifest struct {
	Images struct {
		File string `json:"file"`
	} `json:"images"`
	Models map[string]struct {
		Logits string `json:"logits"`
		Files  map[string]struct {
			Mode  string `json:"mode"`
			Opset int    `json:"opset"`
		} `json:"files"`
	} `json:"models"`
}

func readNpyFile(t *testing.T, path string) ([]float32, []int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d, err := npz.ReadNpy(f, filepath.Base(path))
	if err != nil {
		t.Fatal(err)
	}
	v, ok := d.Data().([]float32)
	if !ok {
		t.Fatalf("%s: %v, want float32", path, d.Dtype())
	}
	return v, d.Shape()
}

func TestCorpus(t *testing.T) {
	dir := os.Getenv("FAULTLINE_ONNX_CORPUS")
	if dir == "" {
		t.Skip("FAULTLINE_ONNX_CORPUS not set (build a corpus with python3 scripts/onnx-corpus.py --out DIR)")
	}
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if os.IsNotExist(err) {
		t.Skipf("no corpus in %s", dir)
	}
	if err != nil {
		t.Fatal(err)
	}
	var m corpusManifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	imgFile := m.Images.File
	if imgFile == "" {
		imgFile = "images.npy"
	}
	all, ishape := readNpyFile(t, filepath.Join(dir, imgFile))
	if len(ishape) != 4 || ishape[0] < corpusImages {
		t.Fatalf("%s: shape %v", imgFile, ishape)
	}
	shape := []int64{corpusImages, int64(ishape[1]), int64(ishape[2]), int64(ishape[3])}
	images := all[:corpusImages*ishape[1]*ishape[2]*ishape[3]]
	// The rewrites and gorgonnx's results do not depend on the opset (the
	// differences were identical over 11 to 17), so one opset per model is
	// checked unless FAULTLINE_GORGONNX_ALL=1: MobileNetV2 alone takes 20 to 40 s
	// per file.
	everyOpset := os.Getenv("FAULTLINE_GORGONNX_ALL") == "1"
	var table []string
	for _, model := range slices.Sorted(maps.Keys(m.Models)) {
		mm := m.Models[model]
		want, _ := readNpyFile(t, filepath.Join(dir, mm.Logits))
		for _, file := range slices.Sorted(maps.Keys(mm.Files)) {
			if !everyOpset && !strings.Contains(file, "-opset13-") {
				continue
			}
			t.Run(file, func(t *testing.T) {
				path := filepath.Join(dir, file)
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
