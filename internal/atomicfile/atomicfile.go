// Package atomicfile writes files so that readers never see a half-written file:
// the content goes to a temporary file in the same directory, is synced, and is then
// renamed over the destination. A failed write leaves any previous file untouched.
//
// A temporary file is named .NAME.tmp-PID-RANDOM after the writing process. A
// process killed while writing leaves its temporary file behind; the next write
// of the same file removes the temporary files of writers that are no longer
// running, so reruns after a crash do not accumulate them.
package atomicfile

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Write creates or replaces path with what fill writes. The data is buffered, flushed,
// fsynced and renamed into place; on any error the temporary file is removed and the
// previous content of path (if any) is left as it was.
func Write(path string, perm os.FileMode, fill func(w io.Writer) error) (err error) {
	dir := filepath.Dir(path)
	removeStale(dir, filepath.Base(path))
	tmp, err := os.CreateTemp(dir, tempPrefix(filepath.Base(path))+strconv.Itoa(os.Getpid())+"-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmpName := tmp.Name()
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmpName)
		}
	}()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	if err = fill(bw); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = bw.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = tmp.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("write %s: sync: %w", path, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = os.Rename(tmpName, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return syncDir(dir)
}

// WriteFile is Write for content already in memory.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return Write(path, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// tempPrefix is how the temporary files of name begin.
func tempPrefix(name string) string { return "." + name + ".tmp-" }

// IsTemp reports whether name (a base name) is one of this package's temporary
// files.
func IsTemp(name string) bool {
	_, _, ok := tempOwner(name)
	return ok
}

// tempOwner parses a temporary file name .NAME.tmp-PID-RANDOM into NAME and PID.
func tempOwner(name string) (target string, pid int, ok bool) {
	if !strings.HasPrefix(name, ".") {
		return "", 0, false
	}
	i := strings.LastIndex(name, ".tmp-")
	if i < 1 {
		return "", 0, false
	}
	pidStr, _, found := strings.Cut(name[i+len(".tmp-"):], "-")
	pid, err := strconv.Atoi(pidStr)
	if !found || err != nil || pid <= 0 {
		return "", 0, false
	}
	return name[1:i], pid, true
}

// RemoveStale removes every temporary file in dir left by a writer that no
// longer runs, for directories whose files are not all rewritten on a rerun.
// Errors are ignored: this is housekeeping.
func RemoveStale(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if target, _, ok := tempOwner(e.Name()); ok && !e.IsDir() {
			removeStale(dir, target)
		}
	}
}

// removeStale removes the temporary files of name in dir left by writers that
// no longer run (killed mid-write). Errors are ignored: this is housekeeping.
func removeStale(dir, name string) {
	matches, _ := filepath.Glob(filepath.Join(dir, globEscape(tempPrefix(name))+"*"))
	for _, m := range matches {
		target, pid, ok := tempOwner(filepath.Base(m))
		if !ok || target != name || pid == os.Getpid() || running(pid) {
			continue
		}
		_ = os.Remove(m)
	}
}

// globEscape quotes the characters filepath.Match treats specially.
func globEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, "*", `\*`, "?", `\?`, "[", `\[`)
	return r.Replace(s)
}

// syncDir makes the rename durable; errors are ignored on file systems that
// cannot sync directories.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return nil
	}
	defer d.Close()
	_ = d.Sync()
	return nil
}

// CheckDir creates dir (and its parents) when missing and checks that a file can
// be created in it, so a long run learns that its output directory is read-only
// or not a directory before it starts, not when it saves.
func CheckDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("output directory %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, ".faultline-probe-*")
	if err != nil {
		return fmt.Errorf("output directory %s is not writable: %w", dir, err)
	}
	name := f.Name()
	err = f.Close()
	if rerr := os.Remove(name); err == nil {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("output directory %s: %w", dir, err)
	}
	return nil
}
