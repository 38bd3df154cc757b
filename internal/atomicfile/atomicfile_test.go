package atomicfile

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/faultline/faultline/internal/testfs"
)

// onlyFile checks that dir holds exactly the file name (no temporary file left
// behind) with content want.
func onlyFile(t *testing.T, dir, name string, want []byte) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != 1 || names[0] != name {
		t.Errorf("%s holds %v, want only %s", dir, names, name)
	}
	got, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s: got %q, want the previous content %q", name, got, want)
	}
}

func TestWriteReplaces(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "out.json")
	for _, s := range []string{"first", "second, longer"} {
		if err := WriteFile(p, []byte(s), 0o640); err != nil {
			t.Fatal(err)
		}
		onlyFile(t, dir, "out.json", []byte(s))
	}
	if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, %v; want 0640", fi.Mode(), err)
	}
}

func TestWriteFillError(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "out.json")
	if err := WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := Write(p, 0o644, func(w io.Writer) error {
		_, _ = w.Write([]byte("half"))
		return boom
	})
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), p) {
		t.Fatalf("err = %v, want boom naming %s", err, p)
	}
	onlyFile(t, dir, "out.json", []byte("old"))
}

func TestWriteMissingDir(t *testing.T) {
	p := filepath.Join(t.TempDir(), "nope", "out.json")
	if err := WriteFile(p, []byte("x"), 0o644); err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("err = %v, want an error naming %s", err, p)
	}
}

func TestWriteReadOnlyDir(t *testing.T) {
	dir := testfs.ReadOnly(t, func(dir string) {
		if err := WriteFile(filepath.Join(dir, "out.json"), []byte("old"), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	p := filepath.Join(dir, "out.json")
	err := WriteFile(p, []byte("new"), 0o644)
	if err == nil || !errors.Is(err, syscall.EROFS) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("err = %v, want a read-only error naming %s", err, dir)
	}
	onlyFile(t, dir, "out.json", []byte("old"))
}

func TestWriteDiskFull(t *testing.T) {
	dir := testfs.Full(t, 64<<10)
	p := filepath.Join(dir, "out.json")
	old := bytes.Repeat([]byte("o"), 16<<10)
	if err := WriteFile(p, old, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{1 << 10 /* fits */, 80 << 10, 4 << 20} {
		data := bytes.Repeat([]byte("n"), size)
		err := WriteFile(p, data, 0o644)
		if size == 1<<10 {
			if err != nil {
				t.Fatalf("a small write on a nearly empty disk: %v", err)
			}
			old = data
			continue
		}
		if err == nil || !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), p) {
			t.Fatalf("%d bytes: err = %v, want ENOSPC naming %s", size, err, p)
		}
		onlyFile(t, dir, "out.json", old)
	}
	// The space of the failed writes is given back: the disk is usable again.
	if err := WriteFile(p, bytes.Repeat([]byte("m"), 32<<10), 0o644); err != nil {
		t.Errorf("after the failures: %v", err)
	}
}

func TestCheckDir(t *testing.T) {
	fresh := filepath.Join(t.TempDir(), "a", "b")
	if err := CheckDir(fresh); err != nil {
		t.Fatalf("a new nested directory: %v", err)
	}
	if ents, err := os.ReadDir(fresh); err != nil || len(ents) != 0 {
		t.Fatalf("the probe left %v (%v)", ents, err)
	}
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := CheckDir(file); err == nil || !strings.Contains(err.Error(), file) {
		t.Errorf("a regular file as the directory: %v", err)
	}
	ro := testfs.ReadOnly(t, func(string) {})
	if err := CheckDir(ro); err == nil || !errors.Is(err, syscall.EROFS) || !strings.Contains(err.Error(), ro) {
		t.Errorf("a read-only directory: %v", err)
	}
}
