package npz

import (
	"archive/zip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"strings"
	"time"

	"gorgonia.org/tensor"

	"github.com/faultline/faultline/internal/atomicfile"
)

// Array is one named array of an .npz archive. Name is the key numpy.load shows
// ("fc.weight"); the archive entry is Name + ".npy".
type Array struct {
	Name string
	T    *tensor.Dense
}

// zipTime is the fixed modification time of every entry, so equal arrays give
// byte-identical archives.
var zipTime = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)

// Write replaces path with an uncompressed .npz archive (as numpy.savez makes) holding
// arrays in the given order. The file is written atomically: on error any previous file
// at path is left as it was.
func Write(path string, arrays []Array) error {
	if err := check(arrays); err != nil {
		return fmt.Errorf("npz: %s: %w", path, err)
	}
	err := atomicfile.Write(path, 0o644, func(w io.Writer) error { return writeNpz(w, arrays) })
	if err != nil {
		return fmt.Errorf("npz: %w", err)
	}
	return nil
}

// Read reads every array of the .npz archive at path, in archive order.
func Read(path string) ([]Array, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("npz: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("npz: %w", err)
	}
	return ReadFrom(f, st.Size(), path)
}

// ReadFrom reads every array of an .npz archive of size bytes held by r, in archive
// order; name is used only in error messages. Every entry must be a ".npy" file (read
// as by ReadNpy, stored or deflated) with a distinct, relative name, and its declared
// size must match its header, so a lying header fails before anything is allocated.
func ReadFrom(r io.ReaderAt, size int64, name string) ([]Array, error) {
	zr, err := zip.NewReader(r, size)
	if err != nil && !(errors.Is(err, zip.ErrInsecurePath) && zr != nil) {
		return nil, fmt.Errorf("npz: %s: not a zip archive: %w", name, err)
	}
	arrays := make([]Array, 0, len(zr.File))
	seen := make(map[string]bool, len(zr.File))
	for _, f := range zr.File {
		a, err := readEntry(f, seen)
		if err != nil {
			return nil, fmt.Errorf("npz: %s: entry %q: %w", name, f.Name, err)
		}
		arrays = append(arrays, a)
	}
	return arrays, nil
}

// readEntry reads one archive entry, checking its name against those seen before.
func readEntry(f *zip.File, seen map[string]bool) (Array, error) {
	key, ok := strings.CutSuffix(f.Name, ".npy")
	if !ok {
		return Array{}, errors.New("is not an .npy file")
	}
	if err := checkName(key); err != nil {
		return Array{}, err
	}
	if seen[key] {
		return Array{}, errors.New("duplicate name")
	}
	seen[key] = true
	if f.UncompressedSize64 > math.MaxInt64 {
		return Array{}, fmt.Errorf("declared size %d is too large", f.UncompressedSize64)
	}
	rc, err := f.Open()
	if err != nil {
		return Array{}, err
	}
	defer rc.Close()
	t, err := readNpy(rc, int64(f.UncompressedSize64))
	if err != nil {
		// A damaged entry can look like a bad header; its checksum says which it is.
		if _, cerr := io.Copy(io.Discard, rc); errors.Is(cerr, zip.ErrChecksum) {
			return Array{}, fmt.Errorf("corrupt entry: %w", cerr)
		}
		return Array{}, err
	}
	return Array{Name: key, T: t}, nil
}

// writeNpz writes arrays as an uncompressed zip archive of .npy entries.
func writeNpz(w io.Writer, arrays []Array) error {
	zw := zip.NewWriter(w)
	for _, a := range arrays {
		entry := a.Name + ".npy"
		fw, err := zw.CreateHeader(&zip.FileHeader{Name: entry, Method: zip.Store, Modified: zipTime})
		if err != nil {
			return fmt.Errorf("entry %q: %w", entry, err)
		}
		if err := writeNpy(fw, a.T); err != nil {
			return fmt.Errorf("entry %q: %w", entry, err)
		}
	}
	return zw.Close()
}

// check validates names and tensors before anything is written.
func check(arrays []Array) error {
	seen := make(map[string]bool, len(arrays))
	for _, a := range arrays {
		entry := a.Name + ".npy"
		if err := checkName(a.Name); err != nil {
			return fmt.Errorf("entry %q: %w", entry, err)
		}
		if seen[a.Name] {
			return fmt.Errorf("entry %q: duplicate name", entry)
		}
		seen[a.Name] = true
		if _, _, err := prepare(a.T); err != nil {
			return fmt.Errorf("entry %q: %w", entry, err)
		}
	}
	return nil
}

// checkName accepts array names that are safe as zip entry paths: non-empty, slash
// separated, with no ".", ".." or empty elements, no leading slash and no backslash.
func checkName(name string) error {
	if name == "" {
		return errors.New("empty name")
	}
	if name == "." || !fs.ValidPath(name) || strings.ContainsAny(name, "\\\x00") {
		return fmt.Errorf("name %q is not a safe relative path", name)
	}
	return nil
}
