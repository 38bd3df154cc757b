package fault

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/faultline/faultline/internal/testckpt"
	"github.com/sugarme/gotch"
)

func opts(ckpt, out string) RunOptions {
	return RunOptions{Checkpoint: ckpt, Device: gotch.CPU, Threads: 1, Out: out, Images: 20, ImagesPerFault: 5, Block: 64, BatchSize: 128,
		Space: Space{Target: Weight, Bias: true}, Plan: PlanOptions{Sampler: Uniform, Faults: 300, Seed: 11}}
}

func read(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// summaryWithoutTiming is summary.json with its timing fields zeroed.
func summaryWithoutTiming(t *testing.T, dir string) Summary {
	var s Summary
	if err := json.Unmarshal(read(t, filepath.Join(dir, SummaryFile)), &s); err != nil {
		t.Fatal(err)
	}
	s.Timing = Timing{}
	return s
}

func TestCampaignResumeShardMergeReplay(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a model")
	}
	ctx := context.Background()
	ckpt := testckpt.Trained(t, 0)
	root := t.TempDir()
	full := filepath.Join(root, "full")
	s, err := RunCampaign(ctx, opts(ckpt, full))
	if err != nil {
		t.Fatal(err)
	}
	if s.Faults != 300 || s.Images != 20 || s.Pairs != 1500 || s.Kind != SummaryKind || s.SchemaVersion != 1 {
		t.Fatalf("summary %+v", s)
	}
	if s.VF != s.SDCRate+s.DUERate || s.VFCI95[0] > s.VF || s.VFCI95[1] < s.VF || s.VFCI99[0] > s.VFCI95[0] {
		t.Errorf("rates: vf %v sdc %v due %v ci95 %v ci99 %v", s.VF, s.SDCRate, s.DUERate, s.VFCI95, s.VFCI99)
	}
	want := read(t, filepath.Join(full, FaultsFile))

	// Same arguments again: deterministic, byte for byte.
	again := filepath.Join(root, "again")
	if _, err := RunCampaign(ctx, opts(ckpt, again)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(read(t, filepath.Join(again, FaultsFile)), want) {
		t.Error("a second run with the same seed wrote different faults.jsonl")
	}

	// Killed mid-write: a truncated file (half a line) resumes to the same result.
	for _, cut := range []int{len(want) / 3, len(want) - 7, 0} {
		dir := filepath.Join(root, "resume")
		os.RemoveAll(dir)
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, HeaderFile), read(t, filepath.Join(full, HeaderFile)), 0o644)
		os.WriteFile(filepath.Join(dir, FaultsFile), want[:cut], 0o644)
		if _, err := RunCampaign(ctx, opts(ckpt, dir)); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(read(t, filepath.Join(dir, FaultsFile)), want) {
			t.Errorf("resumed after a cut at byte %d: faults.jsonl differs", cut)
		}
		if summaryWithoutTiming(t, dir).VF != s.VF {
			t.Errorf("resumed VF differs")
		}
	}

	// Other arguments on the same directory: an error naming the difference.
	o := opts(ckpt, full)
	o.Plan.Seed = 12
	if _, err := RunCampaign(ctx, o); err == nil || !strings.Contains(err.Error(), "different campaign") {
		t.Errorf("different seed on the same --out: %v", err)
	}

	// Three shards, merged: the unsharded result.
	var dirs []string
	for i := 0; i < 3; i++ {
		o := opts(ckpt, filepath.Join(root, "shard", string(rune('a'+i))))
		o.Shard, o.Shards = i, 3
		if _, err := RunCampaign(ctx, o); err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, o.Out)
	}
	if _, err := Merge(filepath.Join(root, "merged-bad"), dirs[:2]); err == nil {
		t.Error("merging 2 of 3 shards worked")
	}
	// A shard that lost its last fault: refused, nothing left behind.
	cut := filepath.Join(root, "shard-cut")
	if err := os.MkdirAll(cut, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{HeaderFile, SummaryFile, FaultsFile} {
		b := read(t, filepath.Join(dirs[1], f))
		if f == FaultsFile {
			b = b[:bytes.LastIndexByte(b[:len(b)-1], '\n')+1]
		}
		if err := os.WriteFile(filepath.Join(cut, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bad := filepath.Join(root, "merged-cut")
	if _, err := Merge(bad, []string{dirs[0], cut, dirs[2]}); err == nil || !strings.Contains(err.Error(), "missing or repeated") && !strings.Contains(err.Error(), "an unfinished shard") {
		t.Errorf("merging a shard without its last fault: %v", err)
	}
	if es, _ := os.ReadDir(bad); len(es) != 0 {
		t.Errorf("a failed merge left %d files", len(es))
	}
	merged := filepath.Join(root, "merged")
	if _, err := Merge(merged, dirs); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(read(t, filepath.Join(merged, FaultsFile)), want) {
		t.Error("merged faults.jsonl differs from the unsharded run")
	}
	if !bytes.Equal(read(t, filepath.Join(merged, HeaderFile)), read(t, filepath.Join(full, HeaderFile))) {
		t.Error("merged campaign.json differs from the unsharded run")
	}
	a, b := summaryWithoutTiming(t, merged), summaryWithoutTiming(t, full)
	if ja, jb := mustJSON(a), mustJSON(b); !bytes.Equal(ja, jb) {
		t.Errorf("merged summary differs:\n%s\n%s", ja, jb)
	}

	// Replay of the fault list gives the same outcomes, in both modes.
	for _, mode := range []string{"batched", "reference"} {
		o := opts(ckpt, filepath.Join(root, "replay-"+mode))
		o.FaultsFile, o.Mode = filepath.Join(full, FaultsFile), mode
		if _, err := RunCampaign(ctx, o); err != nil {
			t.Fatal(err)
		}
		got, err := ReadFaults(filepath.Join(o.Out, FaultsFile))
		if err != nil {
			t.Fatal(err)
		}
		orig, _ := ReadFaults(filepath.Join(full, FaultsFile))
		differ := 0
		for i := range got {
			if got[i].Outcome.SDC != orig[i].Outcome.SDC || got[i].Outcome.DUE != orig[i].Outcome.DUE {
				differ++
			}
		}
		if (mode == "batched" && differ != 0) || differ > 1 {
			t.Errorf("%s replay: %d of %d outcomes differ", mode, differ, len(got))
		}
	}
}

func TestCampaignBadInputs(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a model")
	}
	ctx := context.Background()
	ckpt := testckpt.Trained(t, 0)
	dir := t.TempDir()
	faultsFile := func(lines ...string) string {
		p := filepath.Join(t.TempDir(), "f.jsonl")
		os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
		return p
	}
	good := `{"id":0,"target":"weight","layer":"conv1","param":"weight","index":[3],"kind":"bitflip","bits":[30],"dtype":"float32","duration":"transient"}`
	cases := []struct {
		name string
		edit func(*RunOptions)
		want string
	}{
		{"unknown layer", func(o *RunOptions) { o.Space.Layers = []string{"conv9"} }, `unknown layer "conv9"`},
		{"layer twice", func(o *RunOptions) { o.Space.Layers = []string{"conv1", "fc1", "conv1"} }, `layer "conv1" given twice`},
		{"bit twice", func(o *RunOptions) { o.Space.Bits = []int{30, 2, 30} }, `bit 30 given twice`},
		{"bit outside 0..31", func(o *RunOptions) { o.Space.Bits = []int{32} }, "bit 32 outside 0..31"},
		{"index out of range", func(o *RunOptions) {
			o.FaultsFile = faultsFile(good, strings.Replace(good, "[3]", "[150]", 1))
		}, "line 2: fault 1: index 150 out of range: conv1.weight has 150 elements"},
		{"corrupt fault file", func(o *RunOptions) { o.FaultsFile = faultsFile(good, `{"id":1,"target":`) }, "line 2"},
		{"bad bit in file", func(o *RunOptions) { o.FaultsFile = faultsFile(strings.Replace(good, "[30]", "[40]", 1)) }, "line 1: bit 40 outside 0..31"},
		{"unknown field in file", func(o *RunOptions) { o.FaultsFile = faultsFile(strings.Replace(good, `"id":0`, `"idx":0`, 1)) }, `unknown field "idx"`},
		{"missing checkpoint", func(o *RunOptions) { o.Checkpoint = filepath.Join(dir, "nope") }, "nope"},
		{"bad mode", func(o *RunOptions) { o.Mode = "fast" }, `mode "fast"`},
	}
	for _, c := range cases {
		o := opts(ckpt, filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-")))
		c.edit(&o)
		_, err := RunCampaign(ctx, o)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want it to mention %q", c.name, err, c.want)
		}
	}
	// a checkpoint whose weights do not match its metadata
	bad := filepath.Join(dir, "bad-ckpt")
	os.MkdirAll(bad, 0o755)
	for _, f := range []string{"model.json", "model.npz"} {
		os.WriteFile(filepath.Join(bad, f), read(t, filepath.Join(ckpt, f)), 0o644)
	}
	ot := read(t, filepath.Join(ckpt, "model.ot"))
	os.WriteFile(filepath.Join(bad, "model.ot"), ot[:len(ot)/2], 0o644)
	o := opts(bad, filepath.Join(dir, "x"))
	if _, err := RunCampaign(ctx, o); err == nil || !strings.Contains(err.Error(), "model.ot") {
		t.Errorf("truncated checkpoint: %v", err)
	}
}
