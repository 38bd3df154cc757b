package corpus

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"gorgonia.org/tensor"

	"github.com/faultline/faultline/internal/npz"
)

// writeNpy writes backing, of shape, to dir/name.
func writeNpy(t *testing.T, dir, name string, backing any, shape ...int) {
	t.Helper()
	var buf bytes.Buffer
	if err := npz.WriteNpy(&buf, tensor.New(tensor.WithShape(shape...), tensor.WithBacking(backing))); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// A corpus of three 1x2x2 images and one model reads back as written, the
// first n rows or all of them.
func TestCorpus(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Open without a manifest: %v, want fs.ErrNotExist", err)
	}
	images := make([]float32, 12)
	for i := range images {
		images[i] = float32(i) / 4
	}
	writeNpy(t, dir, "images.npy", images, 3, 1, 2, 2)
	writeNpy(t, dir, "labels.npy", []int64{7, 8, 9}, 3)
	writeNpy(t, dir, "net.logits.npy", []float32{1, 2, 3, 4, 5, 6}, 3, 2)
	manifest := `{"images": {"count": 3, "file": "images.npy", "labels": "labels.npy"},
		"models": {"net": {"logits": "net.logits.npy", "files": {"net-opset13-eval.onnx": {"mode": "eval", "opset": 13, "ops": {"Conv": 1}}}}}}`
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if f := c.Manifest.Models["net"].Files["net-opset13-eval.onnx"]; f.Mode != "eval" || f.Opset != 13 || f.Ops["Conv"] != 1 {
		t.Errorf("file entry %+v", f)
	}
	x, shape, err := c.Images(2)
	if err != nil || !slices.Equal(x, images[:8]) || !slices.Equal(shape, []int64{2, 1, 2, 2}) {
		t.Errorf("Images(2) = %v %v, %v", x, shape, err)
	}
	if x, shape, err := (&Corpus{Dir: dir}).Images(-1); err != nil || !slices.Equal(x, images) || shape[0] != 3 {
		t.Errorf("Images(-1) without the manifest = %v %v, %v", x, shape, err)
	}
	if l, err := c.Labels(5); err != nil || !slices.Equal(l, []int64{7, 8, 9}) {
		t.Errorf("Labels(5) = %v, %v", l, err)
	}
	if v, classes, err := c.Logits("net", 1); err != nil || !slices.Equal(v, []float32{1, 2}) || classes != 2 {
		t.Errorf("Logits(net, 1) = %v, %d, %v", v, classes, err)
	}
	if _, _, err := c.Logits("other", 1); err == nil {
		t.Error("Logits of a model not in the manifest: no error")
	}
	writeNpy(t, dir, "labels.npy", []float32{7, 8, 9}, 3)
	if _, err := c.Labels(-1); err == nil {
		t.Error("float32 labels: no error")
	}
}
