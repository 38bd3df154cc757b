// Package testfs gives tests directories that fail the way real disks do: a
// small tmpfs that fills up, and a directory whose file system is read-only.
// Tests run as root, which ignores file permissions, so only a mount makes a
// write fail; where mounting is not permitted the tests are skipped.
package testfs

import (
	"testing"
)

// Full returns the directory of a fresh tmpfs of size bytes (at least a page), to
// be unmounted when the test ends. It skips the test where mounting is not
// permitted.
func Full(t testing.TB, size int64) string {
	t.Helper()
	dir := t.TempDir()
	mountTmpfs(t, dir, size)
	return dir
}

// ReadOnly returns a directory on a fresh tmpfs, with setup(dir) run while it is
// still writable, remounted read-only afterwards. It skips the test where
// mounting is not permitted.
func ReadOnly(t testing.TB, setup func(dir string)) string {
	t.Helper()
	dir := t.TempDir()
	mountTmpfs(t, dir, 1<<20)
	setup(dir)
	remountReadOnly(t, dir)
	return dir
}
