package model

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/faultline/faultline/internal/npz"
	"github.com/faultline/faultline/internal/testdeps"
	"github.com/faultline/faultline/internal/torch"
	"github.com/sugarme/gotch"
	"gorgonia.org/tensor"
)

// Cross-checks against PyTorch itself: testdata/pytorch_zoo.py defines the zoo as
// plain nn.Modules with faultline's state_dict names, so weights can go both ways
// and the logits must agree.

// torchPython is Debian's interpreter, which has python3-torch and numpy; the
// python3 first in PATH may be another one without them.
const torchPython = "/usr/bin/python3"

// The tiny fixture checked in under testdata (regenerate with the command in
// TestTorchStateDictFixture) so the .pt decoding path is exercised without Python.
var tinyVGG = Spec{Arch: "vgg11", InChannels: 1, Height: 16, Width: 16, Classes: 3, WidthMult: 1.0 / 64, BatchNorm: true}

// needTorch skips unless torchPython can import torch, and in -short mode.
func needTorch(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs PyTorch in a subprocess (seconds per model); skipped in -short mode")
	}
	out, err := exec.Command(torchPython, "-c", "import torch, numpy").CombinedOutput()
	if err != nil {
		testdeps.Skipf(t, testdeps.Torch, "%s cannot import torch (scripts/setup.sh --test installs python3-torch): %v: %s",
			torchPython, err, bytes.TrimSpace(out))
	}
}

