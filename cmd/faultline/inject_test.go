package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/faultline/faultline/internal/testckpt"
)

// TestInjectResumesAfterKill9 proves that `faultline inject` survives a real
// SIGKILL of its process, twice, at two different points of the campaign, and that
// rerunning it with the same arguments finishes the campaign with exactly the
// result of an uninterrupted run: faults.jsonl and campaign.json byte for byte,
// summary.json field for field (its timing fields aside), every fault ID once.
//
// Unlike fault's TestCampaignResumeShardMergeReplay, which cuts files by hand, the
// campaign here runs in a child process (this test binary re-executed as the CLI,
// see TestMain) that the test kills with kill -9 while it is streaming blocks: no
// deferred close, no flush, no signal handler runs. What a kill leaves behind must
// already be a prefix of the reference faults.jsonl (each block is written and
// fsynced as a whole) and no summary.json. After the second kill a torn half line
// is appended as well, what a power loss in the middle of a block's write leaves;
// the resume must drop it with the rest of that block.
func TestInjectResumesAfterKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a model and runs four fault-injection campaigns; skipped in -short mode")
	}
	// Everything, children included, must end within this deadline (the test as a
	// whole takes well under a minute on a busy 2-core machine).
	ctx, cancel := context.WithTimeout(context.Background(), 55*time.Second)
	defer cancel()

	root := t.TempDir()
	ckpt := filepath.Join(root, "ckpt")
	if _, errs, code := cli(t, "train", "--preset", "lenet5-fashion", "--dataset", "synthetic", "--train-limit", "500",
		"--test-limit", "100", "--epochs", "1", "--seed", "3", "--threads", "1", "--quiet", "--out", ckpt); code != 0 {
		t.Fatalf("train failed: %s", errs)
	}

	// Reference mode runs one fault per forward pass, a few milliseconds each on one
	// thread: 2048 faults on 5 images each take several seconds in 32 blocks, time
	// enough to kill the campaign twice well before its end.
	const faults, block = 2048, 64
	args := func(out string) []string {
		return []string{"inject", "--checkpoint", ckpt, "--dataset", "synthetic", "--target", "weights", "--sampler", "uniform",
			"--faults", strconv.Itoa(faults), "--images", "50", "--images-per-fault", "5", "--block", strconv.Itoa(block),
			"--batch", "320", "--mode", "reference", "--seed", "7", "--threads", "1", "--quiet", "--out", out}
	}

	refDir := filepath.Join(root, "reference")
	t0 := time.Now()
	if out, errs, code := cli(t, args(refDir)...); code != 0 {
		t.Fatalf("reference campaign failed: %s %s", out, errs)
	}
	t.Logf("uninterrupted campaign: %v (summary.json timing: %v)", time.Since(t0).Round(time.Millisecond),
		summaryTiming(t, filepath.Join(refDir, "summary.json")))
	ref := readFile(t, filepath.Join(refDir, "faults.jsonl"))
	checkIDs(t, "reference faults.jsonl", ref, faults)

	dir := filepath.Join(root, "killed")
	faultsPath := filepath.Join(dir, "faults.jsonl")
	summaryPath := filepath.Join(dir, "summary.json")
	prev := 0
	// Kill once past a quarter of the campaign, once past 60%: the second run
	// resumes from the first kill's file and is killed at a later point.
	for i, frac := range []float64{0.25, 0.6} {
		threshold := max(int(frac*float64(len(ref))), prev+2*len(ref)/(faults/block))
		partial := killWhenLarger(ctx, t, args(dir), faultsPath, summaryPath, threshold)
		if len(partial) >= len(ref) || !bytes.HasPrefix(ref, partial) {
			t.Fatalf("kill %d: faults.jsonl (%d bytes) is not a strict prefix of the uninterrupted run's (%d bytes)", i+1, len(partial), len(ref))
		}
		if len(partial) <= prev {
			t.Fatalf("kill %d: faults.jsonl did not grow after resuming (%d bytes, %d before)", i+1, len(partial), prev)
		}
		lines := bytes.Count(partial, []byte("\n"))
		t.Logf("kill %d: %d bytes, %d of %d faults written (%d full blocks; a partial line: %v)",
			i+1, len(partial), lines, faults, lines/block, len(partial) > 0 && partial[len(partial)-1] != '\n')
		prev = len(partial)
	}

	// A torn write: half of the next line of the reference, with no newline.
	next := ref[prev:]
	if nl := bytes.IndexByte(next, '\n'); nl > 0 {
		next = next[:nl]
	}
	f, err := os.OpenFile(faultsPath, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(next[:len(next)/2]); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	// Resume to completion, again as a separate process.
	cmd := cliCommand(ctx, args(dir))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("resumed campaign failed: %v\n%s", err, out)
	}
	got := readFile(t, faultsPath)
	checkIDs(t, "resumed faults.jsonl", got, faults)
	if !bytes.Equal(got, ref) {
		t.Errorf("resumed faults.jsonl (%d bytes) differs from the uninterrupted run's (%d bytes) from byte %d",
			len(got), len(ref), firstDiff(got, ref))
	}
	if a, b := readFile(t, filepath.Join(dir, "campaign.json")), readFile(t, filepath.Join(refDir, "campaign.json")); !bytes.Equal(a, b) {
		t.Errorf("campaign.json differs:\n%s\n%s", a, b)
	}
	sa, sb := summaryFields(t, summaryPath), summaryFields(t, filepath.Join(refDir, "summary.json"))
	if !reflect.DeepEqual(sa, sb) {
		ja, _ := json.MarshalIndent(sa, "", " ")
		jb, _ := json.MarshalIndent(sb, "", " ")
		t.Errorf("summary.json (timings aside) differs:\nresumed %s\nuninterrupted %s", ja, jb)
	}
	if sa["faults"] != float64(faults) {
		t.Errorf("summary.json counts %v faults, want %d", sa["faults"], faults)
	}
}

