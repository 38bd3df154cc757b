// Package testdeps lets a test skip when an optional outside dependency is
// missing, except where the environment says it must be there. `make test` runs
// `scripts/setup.sh --test`, which installs all of them, and sets
// FAULTLINE_REQUIRE_ONNX=1 and FAULTLINE_REQUIRE_TORCH=1: there a missing
// dependency fails its tests instead of skipping them, so CI cannot pass by
// skipping. A plain `go test` still skips, with a message saying what to install.
package testdeps

import (
	"os"
	"testing"
)

// The environment variables, each set to 1 to require its dependencies.
const (
	// ONNX: Debian's python3-onnx (onnx.checker), ONNX Runtime
	// (scripts/node_modules/onnxruntime-node, with node) and the ONNX corpus
	// (FAULTLINE_ONNX_CORPUS).
	ONNX = "FAULTLINE_REQUIRE_ONNX"
	// Torch: Debian's python3-torch and python3-numpy under /usr/bin/python3.
	Torch = "FAULTLINE_REQUIRE_TORCH"
)

// Required reports whether the environment variable env is 1.
func Required(env string) bool {
	return os.Getenv(env) == "1"
}

// Skipf skips t with the formatted message, or, when env is required, fails it
// with the same message.
func Skipf(t testing.TB, env, format string, args ...any) {
	t.Helper()
	if Required(env) {
		t.Fatalf(format+" (required: %s=1)", append(args, env)...)
		return
	}
	t.Skipf(format, args...)
}
