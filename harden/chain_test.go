package harden

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/faultline/faultline/configs"
	"github.com/faultline/faultline/eval"
	"github.com/faultline/faultline/eval/deepvigor"
	"github.com/faultline/faultline/fault"
	"github.com/faultline/faultline/importance"
	"github.com/faultline/faultline/internal/testckpt"
	"github.com/faultline/faultline/model"
	"github.com/faultline/faultline/train"
	"github.com/sugarme/gotch"
)

// sameFile reads name in dirs a and b, JSON with the fields drop (at the top
// level) cut out, and reports whether they are equal.
func sameFile(t *testing.T, a, b, name string, drop ...string) bool {
	t.Helper()
	read := func(dir string) []byte {
		raw, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if len(drop) == 0 {
			return raw
		}
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		for _, k := range drop {
			delete(m, k)
		}
		out, _ := json.Marshal(m)
		return out
	}
	return bytes.Equal(read(a), read(b))
}

// TestHardenChainsInMemory: harden writes no staging checkpoint, and the
// steps it chains in memory give what they give on checkpoints: the first
// pool search equals importance on a saved copy of the clamped model, and the
// after measurements equal eval vf and ber on the saved hardened checkpoint.
// Two epochs with refresh run the second search on the model fresh from a
// training step.
func TestHardenChainsInMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a model; skipped in -short mode")
	}
	ckpt := testckpt.Trained(t, 500)
	dir := t.TempDir()
	o := small(ckpt, filepath.Join(dir, "hard"))
	o.Epochs, o.Refresh = 2, true
	if _, err := Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"importance", "importance-epoch2"} {
		es, err := os.ReadDir(filepath.Join(o.Out, sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			if e.IsDir() {
				t.Errorf("%s holds a directory %s (a staging checkpoint?)", sub, e.Name())
			}
		}
	}

	// The first search, the old way: the clamped model saved, then read.
	m, meta, err := model.Load(ckpt, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	cfg := configs.Default()
	if err := json.Unmarshal(meta.Config, &cfg); err != nil {
		t.Fatal(err)
	}
	data, err := train.LoadData(cfg.Data)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Profile(m, data.Train, data.Stats, o.ProfileImages, 500, o.Margin)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SetClamps(c); err != nil {
		t.Fatal(err)
	}
	stage := filepath.Join(dir, "stage")
	if err := m.Save(stage, meta); err != nil {
		t.Fatal(err)
	}
	is := filepath.Join(dir, "importance")
	if _, err := importance.Run(context.Background(), importance.Options{Checkpoint: stage, Device: gotch.CPU, Threads: o.Threads,
		Target: importance.Weights, Mode: importance.SearchMode, Budget: o.PoolBudget, Tau: 0.05, Images: o.PoolImages, Alpha: 0.1,
		ScoreFloor: 1, Seed: o.Seed, Out: is}); err != nil {
		t.Fatal(err)
	}
	vf := filepath.Join(dir, "vf")
	if _, err := eval.RunVF(context.Background(), eval.VFOptions{Checkpoint: o.Out, Device: gotch.CPU, Threads: o.Threads,
		Target: "both", Ratio: o.VFRatio, Precision: o.VFPrecision, Images: o.VFImages, Semantics: deepvigor.Exact, TailCheck: "on",
		Seed: o.Seed, Out: vf}); err != nil {
		t.Fatal(err)
	}
	ber := filepath.Join(dir, "ber")
	if _, err := fault.RunBERCurve(context.Background(), fault.BERRunOptions{Checkpoint: o.Out, Device: gotch.CPU, Threads: o.Threads,
		Images: o.BERImages, Out: ber, BER: fault.BEROptions{BERs: o.BERs, Trials: o.BERTrials, Seed: o.Seed, Confidence: confidence}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		got, want string // directories
		file      string
		drop      []string
	}{
		{"critical faults", filepath.Join(o.Out, "importance"), is, importance.CriticalFile, nil},
		{"draws", filepath.Join(o.Out, "importance"), is, importance.DrawsFile, nil},
		{"ranking", filepath.Join(o.Out, "importance"), is, importance.RankingCSV, nil},
		{"importance summary", filepath.Join(o.Out, "importance"), is, importance.SummaryFile, []string{"timing", "checkpoint"}},
		{"vf.json", filepath.Join(o.Out, "after", "vf"), vf, eval.VFFile, []string{"timing"}},
		{"vf.csv", filepath.Join(o.Out, "after", "vf"), vf, eval.VFCSVFile, nil},
		{"ber.json", filepath.Join(o.Out, "after", "ber"), ber, fault.BERFile, []string{"timing"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !sameFile(t, tc.got, tc.want, tc.file, tc.drop...) {
				t.Errorf("%s of the chained run differs from the one through checkpoints", filepath.Join(tc.got, tc.file))
			}
		})
	}
}