// cliCommand is this test binary run as `faultline ARGS...` in a child process.
func cliCommand(ctx context.Context, args []string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "CLI_TEST_ARGS="+strings.Join(args, "\n"))
	return cmd
}

// killWhenLarger runs the CLI as a child process, sends it SIGKILL as soon as
// faultsPath holds at least threshold bytes, and returns the file as the kill left
// it. It skips the test if the child finished first.
func killWhenLarger(ctx context.Context, t *testing.T, args []string, faultsPath, summaryPath string, threshold int) []byte {
	t.Helper()
	cmd := cliCommand(ctx, args)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-exited:
			if err == nil {
				t.Skipf("the campaign finished before faults.jsonl reached %d bytes: the machine is faster than this test's sizing; raise the number of faults", threshold)
			}
			t.Fatalf("campaign child failed before it was killed: %v\n%s", err, out.String())
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			<-exited
			t.Fatalf("deadline: faults.jsonl never reached %d bytes\n%s", threshold, out.String())
		case <-tick.C:
		}
		st, err := os.Stat(faultsPath)
		if err != nil || st.Size() < int64(threshold) {
			continue
		}
		// An error here means the child has already exited: the checks below tell how.
		_ = cmd.Process.Kill()
		err = <-exited
		var ee *exec.ExitError
		if !errors.As(err, &ee) || !killed(ee) {
			if _, serr := os.Stat(summaryPath); err == nil && serr == nil {
				t.Skip("the campaign finished between the size check and the kill; raise the number of faults")
			}
			t.Fatalf("campaign child: want death by SIGKILL, got %v\n%s", err, out.String())
		}
		if _, err := os.Stat(summaryPath); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("killed campaign left a summary.json (stat: %v)", err)
		}
		return readFile(t, faultsPath)
	}
}

func killed(ee *exec.ExitError) bool {
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkIDs checks that data holds n complete JSONL faults with IDs 0..n-1, each
// exactly once, in order.
func checkIDs(t *testing.T, name string, data []byte, n int) {
	t.Helper()
	if len(data) == 0 || data[len(data)-1] != '\n' {
		t.Errorf("%s does not end with a complete line", name)
	}
	seen := make(map[int64]int, n)
	var order []int64
	for i, line := range bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n")) {
		var f struct {
			ID      *int64          `json:"id"`
			Outcome json.RawMessage `json:"outcome"`
		}
		if err := json.Unmarshal(line, &f); err != nil || f.ID == nil || len(f.Outcome) == 0 || string(f.Outcome) == "null" {
			t.Fatalf("%s line %d: not a fault with an ID and an outcome (%v): %.120s", name, i+1, err, line)
		}
		seen[*f.ID]++
		order = append(order, *f.ID)
	}
	for id := int64(0); id < int64(n); id++ {
		if seen[id] != 1 {
			t.Errorf("%s: fault %d appears %d times", name, id, seen[id])
		}
	}
	if len(order) != n {
		t.Errorf("%s: %d faults, want %d", name, len(order), n)
	}
	for i, id := range order {
		if id != int64(i) {
			t.Errorf("%s: line %d holds fault %d", name, i+1, id)
			break
		}
	}
}

// summaryFields is summary.json as a map, without its timing fields.
func summaryFields(t *testing.T, path string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(readFile(t, path), &m); err != nil {
		t.Fatal(fmt.Errorf("%s: %w", path, err))
	}
	if _, ok := m["timing"]; !ok {
		t.Errorf("%s has no timing field", path)
	}
	delete(m, "timing")
	if _, ok := m["faults_per_second"]; ok {
		t.Errorf("%s has faults_per_second outside its timing field", path)
	}
	return m
}

