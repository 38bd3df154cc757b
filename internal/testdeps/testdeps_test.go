package testdeps

import (
	"fmt"
	"testing"
)

func TestRequired(t *testing.T) {
	const env = "FAULTLINE_REQUIRE_TESTDEPS_SELFTEST"
	for _, c := range []struct {
		val  string
		want bool
	}{{"", false}, {"0", false}, {"yes", false}, {"1", true}} {
		t.Setenv(env, c.val)
		if got := Required(env); got != c.want {
			t.Errorf("%s=%q: Required %v, want %v", env, c.val, got, c.want)
		}
	}
}

// recorder is a testing.TB that records Skipf and Fatalf instead of acting.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper()                           {}
func (r *recorder) Skipf(format string, args ...any)  { r.skipped = sprintf(format, args...) }
func (r *recorder) Fatalf(format string, args ...any) { r.failed = sprintf(format, args...) }

func TestSkipf(t *testing.T) {
	const env = "FAULTLINE_REQUIRE_TESTDEPS_SELFTEST"
	t.Setenv(env, "")
	r := &recorder{TB: t}
	Skipf(r, env, "no %s", "onnx")
	if r.skipped != "no onnx" || r.failed != "" {
		t.Errorf("not required: skipped %q, failed %q", r.skipped, r.failed)
	}
	t.Setenv(env, "1")
	r = &recorder{TB: t}
	Skipf(r, env, "no %s", "onnx")
	if r.failed != "no onnx (required: "+env+"=1)" || r.skipped != "" {
		t.Errorf("required: skipped %q, failed %q", r.skipped, r.failed)
	}
}

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }
