// Package corpus reads the ONNX corpus the tests of several packages share:
// CNNs exported by PyTorch at opsets 11 to 17 (eval exports, BatchNorm folded;
// preserve exports, BatchNorm kept), built by `python3 scripts/onnx-corpus.py
// --out DIR` (or scripts/onnx-corpus-cache.sh DIR, as `make test` does). DIR
// holds manifest.json, the test images (images.npy, float32 [N, 1, 28, 28],
// normalised), their labels (labels.npy, int64 [N]) and, per model, PyTorch's
// logits on the images (MODEL.logits.npy, float32 [N, classes]). The tests
// find DIR in FAULTLINE_ONNX_CORPUS (Env) and decide themselves whether a
// missing corpus skips or fails them. It is for tests only.
package corpus

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"gorgonia.org/tensor"

	"github.com/faultline/faultline/internal/npz"
)

// Env is the environment variable naming the corpus directory.
const Env = "FAULTLINE_ONNX_CORPUS"

// Manifest is the part of manifest.json the tests read.
type Manifest struct {
	Images ImageFiles       `json:"images"`
	Models map[string]Model `json:"models"`
}

// ImageFiles names the images and labels files (relative to the corpus
// directory; "" for images.npy and labels.npy).
type ImageFiles struct {
	File   string `json:"file"`
	Labels string `json:"labels"`
}

// Model is one corpus model: the file of PyTorch's logits and the ONNX
// exports, by file name.
type Model struct {
	Logits string          `json:"logits"`
	Files  map[string]File `json:"files"`
}

// File is one ONNX export of a model.
type File struct {
	// Mode is "eval" (BatchNorm folded) or "preserve" (BatchNorm kept).
	Mode  string `json:"mode"`
	Opset int    `json:"opset"`
	// Ops counts the export's nodes by op type.
	Ops map[string]int `json:"ops"`
}

// Corpus is a corpus directory and its manifest. The zero Manifest (a
// Corpus{Dir: dir} not made by Open) reads the images and labels under their
// default names.
type Corpus struct {
	Dir      string
	Manifest Manifest
}

// Open reads dir's manifest.json. Where dir has none, the error wraps
// fs.ErrNotExist (errors.Is), so that a test can skip.
func Open(dir string) (*Corpus, error) {
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return nil, fmt.Errorf("corpus: %w", err)
	}
	c := &Corpus{Dir: dir}
	if err := json.Unmarshal(b, &c.Manifest); err != nil {
		return nil, fmt.Errorf("corpus: %s: %w", filepath.Join(dir, "manifest.json"), err)
	}
	return c, nil
}

// Path returns the path of a file of the corpus named relative to its
// directory.
func (c *Corpus) Path(file string) string { return filepath.Join(c.Dir, file) }

// Images returns the first n images (all when n is negative or more than the
// corpus has) as one float32 slice in C order, and their shape [n, C, H,
// W].
func (c *Corpus) Images(n int) ([]float32, []int64, error) {
	path := c.Path(orDefault(c.Manifest.Images.File, "images.npy"))
	x, shape, err := Float32s(path)
	if err != nil {
		return nil, nil, err
	}
	if len(shape) != 4 {
		return nil, nil, fmt.Errorf("corpus: %s: images of shape %v, want [N C H W]", path, shape)
	}
	x, k := rows(x, shape, n)
	return x, []int64{int64(k), int64(shape[1]), int64(shape[2]), int64(shape[3])}, nil
}

// Labels returns the labels of the first n images (all when n is
// negative or more than the corpus has).
func (c *Corpus) Labels(n int) ([]int64, error) {
	path := c.Path(orDefault(c.Manifest.Images.Labels, "labels.npy"))
	a, err := readNpy(path)
	if err != nil {
		return nil, err
	}
	v, ok := a.Data().([]int64)
	if !ok || len(a.Shape()) != 1 {
		return nil, fmt.Errorf("corpus: %s: %v %v, want int64 [N]", path, a.Dtype(), a.Shape())
	}
	v, _ = rows(v, a.Shape(), n)
	return v, nil
}

// Logits returns PyTorch's logits of model (a key of Manifest.Models) on the
// first n images (all when n is negative or more than the corpus has),
// row after row, and the number of classes.
func (c *Corpus) Logits(model string, n int) ([]float32, int, error) {
	m, ok := c.Manifest.Models[model]
	if !ok {
		return nil, 0, fmt.Errorf("corpus: no model %q in %s", model, c.Path("manifest.json"))
	}
	x, shape, err := Float32s(c.Path(m.Logits))
	if err != nil {
		return nil, 0, err
	}
	if len(shape) != 2 {
		return nil, 0, fmt.Errorf("corpus: %s: logits of shape %v, want [N classes]", c.Path(m.Logits), shape)
	}
	x, _ = rows(x, shape, n)
	return x, shape[1], nil
}

// Float32s reads a float32 .npy file: its values in C order and its shape.
func Float32s(path string) ([]float32, []int, error) {
	a, err := readNpy(path)
	if err != nil {
		return nil, nil, err
	}
	v, ok := a.Data().([]float32)
	if !ok {
		return nil, nil, fmt.Errorf("corpus: %s: %v, want float32", path, a.Dtype())
	}
	return v, a.Shape(), nil
}

// readNpy reads the .npy file at path.
func readNpy(path string) (*tensor.Dense, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("corpus: %w", err)
	}
	defer f.Close()
	a, err := npz.ReadNpy(f, path)
	if err != nil {
		return nil, fmt.Errorf("corpus: %w", err)
	}
	return a, nil
}

// rows returns the first n rows (all when n is negative or more than
// there are) of v, an array of shape (rows first), and how many it returns.
func rows[T any](v []T, shape []int, n int) ([]T, int) {
	if n < 0 || n > shape[0] {
		n = shape[0]
	}
	if shape[0] == 0 {
		return v[:0], 0
	}
	return v[:n*(len(v)/shape[0])], n
}

// orDefault returns name, or def when name is "".
func orDefault(name, def string) string {
	if name == "" {
		return def
	}
	return name
}
