package eval

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/faultline/faultline/eval/deepvigor"
	"github.com/faultline/faultline/internal/testckpt"
	"github.com/sugarme/gotch"
)

// vfOutputs reads vf.csv and vf.json, the latter with its timing cut out.
func vfOutputs(t *testing.T, dir string) (csv, js []byte) {
	t.Helper()
	csv, err := os.ReadFile(filepath.Join(dir, VFCSVFile))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, VFFile))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "timing")
	js, _ = json.Marshal(m)
	return csv, js
}

// An eval vf interrupted during the analysis, and again during the validation,
// resumes from its journal each time: the recorded channels and units are taken
// over (the rerun says how many, and its progress starts there), and the final
// vf.json and vf.csv equal an uninterrupted run's; then the journal is gone. A
// journal of other arguments is refused, naming the field. The precision target
// draws some layers twice, so channels at two sets of positions are taken over.
func TestRunVFResumesFromJournal(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a model; skipped in -short mode")
	}
	ckpt := testckpt.Trained(t, 300)
	base := VFOptions{Checkpoint: ckpt, Device: gotch.CPU, Threads: 1, Target: "both", Ratio: 0.2, Images: 10,
		Precision: 0.004, Semantics: deepvigor.Exact, TailCheck: "on", Seed: 3, Validate: 0.5, ValidateOperands: 8}
	ref := base
	ref.Out = filepath.Join(t.TempDir(), "ref")
	if _, err := RunVF(context.Background(), ref); err != nil {
		t.Fatal(err)
	}
	wantCSV, wantJSON := vfOutputs(t, ref.Out)
	if !bytes.Contains(wantJSON, []byte(`"draws":2`)) {
		t.Fatal("no layer was drawn twice; the precision target should widen one")
	}

	o := base
	o.Out = filepath.Join(t.TempDir(), "run")
	jpath := filepath.Join(o.Out, JournalFile)
	for _, stop := range []string{"analysis", "validation"} {
		ctx, cancel := context.WithCancel(context.Background())
		first := map[string]int64{}
		o.OnProgress = func(phase string, done, total int64) {
			if _, ok := first[phase]; !ok {
				first[phase] = done
			}
			if phase == stop && done >= total/2 {
				cancel()
			}
		}
		var channels int
		o.OnResume = func(c, _ int) { channels = c }
		if _, err := RunVF(ctx, o); !errors.Is(err, context.Canceled) {
			t.Fatalf("stopped in the %s: %v, want context.Canceled", stop, err)
		}
		if _, err := os.Stat(jpath); err != nil {
			t.Fatalf("no journal after stopping in the %s: %v", stop, err)
		}
		if stop == "validation" {
			// The second stop resumed the first: every channel analysed then
			// was taken over, and the analysis's progress began past zero.
			if channels == 0 || first["analysis"] == 0 {
				t.Errorf("second run: %d channels taken over, first analysis progress %d", channels, first["analysis"])
			}
		}
	}
	bad := o
	bad.Seed = 4
	if _, err := RunVF(context.Background(), bad); err == nil || !strings.Contains(err.Error(), "seed: 3 before, 4 now") {
		t.Fatalf("resume with another seed: %v, want the seed named", err)
	}
	var units int
	o.OnResume = func(_, u int) { units = u }
	var firstVal int64 = -1
	o.OnProgress = func(phase string, done, total int64) {
		if phase == "validation" && firstVal < 0 {
			firstVal = done
		}
	}
	replayed := map[string]int64{}
	o.OnReplay = func(phase string, n int64) { replayed[phase] += n }
	var ran int64
	onRun = func(n int) { ran += int64(n) }
	defer func() { onRun = nil }()
	vf, err := RunVF(context.Background(), o)
	if err != nil {
		t.Fatalf("resumed run: %v", err)
	}
	if units == 0 || firstVal <= 0 || ran == 0 || ran >= vf.Validation.Faults {
		t.Errorf("the last run took over %d validated units, its validation progress began at %d, and it injected %d of the %d faults",
			units, firstVal, ran, vf.Validation.Faults)
	}
	// Every analysis target was taken over (both stops came after the
	// analysis's half), and the validation's replayed and injected faults add up.
	if replayed["analysis"] == 0 || replayed["validation"]+ran != vf.Validation.Faults {
		t.Errorf("OnReplay: %d analysis targets, %d validation faults replayed; %d injected of %d", replayed["analysis"], replayed["validation"], ran, vf.Validation.Faults)
	}
	if _, err := os.Stat(jpath); !os.IsNotExist(err) {
		t.Errorf("journal left after vf.json was written: %v", err)
	}
	gotCSV, gotJSON := vfOutputs(t, o.Out)
	if !bytes.Equal(gotCSV, wantCSV) {
		t.Errorf("vf.csv differs from the uninterrupted run's:\n%s\nwant:\n%s", gotCSV, wantCSV)
	}
	if !bytes.Equal(gotJSON, wantJSON) {
		t.Errorf("vf.json differs from the uninterrupted run's:\n%s\nwant:\n%s", gotJSON, wantJSON)
	}
}
