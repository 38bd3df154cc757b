package npz

import (
	"archive/zip"
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"gorgonia.org/tensor"
)

// npySeeds are valid and invalid .npy files for the fuzzers.
func npySeeds(t testing.TB) [][]byte {
	seeds := [][]byte{
		craft(1, dict("<f4", "(2,)"), make([]byte, 8)),
		craft(2, dict(">i8", "()"), make([]byte, 8)),
		craft(3, dict("|b1", "(1, 3)"), []byte{0, 1, 2}),
		craft(1, "{'descr': '<f8', 'fortran_order': True, 'shape': (2,), }", make([]byte, 16)),
		craft(1, dict("<f4", "(1000000, 1000000)"), make([]byte, 8)),
		craft(1, dict("<f4", "(-1,)"), nil),
		craft(1, dict("<f2", "(2,)"), make([]byte, 4)),
		craft(1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,)}", nil),
		[]byte(magic),
		nil,
	}
	for _, a := range checkpoint() {
		seeds = append(seeds, npyBytes(t, a.T))
	}
	if b, err := os.ReadFile(filepath.Join("testdata", "numpy_v2.npy")); err == nil {
		seeds = append(seeds, b)
	}
	return seeds
}

func FuzzReadNpy(f *testing.F) {
	for _, s := range npySeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := ReadNpy(bytes.NewReader(data), "fuzz.npy")
		known, kerr := readNpy(bytes.NewReader(data), int64(len(data)))
		if (err == nil) != (kerr == nil) {
			t.Fatalf("reading with and without the size disagree: %v / %v", err, kerr)
		}
		if err != nil {
			return
		}
		sameTensor(t, known, got)
		again, err := ReadNpy(bytes.NewReader(npyBytes(t, got)), "again.npy")
		if err != nil {
			t.Fatalf("rereading what was written: %v", err)
		}
		sameTensor(t, again, got)
	})
}

func FuzzReadNpz(f *testing.F) {
	var b bytes.Buffer
	if err := writeNpz(&b, checkpoint()); err != nil {
		f.Fatal(err)
	}
	f.Add(b.Bytes())
	for _, name := range []string{"numpy.npz", "numpy_compressed.npz"} {
		if data, err := os.ReadFile(filepath.Join("testdata", name)); err == nil {
			f.Add(data)
		}
	}
	for _, s := range npySeeds(f) {
		f.Add(zipOf(f, zipEntry{"a.npy", s, zip.Store}))
		f.Add(zipOf(f, zipEntry{"a.npy", s, zip.Deflate}))
	}
	one := npyBytes(f, tensor.New(tensor.WithShape(), tensor.WithBacking([]float32{1})))
	f.Add(zipOf(f, zipEntry{"a.npy", one, zip.Store}, zipEntry{"a.npy", one, zip.Store}))
	f.Add(zipOf(f, zipEntry{"x", one, zip.Store}))
	f.Add([]byte("PK\x05\x06" + string(make([]byte, 18))))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		arrays, err := ReadFrom(bytes.NewReader(data), int64(len(data)), "fuzz.npz")
		if err != nil {
			if arrays != nil {
				t.Fatal("arrays returned with an error")
			}
			return
		}
		var out bytes.Buffer
		if err := check(arrays); err != nil {
			t.Fatalf("arrays read cannot be written: %v", err)
		}
		if err := writeNpz(&out, arrays); err != nil {
			t.Fatalf("writing what was read: %v", err)
		}
		again, err := ReadFrom(bytes.NewReader(out.Bytes()), int64(out.Len()), "again.npz")
		if err != nil {
			t.Fatalf("rereading what was written: %v", err)
		}
		sameArrays(t, again, arrays)
	})
}
