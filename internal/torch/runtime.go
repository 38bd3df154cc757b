package torch

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/libtch"
	"github.com/sugarme/gotch/ts"
)

// ParseDevice turns "cpu" or "cuda" (or "cuda:N") into a gotch device. CUDA on a
// machine or libtorch without it is an error that says so.
func ParseDevice(s string) (gotch.Device, error) {
	switch {
	case s == "" || s == "cpu":
		return gotch.CPU, nil
	case s == "cuda" || strings.HasPrefix(s, "cuda:"):
		n := 0
		if s != "cuda" {
			if _, err := fmt.Sscanf(s, "cuda:%d", &n); err != nil || n < 0 {
				return gotch.CPU, fmt.Errorf("device %q: want cpu, cuda or cuda:N", s)
			}
		}
		count := int(libtch.AtcCudaDeviceCount())
		if count == 0 {
			return gotch.CPU, fmt.Errorf("device %q: CUDA is not available (libtorch %s, %s build, found 0 CUDA devices); use --device cpu", s, gotch.LibtorchVersion, gotch.LibtorchKind)
		}
		if n >= count {
			return gotch.CPU, fmt.Errorf("device %q: only %d CUDA device(s)", s, count)
		}
		return gotch.CudaBuilder(uint(n)), nil
	}
	return gotch.CPU, fmt.Errorf("device %q: want cpu or cuda", s)
}

// DeviceName is ParseDevice's inverse: "cpu" or "cuda:N".
func DeviceName(d gotch.Device) string {
	if d.IsCuda() {
		return fmt.Sprintf("cuda:%d", d.Value)
	}
	return "cpu"
}

// SetThreads sets libtorch's intra-op thread count (0 means the number of cores)
// and returns the count in force.
func SetThreads(n int) (int, error) {
	if n < 0 {
		return 0, fmt.Errorf("threads: must be >= 0, got %d", n)
	}
	if n == 0 {
		n = runtime.NumCPU()
	}
	err := Do(func() error {
		libtch.AtSetNumThreads(n)
		return nil
	})
	return Threads(), err
}

// Threads returns libtorch's intra-op thread count.
func Threads() int {
	var n int
	_ = Do(func() error { n = libtch.AtGetNumThreads(); return nil })
	return n
}

// ManualSeed seeds libtorch's global random generators (weight initialisation,
// dropout, random tensors).
func ManualSeed(seed int64) {
	_ = Do(func() error { libtch.AtManualSeed(seed); return nil })
}

// LibtorchVersion is the version of the libtorch faultline was built against.
func LibtorchVersion() string { return gotch.LibtorchVersion }

// BLAS names the BLAS library that libtorch's libblas.so.3 resolves to on this
// machine ("openblas-pthread", "blas" for the slow reference BLAS, ...), or
// "unknown". Debian switches it with update-alternatives; it changes speed, and
// can change the last bits of results, so metadata records it.
func BLAS() string {
	for _, p := range []string{"/usr/lib/" + multiarch() + "/libblas.so.3", "/usr/lib/libblas.so.3"} {
		target, err := filepath.EvalSymlinks(p)
		if err != nil {
			continue
		}
		return filepath.Base(filepath.Dir(target))
	}
	return "unknown"
}

func multiarch() string {
	switch runtime.GOARCH {
	case "amd64":
		return "x86_64-linux-gnu"
	case "arm64":
		return "aarch64-linux-gnu"
	}
	return runtime.GOARCH + "-linux-gnu"
}

// RSSBytes returns the resident set size of this process (for soak tests and
// benchmarks that prove flat memory), or 0 where /proc is unavailable.
func RSSBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	var size, rss int64
	if _, err := fmt.Sscan(string(b), &size, &rss); err != nil {
		return 0
	}
	return rss * int64(os.Getpagesize())
}

// LiveTensors returns the number of gotch tensors created and not yet freed, by
// Drop or by a finalizer (for soak tests that prove no tensor leaks). It counts
// gotch's own registry of tensors, so it sees every tensor, whoever created it.
func LiveTensors() int { return ts.LiveTensors() }
