package npz

import (
	"archive/zip"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gorgonia.org/tensor"
)

// zipEntry is one raw entry of a crafted archive.
type zipEntry struct {
	name   string
	data   []byte
	method uint16
}

// zipOf builds an archive from raw entries.
func zipOf(t testing.TB, entries ...zipEntry) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for _, e := range entries {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: e.name, Method: e.method})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// checkpoint is a small state dict with the shapes a PyTorch model has.
func checkpoint() []Array {
	w := make([]float32, 2*3*4)
	for i := range w {
		w[i] = float32(i) / 8
	}
	return []Array{
		{"conv1.weight", tensor.New(tensor.WithShape(2, 3, 4), tensor.WithBacking(w))},
		{"conv1.bias", tensor.New(tensor.WithShape(2), tensor.WithBacking([]float32{0.5, -0.5}))},
		{"bn1.num_batches_tracked", tensor.New(tensor.WithShape(), tensor.WithBacking([]int64{938}))},
		{"bn1.running_var", tensor.New(tensor.WithShape(2), tensor.WithBacking([]float64{1, 2}))},
		{"labels", tensor.New(tensor.WithShape(3), tensor.WithBacking([]int32{3, 1, 4}))},
		{"pixels", tensor.New(tensor.WithShape(1, 2), tensor.WithBacking([]uint8{0, 255}))},
		{"layer1/mask", tensor.New(tensor.WithShape(2), tensor.WithBacking([]bool{true, false}))},
	}
}

func sameArrays(t testing.TB, got, want []Array) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d arrays, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Name != want[i].Name {
			t.Fatalf("array %d: name %q, want %q", i, got[i].Name, want[i].Name)
		}
		sameTensor(t, got[i].T, want[i].T)
	}
}

func TestWriteRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "model.npz")
	want := checkpoint()
	if err := Write(path, want); err != nil {
		t.Fatal(err)
	}
	got, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	sameArrays(t, got, want)

	// Same arrays, same bytes.
	first, _ := os.ReadFile(path)
	if err := Write(path, want); err != nil {
		t.Fatal(err)
	}
	second, _ := os.ReadFile(path)
	if !bytes.Equal(first, second) {
		t.Error("writing the same arrays twice gave different files")
	}

	// An empty archive is valid.
	if err := Write(path, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := Read(path); err != nil || len(got) != 0 {
		t.Fatalf("empty archive: %v, %v", got, err)
	}
}

func TestWriteErrorsKeepOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "model.npz")
	if err := Write(path, checkpoint()); err != nil {
		t.Fatal(err)
	}
	old, _ := os.ReadFile(path)
	one := tensor.New(tensor.WithShape(1), tensor.WithBacking([]float32{1}))
	tests := []struct {
		name   string
		arrays []Array
		want   string
	}{
		{"duplicate", []Array{{"a", one}, {"a", one}}, `npz: ` + path + `: entry "a.npy": duplicate name`},
		{"empty name", []Array{{"", one}}, "empty name"},
		{"parent", []Array{{"../a", one}}, `name "../a" is not a safe relative path`},
		{"absolute", []Array{{"/a", one}}, "not a safe relative path"},
		{"backslash", []Array{{`a\b`, one}}, "not a safe relative path"},
		{"nil", []Array{{"a", nil}}, `entry "a.npy": nil tensor`},
		{"dtype", []Array{{"c", tensor.New(tensor.WithShape(1), tensor.WithBacking([]complex128{1}))}}, "complex128 is not supported"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Write(path, tc.arrays)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want error containing %q", err, tc.want)
			}
			if now, _ := os.ReadFile(path); !bytes.Equal(now, old) {
				t.Fatal("failed write changed the file")
			}
		})
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
	if err := Write(filepath.Join(dir, "missing", "x.npz"), nil); err == nil || !strings.HasPrefix(err.Error(), "npz: write ") {
		t.Errorf("write into a missing directory: %v", err)
	}
}

