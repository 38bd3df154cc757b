package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/faultline/faultline/eval"
	"github.com/faultline/faultline/importance"
	"github.com/faultline/faultline/internal/atomicfile"
	"github.com/faultline/faultline/internal/npz"
	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model"
	"github.com/faultline/faultline/model/onnx"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// crashCase is one command of the crash harness.
type crashCase struct {
	name string
	// args runs the command into out.
	args func(out string) []string
	// resumes: a rerun continues the killed run (inject); otherwise it restarts.
	resumes bool
	// stale, when set, fills out with the complete output of another run before
	// some kills, so that a kill can land while the command overwrites it.
	stale func(t *testing.T, out string)
}

// crashIterations is FAULTLINE_CRASH_N, else 20 under `make soak`
// (FAULTLINE_SOAK=1), else 2.
func crashIterations(t *testing.T) int {
	if s := os.Getenv("FAULTLINE_CRASH_N"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("FAULTLINE_CRASH_N=%q: want a positive integer", s)
		}
		return n
	}
	if os.Getenv("FAULTLINE_SOAK") != "" {
		return 20
	}
	return 2
}

// TestSoakCrash kills train, inject, importance, eval vf and harden with SIGKILL at seeded
// random moments spread over an uninterrupted run's duration, checks that every
// file left behind is complete (or a documented temporary or resumable one),
// reruns the command into the same --out and requires the result to equal the
// uninterrupted run's (timings and the output path aside). `make test` runs 2
// kills per command, `make soak` 20 (FAULTLINE_CRASH_N overrides both); runs
// that end before their kill are counted apart and do not count as kills.
func TestSoakCrash(t *testing.T) {
	if testing.Short() && os.Getenv("FAULTLINE_SOAK") == "" {
		t.Skip("kills and reruns the CLI; skipped in -short mode")
	}
	n := crashIterations(t)
	work := t.TempDir()
	bin := filepath.Join(work, "faultline")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	trainArgs := func(seed string) func(string) []string {
		return func(out string) []string {
			return []string{"train", "--preset", "lenet5-fashion", "--dataset", "synthetic", "--train-limit", "500",
				"--test-limit", "100", "--epochs", "1", "--seed", seed, "--threads", "1", "--out", out, "-q"}
		}
	}
	ckpt := filepath.Join(work, "ckpt")
	other := filepath.Join(work, "ckpt-other") // another seed's checkpoint: stale content
	for dir, seed := range map[string]string{ckpt: "3", other: "4"} {
		if _, err := runCLI(bin, trainArgs(seed)(dir), 0); err != nil {
			t.Fatalf("train %s: %v", dir, err)
		}
	}
	copyStale := func(src string) func(*testing.T, string) {
		return func(t *testing.T, out string) { copyTree(t, src, out) }
	}
	vfArgs := func(seed string) func(string) []string {
		return func(out string) []string {
			return []string{"eval", "vf", "--checkpoint", ckpt, "--images", "10", "--sampling-ratio", "0.1",
				"--validate", "0.05", "--validate-operands", "16", "--threads", "1", "--seed", seed, "--out", out, "-q"}
		}
	}
	otherVF := filepath.Join(work, "vf-other")
	cases := []crashCase{
		{name: "train", args: trainArgs("3"), stale: copyStale(other)},
		{name: "inject", resumes: true, args: func(out string) []string {
			return []string{"inject", "--checkpoint", ckpt, "--faults", "4000", "--block", "250", "--images", "50",
				"--threads", "1", "--seed", "5", "--out", out, "-q"}
		}},
		{name: "importance", resumes: true, args: func(out string) []string {
			return []string{"importance", "--checkpoint", ckpt, "--mode", "estimate", "--budget", "3000", "--images", "40",
				"--sens-batches", "1", "--threads", "1", "--seed", "6", "--out", out, "-q"}
		}},
		{name: "eval-vf", resumes: true, args: vfArgs("4"), stale: func(t *testing.T, out string) {
			if _, err := os.Stat(otherVF); err != nil {
				if _, err := runCLI(bin, vfArgs("5")(otherVF), 0); err != nil {
					t.Fatalf("eval vf (stale run): %v", err)
				}
			}
			copyTree(t, otherVF, out)
		}},
		{name: "harden", args: func(out string) []string {
			return []string{"harden", "--checkpoint", ckpt, "--profile-images", "200", "--vf-ratio", "0.2", "--vf-images", "10",
				"--ber", "1e-3", "--ber-trials", "1", "--ber-images", "40", "--epochs", "1", "--pool-budget", "50",
				"--pool-images", "50", "--refresh=false", "--threads", "1", "--out", out, "-q"}
		}, stale: copyStale(other)},
	}
	rng := rand.New(rand.NewPCG(2026, 12))
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ref := filepath.Join(work, c.name, "reference")
			began := time.Now()
			if _, err := runCLI(bin, c.args(ref), 0); err != nil {
				t.Fatalf("uninterrupted run: %v", err)
			}
			dur := time.Since(began)
			want := snapshotOutputs(t, ref)
			// At least n iterations and n kills (a run can end before its kill).
			kills, finished, i := 0, 0, 0
			for ; i < n || kills < n; i++ {
				if i >= 3*n {
					t.Fatalf("only %d of %d runs were killed: they end before the kill", kills, i)
				}
				out := filepath.Join(work, c.name, fmt.Sprintf("run%02d", i))
				stale := c.stale != nil && i%2 == 1
				if stale {
					c.stale(t, out)
				}
				// inject: every third iteration kills the resumed run too.
				rounds := 1
				if c.resumes && i%3 == 2 {
					rounds = 2
				}
				for r := range rounds {
					delay := time.Duration((0.05 + 0.95*rng.Float64()) * float64(dur))
					killed, err := runCLI(bin, c.args(out), delay)
					if err != nil {
						t.Fatalf("iteration %d: run to be killed after %v: %v", i, delay, err)
					}
					if !killed {
						finished++
						continue
					}
					kills++
					if err := checkComplete(out, c.resumes, stale); err != nil {
						t.Fatalf("iteration %d, kill %d after %v: %v", i, r+1, delay, err)
					}
				}
				if _, err := runCLI(bin, c.args(out), 0); err != nil {
					t.Fatalf("iteration %d: rerun after the kill: %v", i, err)
				}
				if err := checkComplete(out, c.resumes, false); err != nil {
					t.Fatalf("iteration %d: after the rerun: %v", i, err)
				}
				if temps := tempFiles(out); len(temps) > 0 {
					t.Errorf("iteration %d: the rerun left temporary files: %v", i, temps)
				}
				if err := sameOutputs(want, snapshotOutputs(t, out), ref, out); err != nil {
					t.Errorf("iteration %d: the rerun's outputs differ from the uninterrupted run's: %v", i, err)
				}
				_ = os.RemoveAll(out)
			}
			t.Logf("%s: %d SIGKILLs (%d runs finished before their kill), %d reruns equal to the uninterrupted run (%.1f s)",
				c.name, kills, finished, i, dur.Seconds())
		})
	}
}