// pyZoo runs testdata/pytorch_zoo.py with args.
func pyZoo(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command(torchPython, append([]string{filepath.Join("testdata", "pytorch_zoo.py")}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pytorch_zoo.py %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func specJSON(t *testing.T, s Spec) string {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeNpy(t *testing.T, path string, data []float32, shape []int64) {
	t.Helper()
	dims := make([]int, len(shape))
	for i, d := range shape {
		dims[i] = int(d)
	}
	var buf bytes.Buffer
	if err := npz.WriteNpy(&buf, tensor.New(tensor.WithShape(dims...), tensor.WithBacking(data))); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readNpy(t *testing.T, path string) ([]float32, []int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	a, err := npz.ReadNpy(f, path)
	if err != nil {
		t.Fatal(err)
	}
	v, err := float32Values(a)
	if err != nil {
		t.Fatal(err)
	}
	return v, a.Shape()
}

// isBatchNorm reports whether a parameter belongs to a BatchNorm layer.
func isBatchNorm(m *Model, name string) bool {
	i := strings.LastIndexByte(name, '.')
	_, ok := m.byName[name[:i+1]+"running_mean"]
	return i > 0 && ok
}

// nonTrivialState gives m's BatchNorm layers affine parameters other than 1/0 and
// running statistics other than 0/1 (training-mode forwards), so a swapped or
// dropped tensor changes the logits.
func nonTrivialState(t *testing.T, m *Model, seed int64) {
	t.Helper()
	r := rand.New(rand.NewSource(seed))
	do(t, func() error {
		return torch.NoGrad(func() error {
			for _, p := range m.Params() {
				if !p.Trainable || !isBatchNorm(m, p.Name) {
					continue
				}
				v, err := torch.Float32s(p.Tensor)
				if err != nil {
					return err
				}
				for i := range v {
					v[i] += float32(r.Float64() - 0.5)
				}
				shape, _ := torch.Shape(p.Tensor)
				src, err := torch.FromFloat32(v, shape, gotch.CPU)
				if err != nil {
					return err
				}
				err = p.Tensor.CopyFrom(src)
				_ = src.Drop()
				if err != nil {
					return err
				}
			}
			s := m.Spec()
			for i := 0; i < 3; i++ {
				x, shape := randomInput(s, 8, seed+int64(i)+1)
				for j := range x {
					x[j] = 1.5*x[j] + 0.3
				}
				in, err := torch.FromFloat32(x, shape, gotch.CPU)
				if err != nil {
					return err
				}
				y, err := m.Forward(in, true, nil)
				_ = in.Drop()
				if err != nil {
					return err
				}
				_ = y.Drop()
			}
			return nil
		})
	})
	do(t, func() error {
		for _, p := range m.Params() {
			if strings.HasSuffix(p.Name, ".running_mean") {
				v, err := torch.Float32s(p.Tensor)
				if err != nil {
					return err
				}
				if v[0] == 0 {
					t.Errorf("%s not updated by training forwards", p.Name)
				}
			}
		}
		return nil
	})
}

// faultline -> PyTorch: a checkpoint's model.npz loads strictly into the PyTorch
// twin, which computes the same logits.
func TestPyTorchLoadsFaultlineNPZ(t *testing.T) {
	needTorch(t)
	for i, arch := range Architectures() {
		t.Run(arch, func(t *testing.T) {
			spec := fashion(arch)
			torch.ManualSeed(int64(100 + i))
			m := newModel(t, spec)
			nonTrivialState(t, m, int64(200+i))
			dir := save(t, m, Metadata{Dataset: "synthetic", Steps: 3})
			x, shape := randomInput(spec, 4, int64(300+i))
			in, out := filepath.Join(dir, "input.npy"), filepath.Join(dir, "logits.npy")
			writeNpy(t, in, x, shape)
			pyZoo(t, "logits", arch, specJSON(t, spec), filepath.Join(dir, NumpyFile), in, out)
			want, wshape := readNpy(t, out)
			if len(wshape) != 2 || wshape[0] != 4 || wshape[1] != int(spec.Classes) {
				t.Fatalf("pytorch logits shape %v", wshape)
			}
			compareLogits(t, arch, evalLogits(t, m, x, shape), want)
		})
	}
}

// PyTorch -> faultline: a torch.save'd state_dict (through gotch's pickle decoder;
// the default zip format and the pre-1.6 legacy one) and the same state_dict as
// an .npz import into faultline, which computes PyTorch's logits.
func TestPyTorchStateDictImport(t *testing.T) {
	needTorch(t)
	for i, arch := range Architectures() {
		t.Run(arch, func(t *testing.T) {
			spec := fashion(arch)
			dir := t.TempDir()
			x, shape := randomInput(spec, 4, int64(400+i))
			in, out := filepath.Join(dir, "input.npy"), filepath.Join(dir, "logits.npy")
			pt, legacy := filepath.Join(dir, "state.pt"), filepath.Join(dir, "legacy.pt")
			npzPath := filepath.Join(dir, "state.npz")
			writeNpy(t, in, x, shape)
			pyZoo(t, "savestate", arch, specJSON(t, spec), pt, fmt.Sprint(500+i),
				"--legacy", legacy, "--npz", npzPath, "--logits", in, out)
			want, _ := readNpy(t, out)
			for name, path := range map[string]string{"pt": pt, "legacy_pt": legacy, "npz": npzPath} {
				t.Run(name, func(t *testing.T) {
					torch.ManualSeed(int64(600 + i)) // unrelated initial weights
					m, err := Import(spec, path)
					if err != nil {
						t.Fatal(err)
					}
					compareLogits(t, arch+" "+filepath.Base(path), evalLogits(t, m, x, shape), want)
				})
			}
		})
	}
}

// The checked-in tiny fixture (BatchNorm, int64 num_batches_tracked, 58 tensors)
// decodes without Python. Regenerate (in model/) with
//
//	/usr/bin/python3 testdata/pytorch_zoo.py savestate vgg11 \
//	    '{"arch":"vgg11","in_channels":1,"height":16,"width":16,"classes":3,"width_multiplier":0.015625,"batch_norm":true}' \
//	    testdata/vgg11_tiny.pt 7 --io testdata/vgg11_tiny_io.npz
func TestTorchStateDictFixture(t *testing.T) {
	ref := npzFloats(t, filepath.Join("testdata", "vgg11_tiny_io.npz"))
	x, want := ref["input"], ref["logits"]
	n := int64(len(x)) / (tinyVGG.InChannels * tinyVGG.Height * tinyVGG.Width)
	if n < 1 || int64(len(want)) != n*tinyVGG.Classes {
		t.Fatalf("fixture has %d inputs and %d logits", len(x), len(want))
	}
	m, err := Import(tinyVGG, filepath.Join("testdata", "vgg11_tiny.pt"))
	if err != nil {
		t.Fatal(err)
	}
	compareLogits(t, "vgg11_tiny.pt", evalLogits(t, m, x, []int64{n, tinyVGG.InChannels, tinyVGG.Height, tinyVGG.Width}), want)
	do(t, func() error {
		rv, err := m.Param("features.1.running_var")
		if err != nil {
			return err
		}
		v, err := torch.Float32s(rv)
		if err != nil {
			return err
		}
		if v[0] == 1 {
			t.Error("running_var was not imported (still 1)")
		}
		return nil
	})
}

// importChildEnv names the file TestTorchImportChild imports.
const importChildEnv = "FAULTLINE_TEST_IMPORT_PT"

// importChildTimeout bounds one Import of a tiny file in the child process.
const importChildTimeout = 20 * time.Second

// TestTorchImportChild is the child process of TestTorchImportCorrupt: it imports
// the file named by $FAULTLINE_TEST_IMPORT_PT and prints the outcome.
func TestTorchImportChild(t *testing.T) {
	p := os.Getenv(importChildEnv)
	if p == "" {
		t.Skip("helper process of TestTorchImportCorrupt")
	}
	if _, err := Import(tinyVGG, p); err != nil {
		fmt.Printf("IMPORT-ERROR: %v\n", err)
		return
	}
	fmt.Println("IMPORT-OK")
}

// importInChild imports p in a child process (this test binary running
// TestTorchImportChild), so that a crash or a hang fails this test instead of
// taking the whole run down; it fails unless Import returned an error.
func importInChild(t *testing.T, p string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), importChildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestTorchImportChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), importChildEnv+"="+p)
	out, err := cmd.CombinedOutput()
	switch {
	case ctx.Err() != nil:
		t.Errorf("Import did not return within %v (hang); killed", importChildTimeout)
	case err != nil:
		t.Errorf("Import crashed the process: %v\n%s", err, out)
	case bytes.Contains(out, []byte("IMPORT-OK")):
		t.Errorf("Import succeeded")
	case bytes.Contains(out, []byte("IMPORT-ERROR: ")):
		line := out[bytes.Index(out, []byte("IMPORT-ERROR: ")):]
		if i := bytes.IndexByte(line, '\n'); i >= 0 {
			line = line[:i]
		}
		t.Logf("%s", line)
	default:
		t.Errorf("child printed no outcome:\n%s", out)
	}
}

// rezip rewrites the zip archive b entry by entry (stored, in order); edit returns
// an entry's new contents, nil to leave it out.
func rezip(t *testing.T, b []byte, edit func(name string, data []byte) []byte) []byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	zw := zip.NewWriter(&out)
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if data = edit(f.Name, data); data == nil {
			continue
		}
		w, err := zw.CreateHeader(&zip.FileHeader{Name: f.Name, Method: zip.Store})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// Damaged or foreign .pt files are errors: never a crash or a hang. Each one is
// imported in a child process.
func TestTorchImportCorrupt(t *testing.T) {
	good, err := os.ReadFile(filepath.Join("testdata", "vgg11_tiny.pt"))
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewSource(1))
	random := make([]byte, 4096)
	r.Read(random)
	// The first storage's element count in data.pkl, as torch 1.13 pickles it:
	// ('storage', FloatStorage, '0', 'cpu', 9) with 'cpu' memoised as 7.
	sizeOp := []byte("X\x03\x00\x00\x00cpuq\x07K\x09")
	withSize := func(op []byte) func(string, []byte) []byte {
		return func(name string, b []byte) []byte {
			if !strings.HasSuffix(name, "/data.pkl") {
				return b
			}
			if !bytes.Contains(b, sizeOp) {
				t.Fatalf("fixture's data.pkl does not hold %q", sizeOp)
			}
			return bytes.Replace(b, sizeOp, append(sizeOp[:len(sizeOp)-2:len(sizeOp)-2], op...), 1)
		}
	}
	// An (uncompressed) tar archive: the pre-1.6 legacy container.
	var tarball bytes.Buffer
	{
		tw := tar.NewWriter(&tarball)
		if err := tw.WriteHeader(&tar.Header{Name: "pickle", Mode: 0o644, Size: int64(len(random))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(random); err != nil {
			t.Fatal(err)
		}
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	cases := map[string][]byte{
		"tar archive":    tarball.Bytes(),
		"empty":          nil,
		"zero blocks":    make([]byte, 1024),
		"random bytes":   random,
		"zip magic only": append([]byte("PK\x03\x04"), random[:100]...),
		"truncated 1/2":  good[:len(good)/2],
		"truncated 9/10": good[:len(good)*9/10],
		"no end record":  good[:len(good)-10],
		// data.pkl alone: the storages it refers to are missing.
		"pickle only": rezip(t, good, func(name string, b []byte) []byte {
			if strings.HasSuffix(name, "/data.pkl") {
				return b
			}
			return nil
		}),
		"short storages": rezip(t, good, func(name string, b []byte) []byte {
			if strings.Contains(name, "/data/") {
				return b[:len(b)/2]
			}
			return b
		}),
		// A storage of 2^45 floats (128 TiB) or of -1 elements.
		"huge storage":     rezip(t, good, withSize([]byte("\x8a\x06\x00\x00\x00\x00\x00\x20"))),
		"negative storage": rezip(t, good, withSize([]byte("J\xff\xff\xff\xff"))),
		"text":             []byte("this is not a state_dict\n"),
		"pickle magic":     []byte("\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."),
		"npz renamed .pt":  nil, // filled below
		"corrupted middle": nil, // filled below
	}
	mid := append([]byte(nil), good...)
	for i := len(mid) / 3; i < len(mid)/3+512; i++ {
		mid[i] ^= 0x5a
	}
	cases["corrupted middle"] = mid
	{
		dir := t.TempDir()
		torch.ManualSeed(1)
		m, err := New(tinyVGG, gotch.CPU)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.SaveNPZ(filepath.Join(dir, "w.npz"), 0); err != nil {
			t.Fatal(err)
		}
		if cases["npz renamed .pt"], err = os.ReadFile(filepath.Join(dir, "w.npz")); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	for name, b := range cases {
		p := filepath.Join(dir, strings.NewReplacer(" ", "_", "/", "of").Replace(name)+".pt")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			importInChild(t, p)
		})
	}
	// A sound state_dict of another architecture names what does not match.
	if _, err := Import(fashion("lenet5"), filepath.Join("testdata", "vgg11_tiny.pt")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("vgg11 state_dict imported as lenet5: %v", err)
	}
	// Same architecture, other shapes.
	wide := tinyVGG
	wide.WidthMult = 1.0 / 32
	if _, err := Import(wide, filepath.Join("testdata", "vgg11_tiny.pt")); err == nil || !strings.Contains(err.Error(), "shape") {
		t.Errorf("narrow vgg11 state_dict imported into a wider one: %v", err)
	}
}
