package fault

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/faultline/faultline/internal/testfs"
)

// fakeCampaign is a campaign over n synthetic finished faults in blocks of
// block, enough to exercise writing and resuming faults.jsonl without a model.
func fakeCampaign(dir string, n int64, block int) *Campaign {
	h := Header{Kind: HeaderKind, SchemaVersion: 1, Mode: "batched", Faults: n, Images: 10, Block: block, BatchSize: 1, Shards: 1}
	return &Campaign{Header: h, Dir: dir, Fault: func(i int64) Fault {
		return Fault{ID: i, Target: Weight, Layer: "fc1", Param: "weight", Index: []int64{i * 7}, Kind: BitFlip,
			Bits: []int{int(i % 32)}, DType: Float32, Duration: Transient,
			Outcome: &Outcome{Images: 10, Masked: 9, SDC: 1, Misclassified: 2, Before: 0.5, BeforeBits: BitsOf(0.5), After: 1, AfterBits: BitsOf(1)}}
	}}
}

// encodedBlocks is what blocks [0, k) of c look like in faults.jsonl.
func encodedBlocks(t *testing.T, c *Campaign, k int64) []byte {
	var all []Fault
	for b := int64(0); b < k; b++ {
		all = append(all, c.blockFaults(b)...)
	}
	return encodeFaults(t, all)
}

// TestAppendBlockDiskFull fills the disk while a campaign appends blocks: the
// error names faults.jsonl, and resume, even on the full disk, keeps exactly the
// complete blocks (the cut block is truncated away, not half read).
func TestAppendBlockDiskFull(t *testing.T) {
	dir := testfs.Full(t, 64<<10)
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, 32<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	c := fakeCampaign(dir, 2000, 50)
	path := filepath.Join(dir, FaultsFile)
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	var written int64
	for b := range c.blocks() {
		if err = appendBlock(out, c.blockFaults(int64(b))); err != nil {
			break
		}
		written++
	}
	if err == nil || !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), path) {
		t.Fatalf("after %d blocks: err = %v, want ENOSPC naming %s", written, err, path)
	}
	if strings.Count(err.Error(), "\n") > 0 {
		t.Errorf("error is not one line: %q", err)
	}
	complete := encodedBlocks(t, c, written)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) <= len(complete) || !bytes.HasPrefix(data, complete) {
		t.Fatalf("faults.jsonl has %d bytes, want the %d of %d complete blocks and part of the next", len(data), len(complete), written)
	}

	// Resuming on the still-full disk works: dropping the cut block truncates
	// the file, which needs no space; the complete blocks stay as they are.
	done, err := c.resume()
	if err != nil {
		t.Fatalf("resume on a full disk: %v", err)
	}
	if got, _ := os.ReadFile(path); int64(len(done)) != written || !bytes.Equal(got, complete) {
		t.Errorf("resume on a full disk: %d blocks done, %d bytes kept; want %d and %d", len(done), len(got), written, len(complete))
	}

	// With space freed, resuming again finds the same blocks.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	done, err = c.resume()
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(done)) != written {
		t.Errorf("resume found %d blocks done, %d were written whole", len(done), written)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, complete) {
		t.Errorf("resumed faults.jsonl: %d bytes, want the %d of the complete blocks", len(got), len(complete))
	}
	if fs, err := ReadFaults(path); err != nil || int64(len(fs)) != written*50 {
		t.Errorf("ReadFaults after resume: %d faults, %v", len(fs), err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
}

// TestResumeDropsCutBlock cuts faults.jsonl all along its last block: resume
// keeps the blocks before it (and the whole file when nothing is cut).
func TestResumeDropsCutBlock(t *testing.T) {
	dir := t.TempDir()
	c := fakeCampaign(dir, 7, 3) // blocks of 3, 3 and 1
	full := encodedBlocks(t, c, 3)
	two := len(encodedBlocks(t, c, 2))
	path := filepath.Join(dir, FaultsFile)
	var cuts []int
	for cut := two; cut < len(full); cut += 3 {
		cuts = append(cuts, cut, cut+1)
	}
	for _, cut := range append(cuts, len(full)-1, len(full)) {
		if err := os.WriteFile(path, full[:cut], 0o644); err != nil {
			t.Fatal(err)
		}
		done, err := c.resume()
		if err != nil {
			t.Fatal(err)
		}
		want, wantBlocks := two, 2
		if cut == len(full) {
			want, wantBlocks = len(full), 3
		}
		got, _ := os.ReadFile(path)
		if len(done) != wantBlocks || len(got) != want {
			t.Fatalf("cut at %d of %d: %d blocks done, %d bytes kept; want %d and %d", cut, len(full), len(done), len(got), wantBlocks, want)
		}
	}
}

// TestCampaignReadOnlyDir starts a campaign in a read-only directory: the error
// names the file it could not create and the files already there are unchanged.
func TestCampaignReadOnlyDir(t *testing.T) {
	c := fakeCampaign("", 10, 5)
	var before []byte
	dir := testfs.ReadOnly(t, func(dir string) {
		c.Dir = dir
		if err := c.claim(); err != nil {
			t.Fatal(err)
		}
		f, err := os.Create(filepath.Join(dir, FaultsFile))
		if err != nil {
			t.Fatal(err)
		}
		if err := appendBlock(f, c.blockFaults(0)); err != nil {
			t.Fatal(err)
		}
		f.Write([]byte(`{"id":5,"tar`)) // a cut block that resume would drop
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		before, _ = os.ReadFile(filepath.Join(dir, FaultsFile))
	})
	path := filepath.Join(dir, FaultsFile)
	if _, err := c.resume(); err == nil || !errors.Is(err, syscall.EROFS) || !strings.Contains(err.Error(), path) {
		t.Errorf("resume: err = %v, want a read-only error naming %s", err, path)
	}
	if _, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0); !errors.Is(err, syscall.EROFS) {
		t.Errorf("append: %v", err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, before) {
		t.Error("faults.jsonl changed")
	}
	other := fakeCampaign(filepath.Join(dir, "sub"), 10, 5)
	if _, err := other.Run(t.Context(), nil, nil, 0); err == nil || !strings.Contains(err.Error(), other.Dir) {
		t.Errorf("Run in a read-only directory: err = %v, want it to name %s", err, other.Dir)
	}
}
