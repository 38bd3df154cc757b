package model

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/faultline/faultline/internal/atomicfile"
	"github.com/sugarme/gotch/ts"
)

// writeWeights writes named tensors in libtorch's .ot format to path,
// atomically. libtorch cannot report a failed write: its archive writer throws
// from a destructor and the process aborts (seen on a full disk). So libtorch
// writes into an in-memory file, where writes do not fail, and the bytes are then
// copied to path through atomicfile, which turns a full disk or a read-only
// directory into an error naming the file and leaves any previous file intact.
// Where no in-memory file can be made, libtorch writes a temporary file next to
// path, as before.
func writeWeights(named []ts.NamedTensor, path string) error {
	mem, name, err := memFile()
	if err != nil {
		return writeWeightsDirect(named, path)
	}
	defer mem.Close()
	// ts.SaveMulti corrupts the C heap in v0.8.0 (4-byte pointers, pointers to Go
	// locals); SaveMultiNew is the sound variant that VarStore.Save uses.
	if err := ts.SaveMultiNew(named, name); err != nil {
		return fmt.Errorf("model: save %s: %w", path, firstLine(err))
	}
	if _, err := mem.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("model: save %s: %w", path, err)
	}
	if err := atomicfile.Write(path, 0o644, func(w io.Writer) error {
		_, err := io.Copy(w, mem)
		return err
	}); err != nil {
		return fmt.Errorf("model: save: %w", err)
	}
	return nil
}

// writeWeightsDirect lets libtorch write a temporary file next to path and
// renames it into place.
func writeWeightsDirect(named []ts.NamedTensor, path string) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := ts.SaveMultiNew(named, tmp); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("model: save %s: %w", path, firstLine(err))
	}
	if err := syncFile(tmp); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("model: save %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("model: save %s: %w", path, err)
	}
	return nil
}

func syncFile(p string) error {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
