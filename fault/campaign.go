package fault

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"time"

	"github.com/faultline/faultline/internal/atomicfile"
	"github.com/faultline/faultline/internal/journal"
	"github.com/faultline/faultline/internal/torch"
)

// Files of a campaign directory.
const (
	HeaderFile  = "campaign.json"
	FaultsFile  = "faults.jsonl"
	SummaryFile = "summary.json"
)

// Header describes a campaign (campaign.json). A campaign directory holds one
// campaign: starting again with the same header resumes it.
type Header struct {
	Kind           string  `json:"kind"`
	SchemaVersion  int     `json:"schema_version"`
	Checkpoint     string  `json:"checkpoint"`
	Arch           string  `json:"arch"`
	Dataset        string  `json:"dataset"`
	Mode           string  `json:"mode"` // reference or batched
	Plan           *Plan   `json:"plan,omitempty"`
	Replay         string  `json:"replay,omitempty"` // SHA-256 of a replayed fault list
	Faults         int64   `json:"faults"`
	Images         int     `json:"images"`
	ImagesPerFault int     `json:"images_per_fault"` // 0 = all
	GoldenAccuracy float64 `json:"golden_accuracy"`
	Block          int     `json:"block"` // faults per block (the unit of resuming and sharding)
	BatchSize      int     `json:"batch_size"`
	Threads        int     `json:"threads"`
	Shard          int     `json:"shard"`
	Shards         int     `json:"shards"`
}

// HeaderKind is the kind of campaign.json.
const HeaderKind = "faultline.fault_campaign_header"

// Campaign runs a list of faults in blocks, streaming each finished block to
// faults.jsonl, and can be killed at any moment and resumed.
type Campaign struct {
	Header Header
	Dir    string
	// Fault returns fault i (0 <= i < Header.Faults): from a Plan or a replayed list.
	Fault func(i int64) Fault
	// OnProgress is called after each block with faults done and to do in this run.
	OnProgress func(done, total int64, faultsPerSecond float64)
}

// blocks returns this shard's blocks in order.
func (c *Campaign) blocks() []int64 {
	h := c.Header
	n := (h.Faults + int64(h.Block) - 1) / int64(h.Block)
	var out []int64
	for b := int64(0); b < n; b++ {
		if b%int64(h.Shards) == int64(h.Shard) {
			out = append(out, b)
		}
	}
	return out
}

// blockRange is the IDs [lo, hi) of block b.
func (c *Campaign) blockRange(b int64) (lo, hi int64) {
	h := c.Header
	return b * int64(h.Block), min((b+1)*int64(h.Block), h.Faults)
}

// blockFaults generates block b's faults with their image ranges.
func (c *Campaign) blockFaults(b int64) []Fault {
	h := c.Header
	lo, hi := c.blockRange(b)
	out := make([]Fault, 0, hi-lo)
	for i := lo; i < hi; i++ {
		f := c.Fault(i)
		if f.Images == nil && h.ImagesPerFault > 0 && h.ImagesPerFault < h.Images {
			k := int64(h.ImagesPerFault)
			f.Images = []int64{(i * k) % (int64(h.Images) - k + 1), k}
		}
		out = append(out, f)
	}
	return out
}

