package model

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// memFile returns an in-memory file (memfd) and a path by which libtorch can
// open it.
func memFile() (*os.File, string, error) {
	fd, err := unix.MemfdCreate("faultline-weights", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, "", err
	}
	f := os.NewFile(uintptr(fd), "memfd")
	name := fmt.Sprintf("/proc/self/fd/%d", fd)
	if _, err := os.Stat(name); err != nil {
		_ = f.Close()
		return nil, "", err
	}
	return f, name, nil
}