// TestReadNumpyFixtures reads archives made by numpy.savez and savez_compressed
// (testdata/gen.py), so NumPy interop is tested even without Python.
func TestReadNumpyFixtures(t *testing.T) {
	w := make([]float32, 24)
	for i := range w {
		w[i] = float32(i) / 8
	}
	want := []Array{
		{"conv.weight", tensor.New(tensor.WithShape(2, 3, 4), tensor.WithBacking(w))},
		{"bn.num_batches_tracked", tensor.New(tensor.WithShape(), tensor.WithBacking([]int64{5}))},
		{"f8", tensor.New(tensor.WithShape(3), tensor.WithBacking([]float64{1.5, -2.25, posInf()}))},
		{"i4", tensor.New(tensor.WithShape(2, 2), tensor.WithBacking([]int32{1, -2, 3, -4}))},
		{"u1", tensor.New(tensor.WithShape(3), tensor.WithBacking([]uint8{0, 7, 255}))},
		{"mask", tensor.New(tensor.WithShape(3), tensor.WithBacking([]bool{true, false, true}))},
		{"big", tensor.New(tensor.WithShape(2), tensor.WithBacking([]float32{1, -0.5}))},
	}
	for _, file := range []string{"numpy.npz", "numpy_compressed.npz"} {
		t.Run(file, func(t *testing.T) {
			got, err := Read(filepath.Join("testdata", file))
			if err != nil {
				t.Fatal(err)
			}
			sameArrays(t, got, want)
		})
	}
	f, err := os.Open("testdata/numpy_v2.npy")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := ReadNpy(f, "numpy_v2.npy")
	if err != nil {
		t.Fatal(err)
	}
	sameTensor(t, got, tensor.New(tensor.WithShape(1, 3), tensor.WithBacking([]int64{1, 2, 3})))
}

func posInf() float64 {
	x := 0.0
	return 1 / x
}

func TestReadFromErrors(t *testing.T) {
	good := npyBytes(t, vec32(1, 2))
	shapeMismatch := craft(1, dict("<f4", "(10, 84)"), make([]byte, 3352))
	// Flip a byte of a header and of compressed data (after the 30-byte local header
	// and the name).
	corruptHeader := zipOf(t, zipEntry{"a.npy", good, zip.Store})
	corruptHeader[30+len("a.npy")+20] ^= 0xff
	corruptFlate := zipOf(t, zipEntry{"a.npy", good, zip.Deflate})
	corruptFlate[30+len("a.npy")] ^= 0xff
	tests := []struct {
		name string
		file []byte
		want string
	}{
		{"not a zip", []byte("\x93NUMPY not a zip"), "npz: model.npz: not a zip archive: zip: not a valid zip file"},
		{"empty file", nil, "not a zip archive"},
		{"shape mismatch", zipOf(t, zipEntry{"fc.weight.npy", shapeMismatch, zip.Store}),
			`npz: model.npz: entry "fc.weight.npy": header declares shape (10, 84) = 840 elements but data has 3352 bytes (want 3360)`},
		{"shape mismatch deflated", zipOf(t, zipEntry{"fc.weight.npy", shapeMismatch, zip.Deflate}),
			`npz: model.npz: entry "fc.weight.npy": header declares shape (10, 84) = 840 elements but data has 3352 bytes (want 3360)`},
		{"duplicate", zipOf(t, zipEntry{"a.npy", good, zip.Store}, zipEntry{"a.npy", good, zip.Store}),
			`npz: model.npz: entry "a.npy": duplicate name`},
		{"not npy", zipOf(t, zipEntry{"a.npy", good, zip.Store}, zipEntry{"README", good, zip.Store}),
			`npz: model.npz: entry "README": is not an .npy file`},
		{"directory", zipOf(t, zipEntry{"dir/", nil, zip.Store}), `entry "dir/": is not an .npy file`},
		{"unsafe name", zipOf(t, zipEntry{"../a.npy", good, zip.Store}), `entry "../a.npy": name "../a" is not a safe relative path`},
		{"bad npy magic", zipOf(t, zipEntry{"a.npy", []byte("hello, world"), zip.Store}), `entry "a.npy": not an npy file: bad magic "hello,"`},
		{"unsupported dtype", zipOf(t, zipEntry{"a.npy", craft(1, dict("<c16", "(1,)"), make([]byte, 16)), zip.Store}),
			`entry "a.npy": header: unsupported dtype "<c16"`},
		{"header longer than entry", zipOf(t, zipEntry{"a.npy", good[:100], zip.Store}), "header length 118 exceeds the 90 bytes available"},
		{"corrupt header", corruptHeader, `entry "a.npy": corrupt entry: zip: checksum error`},
		{"corrupt deflate", corruptFlate, `entry "a.npy": flate: corrupt input`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReadFrom(bytes.NewReader(tc.file), int64(len(tc.file)), "model.npz")
			if err == nil {
				t.Fatalf("got %d arrays, want error containing %q", len(got), tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %q\nwant error containing %q", err, tc.want)
			}
		})
	}
}

func TestReadMissingFile(t *testing.T) {
	_, err := Read(filepath.Join(t.TempDir(), "nope.npz"))
	if err == nil || !strings.Contains(err.Error(), "nope.npz") {
		t.Fatalf("got %v", err)
	}
}