// Run runs (or resumes) the campaign on the torch thread and writes its summary.
// setup is the time spent loading the model and running the golden pass.
func (c *Campaign) Run(ctx context.Context, inj *Injector, ev *EvalSet, setup time.Duration) (*Summary, error) {
	h := &c.Header
	h.Kind, h.SchemaVersion = HeaderKind, 1
	if h.Shards < 1 || h.Shard < 0 || h.Shard >= h.Shards {
		return nil, fmt.Errorf("fault: shard %d/%d", h.Shard, h.Shards)
	}
	if h.Block < 1 {
		return nil, fmt.Errorf("fault: block size %d", h.Block)
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return nil, err
	}
	// One run at a time per directory: two would interleave their blocks.
	unlock, err := journal.Lock(c.Dir, "fault")
	if err != nil {
		return nil, err
	}
	defer unlock()
	// A run killed while writing campaign.json or cutting faults.jsonl left a
	// temporary file that nothing else rewrites.
	atomicfile.RemoveStale(c.Dir)
	if err := c.claim(); err != nil {
		return nil, err
	}
	done, err := c.resume()
	if err != nil {
		return nil, err
	}
	todo := c.blocks()
	var remaining []int64
	var total int64
	for _, b := range todo {
		if !done[b] {
			remaining = append(remaining, b)
			lo, hi := c.blockRange(b)
			total += hi - lo
		}
	}
	out, err := os.OpenFile(filepath.Join(c.Dir, FaultsFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("fault: %w", err)
	}
	defer out.Close()
	var injectTime time.Duration
	var nDone int64
	for _, b := range remaining {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		faults := c.blockFaults(b)
		ptrs := make([]*Fault, len(faults))
		for i := range faults {
			ptrs[i] = &faults[i]
		}
		t0 := time.Now()
		err := torch.Do(func() error {
			if h.Mode == "reference" {
				return inj.RunReference(ev, ptrs)
			}
			return inj.RunBatched(ev, ptrs)
		})
		injectTime += time.Since(t0)
		if err != nil {
			return nil, err
		}
		if err := appendBlock(out, faults); err != nil {
			return nil, err
		}
		nDone += int64(len(faults))
		if c.OnProgress != nil {
			c.OnProgress(nDone, total, float64(nDone)/injectTime.Seconds())
		}
	}
	sm, err := summariseFile(filepath.Join(c.Dir, FaultsFile))
	if err != nil {
		return nil, err
	}
	tm := Timing{InjectSeconds: injectTime.Seconds(), SetupSeconds: setup.Seconds()}
	if injectTime > 0 {
		tm.FaultsPerSecond = float64(nDone) / injectTime.Seconds()
	}
	s := sm.summary(*h, h.GoldenAccuracy, h.Images, tm)
	if err := writeJSON(filepath.Join(c.Dir, SummaryFile), s); err != nil {
		return nil, err
	}
	return &s, nil
}

// summariseFile streams a fault list into a summariser.
func summariseFile(path string) (*summariser, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("fault: %w", err)
	}
	defer f.Close()
	sm := newSummariser()
	err = EachFault(f, path, func(x *Fault) error {
		sm.add(x)
		return nil
	})
	return sm, err
}

// appendBlock appends a finished block to faults.jsonl (out) and syncs it. A
// failed write, such as on a full disk, can leave part of the block behind;
// resume drops it.
func appendBlock(out *os.File, faults []Fault) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for i := range faults {
		if err := enc.Encode(&faults[i]); err != nil {
			return fmt.Errorf("fault %d: %w", faults[i].ID, err)
		}
	}
	if _, err := out.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("fault: %w (the partly written block is dropped on resume)", err)
	}
	if err := out.Sync(); err != nil {
		return fmt.Errorf("fault: sync %s: %w", out.Name(), err)
	}
	return nil
}

// claim writes campaign.json, or checks that the one there describes the same
// campaign (then the run resumes).
func (c *Campaign) claim() error {
	path := filepath.Join(c.Dir, HeaderFile)
	old, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		if _, err := os.Stat(filepath.Join(c.Dir, FaultsFile)); err == nil {
			return fmt.Errorf("fault: %s has a %s but no %s; use an empty --out", c.Dir, FaultsFile, HeaderFile)
		}
		return writeJSON(path, c.Header)
	}
	if err != nil {
		return fmt.Errorf("fault: %w", err)
	}
	prev, err := ParseHeader(old, path)
	if err != nil {
		return err
	}
	a, _ := json.Marshal(prev)
	b, _ := json.Marshal(c.Header)
	if !bytes.Equal(a, b) {
		return fmt.Errorf("fault: %s holds a different campaign (%s differs); resume with the same arguments or use another --out", c.Dir, diffField(prev, c.Header))
	}
	return nil
}

// diffField names the first header field that differs.
func diffField(a, b Header) string {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	for i := 0; i < va.NumField(); i++ {
		x, _ := json.Marshal(va.Field(i).Interface())
		y, _ := json.Marshal(vb.Field(i).Interface())
		if !bytes.Equal(x, y) {
			return fmt.Sprintf("%s: %s before, %s now", va.Type().Field(i).Tag.Get("json"), x, y)
		}
	}
	return "?"
}

