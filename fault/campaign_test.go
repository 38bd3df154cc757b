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
	for _, f := range []string{"model.json", "model.npz", "model.onnx"} {
		os.WriteFile(filepath.Join(bad, f), read(t, filepath.Join(ckpt, f)), 0o644)
	}
	ot := read(t, filepath.Join(ckpt, "model.ot"))
	os.WriteFile(filepath.Join(bad, "model.ot"), ot[:len(ot)/2], 0o644)
	o := opts(bad, filepath.Join(dir, "x"))
	if _, err := RunCampaign(ctx, o); err == nil || !strings.Contains(err.Error(), "model.ot") {
		t.Errorf("truncated checkpoint: %v", err)
	}
}

// A stuck-at campaign counts every fault x image pair once as masked, SDC, DUE
// or inactive; summary.json's headline rates are over the active pairs and the
// _all rates over all, both read back from faults.jsonl. A weight fault is
// inactive on all its images or none; an activation fault image by image. The
// reference mode (replaying the list) and a sharded run agree.
func TestCampaignCountsInactive(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a model")
	}
	ctx := context.Background()
	ckpt := testckpt.Trained(t, 500)
	root := t.TempDir()
	for _, c := range []struct {
		name string
		sp   Space
	}{
		{"weights-stuck1", Space{Target: Weight, Kind: StuckAt1, Bias: true}},
		{"inputs-stuck1-multi2", Space{Target: Activation, Point: Input, Kind: StuckAt1, Multi: 2, Bits: []int{31, 30, 29, 28, 23, 22}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := opts(ckpt, filepath.Join(root, c.name))
			o.Space = c.sp
			s, err := RunCampaign(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			all := s.SummaryAllFaults
			if all == nil {
				t.Fatal("no inactive figures")
			}
			if all.Inactive == 0 || all.Inactive == s.Pairs || s.SDC+s.DUE == 0 || s.Masked+s.SDC+s.DUE+all.Inactive != s.Pairs ||
				all.ActivePairs+all.Inactive != s.Pairs || all.ActiveFaults+all.InactiveFaults != s.Faults {
				t.Fatalf("pairs %d: masked %d + sdc %d + due %d + inactive %d (active %d); faults %d = %d active + %d inactive",
					s.Pairs, s.Masked, s.SDC, s.DUE, all.Inactive, all.ActivePairs, s.Faults, all.ActiveFaults, all.InactiveFaults)
			}
			crit := float64(s.SDC + s.DUE)
			if s.VF != crit/float64(all.ActivePairs) || all.VFAll != crit/float64(s.Pairs) || s.VF <= all.VFAll ||
				s.SDCRate != float64(s.SDC)/float64(all.ActivePairs) || all.SDCRateAll != float64(s.SDC)/float64(s.Pairs) {
				t.Errorf("vf %v (over %d active pairs), vf_all %v (over %d), %v critical", s.VF, all.ActivePairs, all.VFAll, s.Pairs, crit)
			}
			if s.VFCI95[0] > s.VF || s.VFCI95[1] < s.VF || all.VFAllCI95[0] > all.VFAll || all.VFAllCI95[1] < all.VFAll {
				t.Errorf("intervals %v around %v, %v around %v", s.VFCI95, s.VF, all.VFAllCI95, all.VFAll)
			}
			faults, err := ReadFaults(filepath.Join(o.Out, FaultsFile))
			if err != nil {
				t.Fatal(err)
			}
			var inactive, partly int
			for _, f := range faults {
				oc := f.Outcome
				inactive += oc.Inactive
				if oc.Inactive > 0 && oc.Inactive < oc.Images {
					partly++
				}
				if f.Target == Weight && (oc.Inactive == oc.Images) != (oc.BeforeBits == oc.AfterBits) {
					t.Errorf("fault %d: inactive on %d of %d images, weight 0x%08x -> 0x%08x", f.ID, oc.Inactive, oc.Images, uint32(oc.BeforeBits), uint32(oc.AfterBits))
				}
			}
			if int64(inactive) != all.Inactive {
				t.Errorf("faults.jsonl has %d inactive pairs, summary.json %d", inactive, all.Inactive)
			}
			// Activation values differ from image to image: some faults are
			// inactive on some of their images only; weight faults never are.
			if (c.sp.Target == Activation) != (partly > 0) {
				t.Errorf("%d faults inactive on some of their images only", partly)
			}

			r := opts(ckpt, filepath.Join(root, c.name+"-reference"))
			r.FaultsFile, r.Mode = filepath.Join(o.Out, FaultsFile), "reference"
			if _, err := RunCampaign(ctx, r); err != nil {
				t.Fatal(err)
			}
			replayed, err := ReadFaults(filepath.Join(r.Out, FaultsFile))
			if err != nil {
				t.Fatal(err)
			}
			differ := 0
			for i := range replayed {
				a, b := faults[i].Outcome, replayed[i].Outcome
				if a.Inactive != b.Inactive || a.SDC != b.SDC || a.DUE != b.DUE || a.Masked != b.Masked {
					differ++
					t.Logf("fault %d: batched %+v, reference %+v", i, *a, *b)
				}
			}
			if differ > 1 {
				t.Errorf("%d of %d faults differ between the batched run and its reference replay", differ, len(replayed))
			}

			var dirs []string
			for i := range 2 {
				sh := opts(ckpt, filepath.Join(root, c.name+"-shard", string(rune('a'+i))))
				sh.Space, sh.Shard, sh.Shards = c.sp, i, 2
				if _, err := RunCampaign(ctx, sh); err != nil {
					t.Fatal(err)
				}
				dirs = append(dirs, sh.Out)
			}
			merged := filepath.Join(root, c.name+"-merged")
			if _, err := Merge(merged, dirs); err != nil {
				t.Fatal(err)
			}
			if a, b := mustJSON(summaryWithoutTiming(t, merged)), mustJSON(summaryWithoutTiming(t, o.Out)); !bytes.Equal(a, b) {
				t.Errorf("merged summary differs:\n%s\n%s", a, b)
			}
		})
	}
}
