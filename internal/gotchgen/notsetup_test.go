package gotchgen

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestNotSetUp builds a copy of faultline's module (go.mod, go.sum and the gotch
// placeholder in internal/gotchstub) with a main package that imports gotch, without
// any go.work: the build must fail with the placeholder's "run 'make setup'" message,
// not with gotch's C++ errors.
func TestNotSetUp(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "internal", "gotchstub", "go.mod")); err != nil {
		t.Skipf("no gotch placeholder: %v", err)
	}
	dir := t.TempDir()
	for _, f := range []string{"go.mod", "go.sum"} {
		copyFile(t, filepath.Join(root, f), filepath.Join(dir, f))
	}
	stub := filepath.Join(root, "internal", "gotchstub")
	err = filepath.WalkDir(stub, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		copyFile(t, p, filepath.Join(dir, rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(readFile(t, filepath.Join(dir, "go.mod")), "replace github.com/sugarme/gotch v0.8.0 => ./internal/gotchstub") {
		t.Fatal("go.mod no longer replaces gotch by ./internal/gotchstub")
	}
	main := "package main\n\nimport (\n\t\"fmt\"\n\n\t\"github.com/sugarme/gotch/ts\"\n)\n\nfunc main() { fmt.Println(ts.Tensor{}) }\n"
	if err := os.MkdirAll(filepath.Join(dir, "cmd", "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cmd", "x", "main.go"), []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	cmd := exec.Command("go", "build", "./...")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	out, err := cmd.CombinedOutput()
	t.Logf("go build took %v:\n%s", time.Since(start).Round(time.Millisecond), out)
	if err == nil {
		t.Fatal("go build succeeded without gotch being set up")
	}
	if !strings.Contains(string(out), "run 'make setup'") {
		t.Error("the output does not say \"run 'make setup'\"")
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "error:") || strings.Contains(l, "torch_api") {
			t.Errorf("C++ compiler output: %s", l)
		}
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
