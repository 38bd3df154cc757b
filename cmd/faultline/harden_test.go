package main

import (
	"strings"
	"testing"
)

func TestHardenBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"harden", "--out", "x"}, "--checkpoint DIR is required"},
		{[]string{"harden", "--checkpoint", "x"}, "--out DIR is required"},
		{[]string{"harden", "--checkpoint", "x", "--out", "y", "--ber", "1e-5,lots"}, `--ber "lots"`},
		{[]string{"harden", "--checkpoint", "x", "--out", "y", "--clamps=false", "--fat=false"}, "nothing to do"},
		{[]string{"harden", "--checkpoint", "/nonexistent/ckpt", "--out", t.TempDir()}, "/nonexistent/ckpt"},
	} {
		_, errs, code := cli(t, c.args...)
		if code == 0 || !strings.Contains(errs, c.want) || strings.Contains(errs, "goroutine") {
			t.Errorf("%v: exit %d, stderr %q, want %q", c.args, code, errs, c.want)
		}
	}
}