// runCLI runs the binary; with kill > 0 it sends SIGKILL after that delay and
// reports whether the signal ended the process. An exit code other than 0 is an
// error carrying stderr.
func runCLI(bin string, args []string, kill time.Duration) (bool, error) {
	cmd := exec.Command(bin, args...)
	// The test's own FAULTLINE_SOAK and FAULTLINE_CRASH_N would be read as
	// (unknown) config keys.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FAULTLINE_SOAK=") && !strings.HasPrefix(kv, "FAULTLINE_CRASH_N=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return false, err
	}
	if kill > 0 {
		timer := time.AfterFunc(kill, func() { _ = cmd.Process.Signal(syscall.SIGKILL) })
		defer timer.Stop()
	}
	err := cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, stderr.String())
	}
	return false, nil
}

// tempFiles lists atomicfile's temporary files under dir.
func tempFiles(dir string) []string {
	var out []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && atomicfile.IsTemp(d.Name()) {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// checkComplete checks that every file under dir is complete: JSON parses,
// JSON lines parse line by line (a campaign's faults.jsonl, when resumes, may
// end in a block cut by the kill), CSV parses, .npz and .ot files load, and a
// checkpoint's model.json matches its weight files, unless stale (a save over
// another run's checkpoint was killed): then Load must report the checkpoint as
// torn. A finished marker (harden's report.json, eval vf's vf.json) implies the
// rest of its run. Temporary files of atomicfile are allowed, and so is no
// directory at all.
func checkComplete(dir string, resumes, stale bool) error {
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		return nil // killed before it wrote anything
	}
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || atomicfile.IsTemp(d.Name()) {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		switch {
		case strings.HasSuffix(p, ".json"):
			if !json.Valid(b) {
				return fmt.Errorf("%s is not complete JSON (%d bytes)", p, len(b))
			}
		case strings.HasSuffix(p, ".jsonl"):
			lines := bytes.SplitAfter(b, []byte("\n"))
			for i, l := range lines {
				if len(l) == 0 {
					continue
				}
				if !bytes.HasSuffix(l, []byte("\n")) && (resumes && d.Name() == "faults.jsonl" || d.Name() == importance.JournalFile || d.Name() == eval.JournalFile) && i == len(lines)-1 {
					continue // a block cut by the kill, dropped on resume (importance's journal also under harden)
				}
				if !bytes.HasSuffix(l, []byte("\n")) || !json.Valid(l) {
					return fmt.Errorf("%s: line %d is not complete JSON", p, i+1)
				}
			}
		case strings.HasSuffix(p, ".csv"):
			if len(b) == 0 || b[len(b)-1] != '\n' {
				return fmt.Errorf("%s does not end in a newline", p)
			}
			if _, err := csv.NewReader(bytes.NewReader(b)).ReadAll(); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
		case strings.HasSuffix(p, ".npz"):
			if _, err := npz.Read(p); err != nil {
				return err
			}
		case strings.HasSuffix(p, ".ot"):
			if err := loadOT(p); err != nil {
				return err
			}
		case strings.HasSuffix(p, ".onnx"):
			if _, err := onnx.ReadFile(p); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: unknown output file (teach the crash harness to check it)", p)
		}
		dir := filepath.Dir(p)
		switch d.Name() {
		case model.MetadataFile:
			_, _, err := model.Load(dir, gotch.CPU)
			if stale && err != nil && strings.Contains(err.Error(), "is torn") {
				return nil
			}
			if err != nil {
				return fmt.Errorf("checkpoint %s: %w", dir, err)
			}
		case "report.json":
			for _, f := range []string{model.MetadataFile, "before/vf/vf.json", "before/ber/ber.json", "after/vf/vf.json", "after/ber/ber.json"} {
				if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
					return fmt.Errorf("%s exists but %s does not: the report is not the last file written", p, f)
				}
			}
		case "vf.json":
			if _, err := os.Stat(filepath.Join(dir, "vf.csv")); err != nil {
				return fmt.Errorf("%s exists without vf.csv", p)
			}
		}
		return nil
	})
}

