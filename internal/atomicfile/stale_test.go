package atomicfile

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// A temporary file left by a killed writer is removed by the next write of the
// same file; one of a running writer, and those of other files, are kept.
func TestWriteRemovesStaleTemps(t *testing.T) {
	dir := t.TempDir()
	// A process that has exited: its id names no running process (barring reuse).
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skipf("cannot run true: %v", err)
	}
	dead := strconv.Itoa(cmd.Process.Pid)
	live := strconv.Itoa(os.Getppid())
	files := map[string]bool{ // name -> kept after writing out.json
		".out.json.tmp-" + dead + "-123":   false,
		".out.json.tmp-" + live + "-456":   true,
		".other.json.tmp-" + dead + "-789": true,
		".out.json.tmp-notapid":            true,
	}
	for name := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := WriteFile(filepath.Join(dir, "out.json"), []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, kept := range files {
		_, err := os.Stat(filepath.Join(dir, name))
		if kept != (err == nil) {
			t.Errorf("%s: kept %v, want %v", name, err == nil, kept)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 4 {
		t.Errorf("%d entries, want out.json and the 3 kept files", len(entries))
	}
}

func TestIsTemp(t *testing.T) {
	for name, want := range map[string]bool{
		".model.ot.tmp-123-456": true,
		".vf.json.tmp-1-2":      true,
		"model.ot":              false,
		".model.ot.tmp-abc-1":   false,
		".model.ot.tmp":         false,
		"model.ot.tmp-1-2":      false,
	} {
		if got := IsTemp(name); got != want {
			t.Errorf("IsTemp(%q) = %v, want %v", name, got, want)
		}
	}
}

// RemoveStale removes every dead writer's temporary file in a directory.
func TestRemoveStale(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skipf("cannot run true: %v", err)
	}
	dead := strconv.Itoa(cmd.Process.Pid)
	names := map[string]bool{".a.json.tmp-" + dead + "-1": false, ".b.jsonl.tmp-" + dead + "-2": false,
		".c.json.tmp-" + strconv.Itoa(os.Getpid()) + "-3": true, "d.json": true}
	for name := range names {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	RemoveStale(dir)
	for name, kept := range names {
		if _, err := os.Stat(filepath.Join(dir, name)); kept != (err == nil) {
			t.Errorf("%s: kept %v, want %v", name, err == nil, kept)
		}
	}
}
