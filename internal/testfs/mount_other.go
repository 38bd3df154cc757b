//go:build !linux

package testfs

import "testing"

func mountTmpfs(t testing.TB, dir string, size int64) {
	t.Skip("tmpfs mounts need Linux")
}

func remountReadOnly(t testing.TB, dir string) {
	t.Skip("tmpfs mounts need Linux")
}
