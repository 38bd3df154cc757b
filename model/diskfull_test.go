package model

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/faultline/faultline/internal/testfs"
	"github.com/sugarme/gotch"
)

// snapshot reads every file of dir.
func snapshot(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = b
	}
	return out
}

func sameSnapshot(t *testing.T, what string, got, want map[string][]byte) {
	t.Helper()
	if len(got) != len(want) {
		var names []string
		for n := range got {
			names = append(names, n)
		}
		t.Errorf("%s: files %v, want the %d of before", what, names, len(want))
	}
	for n, b := range want {
		if !bytes.Equal(got[n], b) {
			t.Errorf("%s: %s changed", what, n)
		}
	}
}

// TestSaveDiskFull saves a small checkpoint on a small disk, then a larger one
// over it that does not fit: the error names a checkpoint file, no temporary file
// is left, and the first checkpoint is intact and still loads.
func TestSaveDiskFull(t *testing.T) {
	small := Spec{Arch: "mlp", InChannels: 1, Height: 8, Width: 8, Classes: 2, WidthMult: 1, Hidden: []int{4}}
	big := small
	big.Hidden = []int{2048}
	dir := testfs.Full(t, 256<<10)
	m := newModel(t, small)
	if err := m.Save(dir, Metadata{Dataset: "synthetic"}); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)
	m2, err := New(big, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	err = m2.Save(dir, Metadata{Dataset: "synthetic"})
	if err == nil || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "no space") {
		t.Fatalf("saving %d bytes of weights on a 256 KiB disk: err = %v, want no space naming %s", 2048*66*4, err, dir)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error is not one line: %q", err)
	}
	sameSnapshot(t, "after the failed save", snapshot(t, dir), before)
	if _, _, err := Load(dir, gotch.CPU); err != nil {
		t.Errorf("the first checkpoint no longer loads: %v", err)
	}
}

// TestSaveReadOnlyDir saves over a checkpoint in a read-only directory: the error
// names the directory and the checkpoint is unchanged.
func TestSaveReadOnlyDir(t *testing.T) {
	spec := Spec{Arch: "mlp", InChannels: 1, Height: 8, Width: 8, Classes: 2, WidthMult: 1, Hidden: []int{4}}
	m := newModel(t, spec)
	dir := testfs.ReadOnly(t, func(dir string) {
		if err := m.Save(dir, Metadata{Dataset: "synthetic"}); err != nil {
			t.Fatal(err)
		}
	})
	before := snapshot(t, dir)
	for _, target := range []string{dir, filepath.Join(dir, "sub")} {
		err := m.Save(target, Metadata{Dataset: "synthetic", Steps: 9})
		if err == nil || !strings.Contains(err.Error(), target) || strings.Contains(err.Error(), "\n") {
			t.Errorf("save into %s: err = %v, want a one-line error naming it", target, err)
		}
	}
	sameSnapshot(t, "after the failed saves", snapshot(t, dir), before)
}