// resume reads faults.jsonl, keeps the complete blocks it starts with (dropping a
// block cut short by a kill), rewrites the file if it dropped anything, and
// returns the blocks done.
func (c *Campaign) resume() (map[int64]bool, error) {
	path := filepath.Join(c.Dir, FaultsFile)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return map[int64]bool{}, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	// Read as a stream: a campaign of millions of faults need not fit in memory.
	r := bufio.NewReaderSize(f, 1<<20)
	done := map[int64]bool{}
	var keep, pos int64
blocks:
	for _, b := range c.blocks() {
		lo, hi := c.blockRange(b)
		for id := lo; id < hi; id++ {
			line, err := r.ReadBytes('\n')
			pos += int64(len(line))
			if err != nil { // io.EOF: a line cut short, or the end
				break blocks
			}
			var x Fault
			if err := json.Unmarshal(line, &x); err != nil || x.ID != id || x.Outcome == nil {
				break blocks
			}
		}
		done[b] = true
		keep = pos
	}
	if keep != st.Size() {
		// Drop the cut block; the blocks before it stay as they are.
		if err := f.Truncate(keep); err != nil {
			return nil, fmt.Errorf("fault: %s: %w", path, err)
		}
		if err := f.Sync(); err != nil {
			return nil, fmt.Errorf("fault: sync %s: %w", path, err)
		}
	}
	return done, nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, append(b, '\n'), 0o644)
}

// Merge combines the directories of a sharded campaign into dir: the result is
// the one the unsharded campaign writes (timings aside).
func Merge(dir string, shards []string) (*Summary, error) {
	if len(shards) == 0 {
		return nil, fmt.Errorf("fault: merge: no directories")
	}
	var h0 Header
	seen := map[int]string{}
	var tm Timing
	for i, d := range shards {
		b, err := os.ReadFile(filepath.Join(d, HeaderFile))
		if err != nil {
			return nil, fmt.Errorf("fault: merge: %w", err)
		}
		h, err := ParseHeader(b, filepath.Join(d, HeaderFile))
		if err != nil {
			return nil, err
		}
		if prev, dup := seen[h.Shard]; dup {
			return nil, fmt.Errorf("fault: merge: %s and %s are both shard %d", prev, d, h.Shard)
		}
		seen[h.Shard] = d
		cmp := h
		cmp.Shard = 0
		if i == 0 {
			h0 = cmp
		} else if a, b := mustJSON(h0), mustJSON(cmp); !bytes.Equal(a, b) {
			return nil, fmt.Errorf("fault: merge: %s is from another campaign (%s)", d, diffField(h0, cmp))
		}
		var s Summary
		if b, err := os.ReadFile(filepath.Join(d, SummaryFile)); err == nil && json.Unmarshal(b, &s) == nil {
			tm.InjectSeconds += s.Timing.InjectSeconds
			tm.SetupSeconds += s.Timing.SetupSeconds
		}
	}
	if len(seen) != h0.Shards {
		return nil, fmt.Errorf("fault: merge: %d of %d shards given", len(seen), h0.Shards)
	}
	h0.Shard, h0.Shards = 0, 1
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := writeJSON(filepath.Join(dir, HeaderFile), h0); err != nil {
		return nil, err
	}
	// The shards' faults, merged by ID as a stream (each shard's file is in ID
	// order): memory does not grow with the campaign.
	readers := make([]*faultReader, len(shards))
	for i, d := range shards {
		path := filepath.Join(d, FaultsFile)
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("fault: %w", err)
		}
		defer f.Close()
		readers[i] = newFaultReader(f, path)
		if err := readers[i].next(); err != nil {
			return nil, err
		}
	}
	sm := newSummariser()
	var n int64
	err := atomicfile.Write(filepath.Join(dir, FaultsFile), 0o644, func(w io.Writer) error {
		bw := bufio.NewWriterSize(w, 1<<20)
		enc := json.NewEncoder(bw)
		for {
			var low *faultReader
			for _, r := range readers {
				if r.ok && (low == nil || r.cur.ID < low.cur.ID) {
					low = r
				}
			}
			if low == nil {
				break
			}
			if low.cur.ID != n {
				return fmt.Errorf("fault: merge: fault %d missing or repeated (an unfinished shard?)", n)
			}
			if err := enc.Encode(&low.cur); err != nil {
				return err
			}
			sm.add(&low.cur)
			n++
			if err := low.next(); err != nil {
				return err
			}
		}
		if n != h0.Faults {
			return fmt.Errorf("fault: merge: %d faults, the campaign has %d (an unfinished shard?)", n, h0.Faults)
		}
		return bw.Flush()
	})
	if err != nil {
		os.Remove(filepath.Join(dir, HeaderFile)) // no campaign.json without its faults
		return nil, err
	}
	if tm.InjectSeconds > 0 {
		tm.FaultsPerSecond = float64(n) / tm.InjectSeconds
	}
	s := sm.summary(h0, h0.GoldenAccuracy, h0.Images, tm)
	if err := writeJSON(filepath.Join(dir, SummaryFile), s); err != nil {
		return nil, err
	}
	return &s, nil
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}