// loadOT reads every tensor of a libtorch .ot file.
func loadOT(p string) error {
	return torch.Do(func() error {
		named, err := ts.LoadMultiWithDevice(p, gotch.CPU)
		if err != nil {
			return fmt.Errorf("%s does not load: %v", p, strings.SplitN(err.Error(), "\n", 2)[0])
		}
		for _, nt := range named {
			_ = nt.Tensor.Drop()
		}
		if len(named) == 0 {
			return fmt.Errorf("%s holds no tensors", p)
		}
		return nil
	})
}

// snapshotOutputs reads every file under dir (by path relative to dir), skipping
// temporary files.
func snapshotOutputs(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || atomicfile.IsTemp(d.Name()) {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel] = b
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// timingKeys are the JSON fields that hold wall-clock measurements.
var timingKeys = map[string]bool{"timing": true, "train_seconds": true, "faults_per_second": true}

// sameOutputs compares two runs' files: the same names; JSON and JSON lines
// equal once timing fields are removed and each run's output directory is
// replaced by a placeholder; every other file byte for byte.
func sameOutputs(want, got map[string][]byte, wantDir, gotDir string) error {
	var names, gotNames []string
	for n := range want {
		names = append(names, n)
	}
	for n := range got {
		gotNames = append(gotNames, n)
	}
	slices.Sort(names)
	slices.Sort(gotNames)
	if !slices.Equal(names, gotNames) {
		return fmt.Errorf("files %v, want %v", gotNames, names)
	}
	for _, n := range names {
		a, b := want[n], got[n]
		if strings.HasSuffix(n, ".json") || strings.HasSuffix(n, ".jsonl") {
			var err error
			if a, err = normaliseJSON(a, wantDir); err == nil {
				b, err = normaliseJSON(b, gotDir)
			}
			if err != nil {
				return fmt.Errorf("%s: %w", n, err)
			}
		}
		if !bytes.Equal(a, b) {
			return fmt.Errorf("%s differs (%d vs %d bytes after normalising)%s", n, len(b), len(a), showDiff(a, b))
		}
	}
	return nil
}

// normaliseJSON re-encodes each JSON value of b (one, or one per line) without
// timing fields and with dir replaced by "<OUT>".
func normaliseJSON(b []byte, dir string) ([]byte, error) {
	var out bytes.Buffer
	dec := json.NewDecoder(bytes.NewReader(b))
	for dec.More() {
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		e, err := json.Marshal(scrub(v, dir))
		if err != nil {
			return nil, err
		}
		out.Write(append(e, '\n'))
	}
	return out.Bytes(), nil
}

func scrub(v any, dir string) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if timingKeys[k] {
				delete(x, k)
				continue
			}
			x[k] = scrub(e, dir)
		}
	case []any:
		for i := range x {
			x[i] = scrub(x[i], dir)
		}
	case string:
		return strings.ReplaceAll(x, dir, "<OUT>")
	}
	return v
}

// showDiff shows where a and b first differ.
func showDiff(a, b []byte) string {
	i := firstDiff(a, b)
	lo := max(0, i-80)
	return fmt.Sprintf(" at byte %d: want %q, got %q", i, a[lo:min(len(a), i+80)], b[lo:min(len(b), i+80)])
}

// copyTree copies the regular files under src into dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}
