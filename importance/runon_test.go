package importance

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/faultline/faultline/datasets"
	"github.com/faultline/faultline/fault"
	"github.com/faultline/faultline/internal/testckpt"
	"github.com/faultline/faultline/internal/torch"
	"github.com/sugarme/gotch"
)

// inMemory loads ckpt as a model in memory (identified by fault.ModelSHA256),
// labelled with the checkpoint's path, with its training split.
func inMemory(t *testing.T, ckpt string) (*fault.Loaded, *datasets.Set) {
	t.Helper()
	l, err := fault.LoadCheckpoint(ckpt, "", "", gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	l.ContentSHA256 = ""
	tr, err := datasets.Load(l.Dataset, "", datasets.Train)
	if err != nil {
		t.Fatal(err)
	}
	return l, tr
}

// leaveGradients runs a forward and backward pass on l's first test images and
// leaves the gradients on the weights, as a training step does.
func leaveGradients(t *testing.T, l *fault.Loaded) {
	t.Helper()
	head, err := l.Set.Head(16)
	if err != nil {
		t.Fatal(err)
	}
	ld, err := datasets.NewLoader(head, datasets.LoaderOptions{BatchSize: 16, Stats: l.Stats})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := ld.Epoch(0).Next()
	err = torch.Do(func() error {
		var s torch.Scope
		defer s.Drop()
		x, y, err := b.Tensors(gotch.CPU)
		if err != nil {
			return err
		}
		s.Keep(x)
		s.Keep(y)
		out, err := s.KeepErr(l.Model.Forward(x, false, nil))
		if err != nil {
			return err
		}
		sum, err := s.KeepErr(out.Sum(gotch.Float, false))
		if err != nil {
			return err
		}
		if err := sum.Backward(); err != nil {
			return err
		}
		w, err := l.Model.Param(l.Model.Sites()[0].Weight())
		if err != nil {
			return err
		}
		g, err := s.KeepErr(w.Grad(false))
		if err != nil {
			return err
		}
		v, err := torch.Float32s(g)
		if err != nil {
			return err
		}
		for _, x := range v {
			if x != 0 {
				return nil
			}
		}
		return errors.New("the backward pass left no gradient")
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestRunOn: importance sampling on a model in memory writes what Run writes
// on its checkpoint and returns the critical faults of critical.jsonl, also
// when a training step left gradients on the weights; it leaves the model as
// it was; its journal resumes on the same model in memory but not on a
// changed one or on the checkpoint (another identity); bad input is refused.
func TestRunOn(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a model; skipped in -short mode")
	}
	ckpt := testckpt.Trained(t, 300)
	base := Options{Threads: 1, Target: Weights, Mode: SearchMode, Budget: 400, Tau: 0.05, Images: 40, Alpha: 0.1,
		ScoreFloor: 1, SensBatches: 2, Seed: 4, block: 100}
	ref := base
	ref.Checkpoint, ref.Device, ref.Out = ckpt, gotch.CPU, filepath.Join(t.TempDir(), "ref")
	if _, err := Run(context.Background(), ref); err != nil {
		t.Fatal(err)
	}
	want := outputs(t, ref.Out)
	critical, err := fault.ReadFaults(filepath.Join(ref.Out, CriticalFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(critical) == 0 {
		t.Fatal("the reference run found no critical fault; the comparison would be empty")
	}
	same := func(t *testing.T, dir string, res *Result) {
		t.Helper()
		got := outputs(t, dir)
		for name, b := range want {
			if !bytes.Equal(got[name], b) {
				t.Errorf("%s differs from the checkpoint run's", name)
			}
		}
		if len(got) != len(want) {
			t.Errorf("%d files, the checkpoint run wrote %d", len(got), len(want))
		}
		if !reflect.DeepEqual(res.Critical, critical) {
			t.Errorf("Result.Critical (%d faults) differs from critical.jsonl (%d)", len(res.Critical), len(critical))
		}
		if len(res.Ranking) == 0 || res.Summary == nil || res.Summary.Checkpoint != ckpt {
			t.Errorf("result: %d ranked units, summary %v", len(res.Ranking), res.Summary)
		}
	}
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, l *fault.Loaded)
	}{
		{"fresh", func(*testing.T, *fault.Loaded) {}},
		{"gradients left by training", leaveGradients},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, tr := inMemory(t, ckpt)
			tc.setup(t, l)
			id, err := l.Identity()
			if err != nil {
				t.Fatal(err)
			}
			o := base
			o.Out = filepath.Join(t.TempDir(), "memory")
			res, err := RunOn(context.Background(), l, tr, o)
			if err != nil {
				t.Fatal(err)
			}
			same(t, o.Out, res)
			if after, err := l.Identity(); err != nil || after != id {
				t.Errorf("RunOn changed the model: %s -> %s (%v)", id, after, err)
			}
		})
	}

	// An interrupted run on the model in memory leaves its journal.
	l, tr := inMemory(t, ckpt)
	stopped := base
	stopped.Out = filepath.Join(t.TempDir(), "stopped")
	ctx, cancel := context.WithCancel(context.Background())
	stopped.OnProgress = func(phase string, done, total int64) {
		if phase == "uniform" && done >= 100 {
			cancel()
		}
	}
	if _, err := RunOn(ctx, l, tr, stopped); !errors.Is(err, context.Canceled) {
		t.Fatalf("stopped run: %v, want context.Canceled", err)
	}
	stopped.OnProgress = nil
	changed, _ := inMemory(t, ckpt)
	err = torch.Do(func() error {
		inj, err := fault.NewInjector(changed.Model)
		if err != nil {
			return err
		}
		_, err = inj.Apply(&fault.Fault{Target: fault.Weight, Layer: "conv1", Param: "weight", Index: []int64{0},
			Kind: fault.BitFlip, Bits: []int{3}, DType: fault.Float32, Duration: fault.Permanent})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := fault.LoadCheckpoint(ckpt, "", "", gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		run  func(o Options) (*Result, error)
		want string // "" resumes
	}{
		{"changed weight", func(o Options) (*Result, error) { return RunOn(context.Background(), changed, tr, o) }, "checkpoint_sha256"},
		{"checkpoint", func(o Options) (*Result, error) { return RunOn(context.Background(), loaded, tr, o) }, "checkpoint_sha256"},
		{"no model", func(o Options) (*Result, error) { return RunOn(context.Background(), nil, tr, o) }, "no model"},
		{"no training split", func(o Options) (*Result, error) { return RunOn(context.Background(), l, nil, o) }, "no training split"},
		{"bad budget", func(o Options) (*Result, error) { o.Budget = 0; return RunOn(context.Background(), l, tr, o) }, "budget 0"},
		{"too many images", func(o Options) (*Result, error) {
			o.Images = l.Set.Len() + 1
			return RunOn(context.Background(), l, tr, o)
		}, "test split has only"},
		{"same model", func(o Options) (*Result, error) { return RunOn(context.Background(), l, tr, o) }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := stopped
			var resumed int64
			o.OnResume = func(n int64) { resumed = n }
			res, err := tc.run(o)
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("error %v, want one mentioning %q", err, tc.want)
				}
				return
			}
			if err != nil || resumed < 400+100 {
				t.Fatalf("rerun on the same model: %v, %d injections replayed", err, resumed)
			}
			same(t, o.Out, res)
			if _, err := os.Stat(filepath.Join(o.Out, JournalFile)); !os.IsNotExist(err) {
				t.Errorf("journal left: %v", err)
			}
		})
	}
}
