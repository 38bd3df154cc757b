package model

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/faultline/faultline/internal/torch"
	"github.com/sugarme/gotch"
)

// logits runs m in eval mode on a fixed random input and returns the logits.
func logits(t *testing.T, m *Model) []float32 {
	t.Helper()
	x, shape := randomInput(m.spec, 2, 7)
	return evalLogits(t, m, x, shape)
}

func TestCheckpointRoundTrip(t *testing.T) {
	for _, arch := range []string{"lenet5", "vgg11", "resnet20", "mlp"} {
		t.Run(arch, func(t *testing.T) {
			torch.ManualSeed(1)
			m := newModel(t, fashion(arch))
			dir := save(t, m, Metadata{Dataset: "synthetic", Seed: 1, TestAccuracy: 0.5, Steps: 3})
			for _, f := range []string{WeightsFile, NumpyFile, ONNXFile, MetadataFile} {
				if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
					t.Error(err)
				}
			}
			torch.ManualSeed(2) // a differently initialised model must come back identical
			m2, meta := load(t, dir)
			if meta.Arch != arch || meta.TestAccuracy != 0.5 || meta.Software.Libtorch == "" {
				t.Errorf("metadata %+v", meta)
			}
			if a, b := logits(t, m), logits(t, m2); !reflect.DeepEqual(a, b) {
				t.Errorf("logits differ after load: %v vs %v", a, b)
			}
			torch.ManualSeed(3)
			m3, err := Import(fashion(arch), filepath.Join(dir, NumpyFile))
			if err != nil {
				t.Fatal(err)
			}
			if a, b := logits(t, m), logits(t, m3); !reflect.DeepEqual(a, b) {
				t.Errorf("logits differ after npz import")
			}
		})
	}
}

func TestCheckpointBadInputs(t *testing.T) {
	good := save(t, newModel(t, fashion("lenet5")), Metadata{})
	copyDir := func(t *testing.T) string {
		d := t.TempDir()
		for _, f := range []string{WeightsFile, NumpyFile, ONNXFile, MetadataFile} {
			b, err := os.ReadFile(filepath.Join(good, f))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(d, f), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	cases := []struct {
		name   string
		mutate func(t *testing.T, dir string)
		want   string
	}{
		{"missing dir", func(t *testing.T, dir string) { os.RemoveAll(dir) }, "no such file"},
		{"no metadata", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, MetadataFile)) }, "no model.json"},
		{"corrupt metadata", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, MetadataFile), []byte("{\"kind\": "), 0o644)
		}, "corrupt metadata"},
		{"truncated weights", func(t *testing.T, dir string) {
			p := filepath.Join(dir, WeightsFile)
			b, _ := os.ReadFile(p)
			os.WriteFile(p, b[:len(b)/2], 0o644)
		}, "model.ot"},
		{"missing weights", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, WeightsFile)) }, "model.ot"},
		{"mismatched arch", func(t *testing.T, dir string) {
			p := filepath.Join(dir, MetadataFile)
			b, _ := os.ReadFile(p)
			os.WriteFile(p, []byte(strings.Replace(string(b), `"arch": "lenet5"`, `"arch": "mlp"`, 2)), 0o644)
		}, "mlp"},
		{"other weights", func(t *testing.T, dir string) {
			tmp := save(t, newModel(t, fashion("mlp")), Metadata{})
			b, _ := os.ReadFile(filepath.Join(tmp, WeightsFile))
			os.WriteFile(filepath.Join(dir, WeightsFile), b, 0o644)
			dropFileSums(t, dir) // as an older checkpoint: the tensors are checked
		}, "missing"},
		{"torn: weights of another save", func(t *testing.T, dir string) {
			tmp := save(t, newModel(t, fashion("lenet5")), Metadata{}) // same shapes, other values
			b, _ := os.ReadFile(filepath.Join(tmp, WeightsFile))
			os.WriteFile(filepath.Join(dir, WeightsFile), b, 0o644)
		}, "torn"},
		{"torn: npz of another save", func(t *testing.T, dir string) {
			p := filepath.Join(dir, NumpyFile)
			b, _ := os.ReadFile(p)
			b[len(b)/2] ^= 1
			os.WriteFile(p, b, 0o644)
		}, "model.npz"},
		{"torn: model.onnx of another save", func(t *testing.T, dir string) {
			p := filepath.Join(dir, ONNXFile)
			b, _ := os.ReadFile(p)
			b[len(b)/2] ^= 1
			os.WriteFile(p, b, 0o644)
		}, "model.onnx"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyDir(t)
			tc.mutate(t, dir)
			_, _, err := Load(dir, gotch.CPU)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
	if _, err := Import(fashion("vgg11"), filepath.Join(good, NumpyFile)); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("importing lenet5 weights as vgg11: %v", err)
	}
	if _, err := Import(fashion("lenet5"), filepath.Join(good, "x.bin")); err == nil {
		t.Error("unknown weight format accepted")
	}
}

// dropFileSums removes the files section from dir/model.json.
func dropFileSums(t *testing.T, dir string) {
	t.Helper()
	editMetadata(t, dir, func(raw map[string]any) { delete(raw, "files") })
}

// Save records each weight file's size and SHA-256 in model.json.
func TestSaveRecordsFileSums(t *testing.T) {
	dir := save(t, newModel(t, fashion("lenet5")), Metadata{})
	meta, err := ReadMetadata(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{WeightsFile, NumpyFile, ONNXFile} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if sum := meta.Files[name]; sum.Size != fi.Size() || len(sum.SHA256) != 64 {
			t.Errorf("files[%s] = %+v, the file has %d bytes", name, sum, fi.Size())
		}
	}
	if err := VerifyFiles(dir, meta); err != nil {
		t.Error(err)
	}
}
