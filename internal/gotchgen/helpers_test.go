package gotchgen

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// gotchModule returns gotch v0.8.0's folder in the module cache, skipping the test
// when it is not there (the tests never download it).
func gotchModule(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Skipf("go env GOMODCACHE: %v", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "github.com", "sugarme", "gotch@"+GotchVersion)
	if _, err := os.Stat(filepath.Join(dir, "libtch", GeneratedCPP)); err != nil {
		t.Skipf("gotch %s is not in the module cache: %v", GotchVersion, err)
	}
	return dir
}

// readFile returns a file's content or fails the test.
func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// lineOf returns the 1-based number of the only line of src that contains substr.
func lineOf(t *testing.T, src, substr string) int {
	t.Helper()
	found := 0
	for i, l := range strings.Split(src, "\n") {
		if strings.Contains(l, substr) {
			if found != 0 {
				t.Fatalf("%q occurs on lines %d and %d", substr, found, i+1)
			}
			found = i + 1
		}
	}
	if found == 0 {
		t.Fatalf("%q occurs on no line", substr)
	}
	return found
}

// functions maps each wrapper of a generated file to its text (header to closing
// brace), so tests can compare wrappers one by one.
func functions(t *testing.T, src string) map[string]string {
	t.Helper()
	spans, err := wrapperSpans(src)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(src, "\n")
	m := make(map[string]string, len(spans))
	for _, sp := range spans {
		if _, dup := m[sp.name]; dup {
			t.Fatalf("wrapper %s occurs twice", sp.name)
		}
		m[sp.name] = strings.Join(lines[sp.first-1:sp.last], "\n")
	}
	return m
}
