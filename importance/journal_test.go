package importance

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/faultline/faultline/internal/testckpt"
	"github.com/sugarme/gotch"
)

// outputs reads every file of dir, with summary.json's timing cut out.
func outputs(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, e := range es {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if e.Name() == SummaryFile {
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			delete(m, "timing")
			b, _ = json.Marshal(m)
		}
		out[e.Name()] = b
	}
	return out
}

// An interrupted run resumes from its journal: the rerun replays the recorded
// injections (and says how many), runs only the rest, and writes exactly the
// uninterrupted run's results; then the journal is gone. A journal of other
// arguments is refused, naming the field, and a last line cut short is dropped.
func TestRunResumesFromJournal(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a model; skipped in -short mode")
	}
	ckpt := testckpt.Trained(t, 300)
	base := Options{Checkpoint: ckpt, Device: gotch.CPU, Threads: 1, Target: Weights, Mode: EstimateMode, Budget: 1200,
		Tau: 0.05, Images: 40, Alpha: 0.1, ScoreFloor: 1, SensBatches: 1, Seed: 4, block: 100}
	ref := base
	ref.Out = filepath.Join(t.TempDir(), "ref")
	injected := func(o *Options) *int64 {
		var n int64
		var last = map[string]int64{}
		o.OnProgress = func(phase string, done, total int64) {
			n += done - last[phase]
			last[phase] = done
		}
		return &n
	}
	nRef := injected(&ref)
	if _, err := Run(context.Background(), ref); err != nil {
		t.Fatal(err)
	}
	want := outputs(t, ref.Out)
	if *nRef != 2*1200 {
		t.Fatalf("uninterrupted run reported %d injections, want 2400", *nRef)
	}

	// Interrupt during the uniform phase.
	o := base
	o.Out = filepath.Join(t.TempDir(), "run")
	ctx, cancel := context.WithCancel(context.Background())
	o.OnProgress = func(phase string, done, total int64) {
		if phase == "uniform" && done >= 300 {
			cancel()
		}
	}
	if _, err := Run(ctx, o); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: %v, want context.Canceled", err)
	}
	jpath := filepath.Join(o.Out, JournalFile)
	if _, err := os.Stat(jpath); err != nil {
		t.Fatalf("no journal after the interruption: %v", err)
	}
	if _, err := os.Stat(filepath.Join(o.Out, SummaryFile)); err == nil {
		t.Fatal("the interrupted run wrote summary.json")
	}

	// Other arguments: refused, naming the field.
	bad := o
	bad.Seed = 5
	if _, err := Run(context.Background(), bad); err == nil || !strings.Contains(err.Error(), "seed: 4 before, 5 now") {
		t.Fatalf("resume with another seed: %v, want an error naming the seed", err)
	}

	// A kill in the middle of a write leaves a cut line: dropped.
	f, err := os.OpenFile(jpath, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(`{"phase":"uniform","keys":[1,2`); err != nil {
		t.Fatal(err)
	}
	f.Close()

	var resumed int64
	o.OnResume = func(n int64) { resumed = n }
	n := injected(&o)
	blocks := map[bool]int{}
	o.onBlock = func(_ string, replayed bool) { blocks[replayed]++ }
	var replayedReported int64
	o.OnReplay = func(_ string, k int64) { replayedReported += k }
	if _, err := Run(context.Background(), o); err != nil {
		t.Fatalf("resumed run: %v", err)
	}
	if resumed < 1200+300 || resumed > 2400 {
		t.Errorf("resumed with %d recorded injections, want the 1,200 importance ones and at least 300 uniform ones", resumed)
	}
	if int64(100*blocks[true]) != resumed || blocks[true]+blocks[false] != 24 {
		t.Errorf("resumed run: %d blocks replayed, %d injected; want %d replayed of 24", blocks[true], blocks[false], resumed/100)
	}
	if replayedReported != resumed {
		t.Errorf("OnReplay reported %d replayed injections, want the %d recorded", replayedReported, resumed)
	}
	if *n != 2400 {
		t.Errorf("the resumed run reported %d injections done, want 2400 (replayed ones included)", *n)
	}
	if _, err := os.Stat(jpath); !os.IsNotExist(err) {
		t.Errorf("journal left after the results were written: %v", err)
	}
	got := outputs(t, o.Out)
	if len(got) != len(want) {
		t.Errorf("resumed run wrote %d files, the uninterrupted one %d", len(got), len(want))
	}
	for name, b := range want {
		if !bytes.Equal(got[name], b) {
			t.Errorf("%s differs from the uninterrupted run's", name)
		}
	}
}
