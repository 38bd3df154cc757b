package eval

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/faultline/faultline/eval/deepvigor"
	"github.com/faultline/faultline/fault"
	"github.com/faultline/faultline/internal/testckpt"
	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model"
	"github.com/sugarme/gotch"
)

// inMemory loads ckpt as a model in memory (identified by fault.ModelSHA256),
// labelled with the checkpoint's path.
func inMemory(t *testing.T, ckpt string) *fault.Loaded {
	t.Helper()
	l, err := fault.LoadCheckpoint(ckpt, "", "", gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	l.ContentSHA256 = ""
	return l
}

// flipFirstWeight leaves bit 3 of the model's first weight flipped.
func flipFirstWeight(t *testing.T, m *model.Model) {
	t.Helper()
	err := torch.Do(func() error {
		inj, err := fault.NewInjector(m)
		if err != nil {
			return err
		}
		_, err = inj.Apply(&fault.Fault{Target: fault.Weight, Layer: m.Sites()[0].Name, Param: "weight", Index: []int64{0},
			Kind: fault.BitFlip, Bits: []int{3}, DType: fault.Float32, Duration: fault.Permanent})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestRunVFOn: eval vf on a model in memory writes what RunVF writes on its
// checkpoint, leaves the model as it was, and its journal resumes on the same
// model in memory but not on a changed one or on the checkpoint (another
// identity), and not on bad input.
func TestRunVFOn(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a model; skipped in -short mode")
	}
	ckpt := testckpt.Trained(t, 300)
	base := VFOptions{Threads: 1, Target: "both", Ratio: 0.2, Images: 10, Semantics: deepvigor.Exact, TailCheck: "on",
		Seed: 3, Validate: 0.5, ValidateOperands: 8}
	ref := base
	ref.Checkpoint, ref.Device, ref.Out = ckpt, gotch.CPU, filepath.Join(t.TempDir(), "ref")
	if _, err := RunVF(context.Background(), ref); err != nil {
		t.Fatal(err)
	}
	wantCSV, wantJSON := vfOutputs(t, ref.Out)

	l := inMemory(t, ckpt)
	id, err := l.Identity()
	if err != nil {
		t.Fatal(err)
	}
	o := base
	o.Out = filepath.Join(t.TempDir(), "memory")
	if _, err := RunVFOn(context.Background(), l, o); err != nil {
		t.Fatal(err)
	}
	gotCSV, gotJSON := vfOutputs(t, o.Out)
	if !bytes.Equal(gotCSV, wantCSV) || !bytes.Equal(gotJSON, wantJSON) {
		t.Errorf("vf.csv equal %v, vf.json equal %v to the checkpoint's:\n%s\nwant\n%s",
			bytes.Equal(gotCSV, wantCSV), bytes.Equal(gotJSON, wantJSON), gotJSON, wantJSON)
	}
	if after, err := l.Identity(); err != nil || after != id {
		t.Errorf("RunVFOn changed the model: %s -> %s (%v)", id, after, err)
	}

	// An interrupted run on the model in memory leaves its journal.
	stopped := base
	stopped.Out = filepath.Join(t.TempDir(), "stopped")
	ctx, cancel := context.WithCancel(context.Background())
	stopped.OnProgress = func(phase string, done, total int64) {
		if done >= total/2 {
			cancel()
		}
	}
	if _, err := RunVFOn(ctx, l, stopped); !errors.Is(err, context.Canceled) {
		t.Fatalf("stopped run: %v, want context.Canceled", err)
	}
	stopped.OnProgress = nil
	changed := inMemory(t, ckpt)
	flipFirstWeight(t, changed.Model)
	loaded, err := fault.LoadCheckpoint(ckpt, "", "", gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		run  func(o VFOptions) (*VF, error)
		want string // "" resumes
	}{
		{"changed weight", func(o VFOptions) (*VF, error) { return RunVFOn(context.Background(), changed, o) }, "checkpoint_sha256"},
		{"checkpoint", func(o VFOptions) (*VF, error) { return RunVFOn(context.Background(), loaded, o) }, "checkpoint_sha256"},
		{"no model", func(o VFOptions) (*VF, error) { return RunVFOn(context.Background(), nil, o) }, "no model"},
		{"bad ratio", func(o VFOptions) (*VF, error) { o.Ratio = 2; return RunVFOn(context.Background(), l, o) }, "sampling ratio"},
		{"too many images", func(o VFOptions) (*VF, error) {
			o.Images = l.Set.Len() + 1
			return RunVFOn(context.Background(), l, o)
		}, "test split has only"},
		{"same model", func(o VFOptions) (*VF, error) { return RunVFOn(context.Background(), l, o) }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := stopped
			var resumed int
			o.OnResume = func(c, u int) { resumed = c + u }
			_, err := tc.run(o)
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("error %v, want one mentioning %q", err, tc.want)
				}
				return
			}
			if err != nil || resumed == 0 {
				t.Fatalf("rerun on the same model: %v, %d records taken over", err, resumed)
			}
			gotCSV, gotJSON := vfOutputs(t, o.Out)
			if !bytes.Equal(gotCSV, wantCSV) || !bytes.Equal(gotJSON, wantJSON) {
				t.Errorf("resumed run's results differ from the uninterrupted run's")
			}
			if _, err := os.Stat(filepath.Join(o.Out, JournalFile)); !os.IsNotExist(err) {
				t.Errorf("journal left: %v", err)
			}
		})
	}
}