// summaryTiming is the timing field of summary.json, for the log.
func summaryTiming(t *testing.T, path string) string {
	var s struct{ Timing json.RawMessage }
	_ = json.Unmarshal(readFile(t, path), &s)
	return string(s.Timing)
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// --multi K combines with stuck-at kinds: every fault forces K distinct bits of
// --bits, the summary counts the inactive pairs and labels its rates; K beyond
// the bit positions, or below 1, and several bits for zero faults are one clear
// error each.
func TestInjectMultiBitStuckAt(t *testing.T) {
	if testing.Short() {
		t.Skip("runs fault-injection campaigns; skipped in -short mode")
	}
	ckpt := testckpt.Untrained(t)
	dir := t.TempDir()
	base := []string{"inject", "--checkpoint", ckpt, "--dataset", "synthetic", "--target", "weights", "--faults", "200",
		"--images", "10", "--seed", "3", "--threads", "1", "--quiet"}
	out := filepath.Join(dir, "st0")
	stdout, errs, code := cli(t, append(base, "--kind", "stuck0", "--multi", "2", "--bits", "30,23,22", "--out", out)...)
	if code != 0 {
		t.Fatalf("inject --multi 2 --kind stuck0 failed: %s", errs)
	}
	for _, want := range []string{"over active faults", "inactive (the fault left the value unchanged):", "over all faults: SDC"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	var faults, inactive int
	for _, line := range strings.Split(strings.TrimSpace(string(readFile(t, filepath.Join(out, "faults.jsonl")))), "\n") {
		var f struct {
			Kind    string `json:"kind"`
			Bits    []int  `json:"bits"`
			Outcome struct {
				Images   int `json:"images"`
				Inactive int `json:"inactive"`
			} `json:"outcome"`
		}
		if err := json.Unmarshal([]byte(line), &f); err != nil {
			t.Fatal(err)
		}
		if f.Kind != "stuck0" || len(f.Bits) != 2 || f.Bits[0] == f.Bits[1] || f.Bits[0] > f.Bits[1] ||
			!strings.Contains(",30,23,22,", fmt.Sprintf(",%d,", f.Bits[0])) || !strings.Contains(",30,23,22,", fmt.Sprintf(",%d,", f.Bits[1])) {
			t.Fatalf("fault %s", line)
		}
		faults++
		inactive += f.Outcome.Inactive
	}
	var s map[string]any
	if err := json.Unmarshal(readFile(t, filepath.Join(out, "summary.json")), &s); err != nil {
		t.Fatal(err)
	}
	// Bit 30 of a small weight is 0 already: a fault on {30, 23} is inactive
	// when bit 23 is 0 too, about half the time; the pairs add up.
	if faults != 200 || inactive == 0 || s["inactive"] != float64(inactive) || s["pairs"] != s["masked"].(float64)+s["sdc"].(float64)+s["due"].(float64)+s["inactive"].(float64) {
		t.Errorf("%d faults, %d inactive pairs; summary inactive %v, pairs %v, masked %v, sdc %v, due %v",
			faults, inactive, s["inactive"], s["pairs"], s["masked"], s["sdc"], s["due"])
	}
	for _, k := range []string{"vf_all", "sdc_rate_all", "active_pairs", "inactive_faults"} {
		if _, ok := s[k]; !ok {
			t.Errorf("summary.json lacks %q", k)
		}
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--kind", "stuck0", "--multi", "3", "--bits", "30,23"}, "multi 3: more distinct bits per fault than the 2 bit positions"},
		{[]string{"--kind", "stuck1", "--multi", "33"}, "multi 33: more distinct bits per fault than the 32 bit positions"},
		{[]string{"--kind", "stuck1", "--multi", "0"}, "--multi 0: want at least 1"},
		{[]string{"--kind", "zero", "--multi", "2"}, "several bits per fault are for bitflip, stuck0 and stuck1, not zero"},
	} {
		bad := filepath.Join(dir, "bad")
		_, errs, code := cli(t, append(append(base, c.args...), "--out", bad)...)
		if code == 0 || !strings.Contains(errs, c.want) || strings.Count(strings.TrimSpace(errs), "\n") != 0 || strings.Contains(errs, "goroutine ") {
			t.Errorf("%v: code %d, stderr %q; want one line mentioning %q", c.args, code, errs, c.want)
		}
		if _, err := os.Stat(filepath.Join(bad, "faults.jsonl")); err == nil {
			t.Errorf("%v: a refused campaign wrote faults", c.args)
		}
	}
}
