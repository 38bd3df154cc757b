package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMain runs main itself when the test binary is started by run (below), so the
// command is tested as a process: its exit code and its output.
func TestMain(m *testing.M) {
	if args := os.Getenv("GOTCHGEN_TEST_ARGS"); args != "" {
		os.Args = []string{"gotchgen"}
		var rest []string
		if err := json.Unmarshal([]byte(args), &rest); err != nil {
			panic(err)
		}
		os.Args = append(os.Args, rest...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// run starts the command with args in a fresh temp dir (so the default -out .gotch
// and -workspace . can never reach the checkout) and returns its exit code and output.
func run(t *testing.T, args ...string) (code int, stdout, stderr string, dir string) {
	t.Helper()
	dir = t.TempDir()
	b, _ := json.Marshal(args)
	cmd := exec.Command(os.Args[0])
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOTCHGEN_TEST_ARGS="+string(b), "LIBTORCH="+filepath.Join(dir, "no-libtorch"))
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatal(err)
	}
	return code, o.String(), e.String(), dir
}

func TestCommand(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nowhere")
	tests := []struct {
		name     string
		args     []string
		code     int
		stderr   []string // substrings of stderr
		noStderr []string
	}{
		{
			name:   "help",
			args:   []string{"-h"},
			code:   0,
			stderr: []string{"-out", `(default ".gotch")`, "-workspace", `(default ".")`, "-libtorch", "-force", "-quiet"},
		},
		{name: "unknown flag", args: []string{"-nope"}, code: 2, stderr: []string{"flag provided but not defined: -nope"}},
		{name: "no output folder", args: []string{"-out", "", "-libtorch", missing}, code: 1, stderr: []string{"no output folder given"}},
		{
			name:   "missing libtorch",
			args:   []string{"-out", "gotch", "-workspace", "", "-libtorch", missing},
			code:   1,
			stderr: []string{"gotchgen: libtorch dir " + missing + ": no lib/libtorch.so there"},
		},
		{
			name:   "missing libtorch from $LIBTORCH",
			args:   []string{"-out", "gotch", "-workspace", ""},
			code:   1,
			stderr: []string{"no-libtorch: no lib/libtorch.so there"},
		},
		{
			name:     "quiet still prints the error",
			args:     []string{"-quiet", "-out", "gotch", "-libtorch", missing},
			code:     1,
			stderr:   []string{"no lib/libtorch.so there"},
			noStderr: []string{"gotchgen: adapting"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr, dir := run(t, tt.args...)
			if code != tt.code {
				t.Errorf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, stdout, stderr)
			}
			for _, w := range tt.stderr {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			for _, w := range tt.noStderr {
				if strings.Contains(stderr, w) {
					t.Errorf("stderr contains %q:\n%s", w, stderr)
				}
			}
			// Failing early writes nothing: no adapted gotch, no go.work.
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				t.Errorf("the command wrote %s", e.Name())
			}
		})
	}
}
