package harden

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/faultline/faultline/eval"
	"github.com/faultline/faultline/fault"
	"github.com/faultline/faultline/internal/testckpt"
	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

func small(ckpt, out string) Options {
	o := Defaults()
	o.Checkpoint, o.Out, o.Device, o.Threads = ckpt, out, gotch.CPU, 1
	o.ProfileImages, o.Epochs, o.PoolBudget, o.PoolImages = 300, 1, 120, 50
	o.VFRatio, o.VFImages, o.BERs, o.BERTrials, o.BERImages = 0.2, 20, []float64{1e-3}, 3, 50
	return o
}

func TestHardenEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a model; skipped in -short mode")
	}
	ckpt := testckpt.Trained(t, 500)
	out := filepath.Join(t.TempDir(), "hard")
	var phases []string
	o := small(ckpt, out)
	o.Ablation = true
	o.OnPhase = func(p string) {
		if !strings.HasPrefix(p, "ablation") {
			phases = append(phases, p)
		}
	}
	rep, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	want := "accuracy before,vf before,ber before,profile clamps,importance search,fault-aware training,weight clamps,accuracy after,vf after,ber after"
	if got := strings.Join(phases, ","); got != want {
		t.Errorf("phases %s, want %s", got, want)
	}
	// report.json holds the contract's fields.
	b, err := os.ReadFile(filepath.Join(out, ReportFile))
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	if raw["kind"] != ReportKind || raw["schema_version"] != float64(ReportSchema) {
		t.Errorf("kind %v, schema %v", raw["kind"], raw["schema_version"])
	}
	for _, side := range []string{"before", "after"} {
		s, ok := raw[side].(map[string]any)
		if !ok {
			t.Fatalf("report lacks %s", side)
		}
		for _, k := range []string{"clean_accuracy", "clean_accuracy_ci95", "test_images", "vf", "ber"} {
			if _, ok := s[k]; !ok {
				t.Errorf("%s lacks %s", side, k)
			}
		}
		vf := s["vf"].(map[string]any)
		if vf["kind"] != "faultline.vf" || vf["tail_check"] != true || vf["lvf_precision"] != o.VFPrecision {
			t.Errorf("%s vf: kind %v, tail check %v, lvf precision %v (want %g)", side, vf["kind"], vf["tail_check"], vf["lvf_precision"], o.VFPrecision)
		}
		ber := s["ber"].(map[string]any)["0.001"].(map[string]any)
		for _, k := range []string{"mean", "median", "p5", "catastrophic", "mean_ci95", "median_ci95", "p5_ci95", "catastrophic_ci95"} {
			if _, ok := ber[k]; !ok {
				t.Errorf("%s ber lacks %s", side, k)
			}
		}
		// Every MVF has its interval, around it.
		mvf := vf["mvf"].(map[string]any)
		for _, k := range []string{"activations", "weights", "total"} {
			v, _ := mvf[k].(float64)
			ci, _ := mvf[k+"_ci95"].([]any)
			if len(ci) != 2 || ci[0].(float64) > v || ci[1].(float64) < v {
				t.Errorf("%s mvf %s %v: interval %v", side, k, v, mvf[k+"_ci95"])
			}
		}
	}
	// The hardened checkpoint loads with its clamps and recipe.
	m, meta, err := model.Load(out, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Clamps()) != len(m.Sites()) || meta.Source != "harden" {
		t.Errorf("hardened checkpoint: %d clamps for %d sites, source %q", len(m.Clamps()), len(m.Sites()), meta.Source)
	}
	if _, ok := meta.Extra[RecipeKey]; !ok {
		t.Error("hardened checkpoint lacks the recipe")
	}
	f := rep.Recipe.FAT
	if f == nil || f.Steps == 0 || f.Injected == 0 || f.Injected > f.Steps*int64(o.FaultsPerStep) {
		t.Errorf("fault-aware training counts %+v", f)
	}
	if rep.Before.VF.MVF.Total == nil || rep.After.VF.MVF.Total == nil || rep.Change.MVFTotal == nil {
		t.Fatal("no MVF totals")
	}
	for _, s := range []Side{rep.Before, rep.After} {
		if ci := s.CleanAccuracyCI; s.TestImages < 1 || !(ci[0] <= s.CleanAccuracy && s.CleanAccuracy <= ci[1] && ci[0] < ci[1]) {
			t.Errorf("clean accuracy %v on %d images: interval %v", s.CleanAccuracy, s.TestImages, ci)
		}
	}
	t.Logf("clean %.3f -> %.3f, MVF total %.4f -> %.4f, BER 1e-3 mean %.3f -> %.3f; FAT %+v",
		rep.Before.CleanAccuracy, rep.After.CleanAccuracy, *rep.Before.VF.MVF.Total, *rep.After.VF.MVF.Total,
		rep.Before.BER["0.001"].Mean, rep.After.BER["0.001"].Mean, *f)
	if len(rep.Ablation) != 3 || rep.Ablation[0].Variant != "both" || rep.Ablation[1].Variant != "clamps" || rep.Ablation[2].Variant != "fat" {
		t.Fatalf("ablation rows %+v", rep.Ablation)
	}
	for _, row := range rep.Ablation[1:] {
		m, _, err := model.Load(row.Checkpoint, gotch.CPU)
		if err != nil {
			t.Fatal(err)
		}
		if (len(m.Clamps()) > 0) != (row.Variant == "clamps") || row.After.VF == nil {
			t.Errorf("ablation %s: %d clamps", row.Variant, len(m.Clamps()))
		}
	}
	// Clamps bound every exponent-MSB flip's damage: the hardened model is less
	// vulnerable by the very measure the report uses.
	if *rep.After.VF.MVF.Total >= *rep.Before.VF.MVF.Total {
		t.Errorf("MVF total did not fall: %.4f -> %.4f", *rep.Before.VF.MVF.Total, *rep.After.VF.MVF.Total)
	}
}

// The default verification draws as eval vf does by default, so a harden
// report and a plain eval vf of the same checkpoint agree.
func TestDefaultsVerifyAsEvalVF(t *testing.T) {
	if got := Defaults().VFPrecision; got != eval.DefaultPrecision {
		t.Errorf("default vf precision %g, eval vf's default %g", got, eval.DefaultPrecision)
	}
}

func TestHardenRejectsBadOptions(t *testing.T) {
	for _, c := range []struct {
		edit func(*Options)
		want string
	}{
		{func(o *Options) { o.Clamps, o.FAT, o.WeightClamps = false, false, false }, "nothing to do"},
		{func(o *Options) { o.FaultProb = 2 }, "fault probability 2"},
		{func(o *Options) { o.Epochs = 0 }, "epochs 0"},
		{func(o *Options) { o.BERs = []float64{0} }, "bit error rate 0"},
		{func(o *Options) { o.VFRatio = 0 }, "vf ratio 0"},
		{func(o *Options) { o.VFPrecision = 1 }, "vf precision 1"},
		{func(o *Options) { o.VFPrecision = -0.1 }, "vf precision -0.1"},
		{func(o *Options) { o.Checkpoint = "/nonexistent/ckpt" }, "/nonexistent/ckpt"},
	} {
		o := small("x", t.TempDir())
		c.edit(&o)
		if _, err := Run(context.Background(), o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("error %v, want %q", err, c.want)
		}
	}
}

// A faulty training step leaves no trace once undone: the flipped weights are
// restored and the BatchNorm running statistics its corrupted activations
// updated are put back (the optimiser's update aside, which the train loop
// applies between the two).
func TestFATUndoRestoresWeightsAndBatchNormStatistics(t *testing.T) {
	var m *model.Model
	err := torch.Do(func() error {
		torch.ManualSeed(3)
		var err error
		m, err = model.New(model.Spec{Arch: "vgg11", InChannels: 1, Height: 28, Width: 28, Classes: 10, WidthMult: 1.0 / 16, BatchNorm: true}, gotch.CPU)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	snapshot := func() map[string][]float32 {
		out := map[string][]float32{}
		if err := torch.Do(func() error {
			for _, p := range m.Params() {
				v, err := torch.Float32s(p.Tensor)
				if err != nil {
					return err
				}
				out[p.Name] = v
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	before := snapshot()
	err = torch.Do(func() error {
		inj, err := fault.NewInjector(m)
		if err != nil {
			return err
		}
		f := &fat{inj: inj, rng: rand.New(rand.NewPCG(1, 2)), p: 1, k: 5, sites: m.Sites()}
		for _, s := range f.sites {
			f.total += model.Numel(s.WeightShape)
		}
		for _, p := range m.Params() {
			if !p.Trainable {
				f.buffers = append(f.buffers, p.Tensor)
			}
		}
		if on, err := f.apply(0); err != nil || !on {
			return fmt.Errorf("apply: %v, %v", on, err)
		}
		x, err := torch.FromFloat32(make([]float32, 8*28*28), []int64{8, 1, 28, 28}, gotch.CPU)
		if err != nil {
			return err
		}
		defer x.Drop()
		if err := x.Fill_(ts.FloatScalar(0.7)); err != nil {
			return err
		}
		err = torch.NoGrad(func() error {
			y, err := m.Forward(x, true, nil) // train mode: updates the running statistics
			if err != nil {
				return err
			}
			return y.Drop()
		})
		if err != nil {
			return err
		}
		if f.Injected != 5 {
			return fmt.Errorf("injected %d faults, want 5", f.Injected)
		}
		return f.undoStep(0)
	})
	if err != nil {
		t.Fatal(err)
	}
	after := snapshot()
	for name, v := range before {
		for i := range v {
			if math.Float32bits(v[i]) != math.Float32bits(after[name][i]) {
				t.Fatalf("%s[%d] = %v after undo, was %v", name, i, after[name][i], v[i])
			}
		}
	}
}

// Two epochs with refresh on re-profile the clamps and search the pool again
// before the second; a permanent fault map is kept on in every step, and
// training with it on raises the accuracy the model keeps with those faults.
func TestHardenRefreshAndPermanentFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a model; skipped in -short mode")
	}
	ckpt := testckpt.Trained(t, 500)
	dir := t.TempDir()
	// A known defect: six fc3 weights into class 0 stuck at 0.6, a strong bias
	// towards class 0 that training with the map on can learn to offset.
	var lines []byte
	v := fault.Value(0.6)
	for i := range 6 {
		f := fault.Fault{Target: fault.Weight, Layer: "fc3", Param: "weight", Index: []int64{int64(7 * i)}, Kind: fault.RandomValue,
			Value: &v, DType: fault.Float32, Duration: fault.Permanent}
		b, err := json.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(append(lines, b...), '\n')
	}
	perm := filepath.Join(dir, "perm.jsonl")
	if err := os.WriteFile(perm, lines, 0o644); err != nil {
		t.Fatal(err)
	}
	o := small(ckpt, filepath.Join(dir, "hard"))
	o.Epochs, o.Refresh, o.Permanent, o.WeightClamps, o.FaultProb, o.LRScale = 2, true, perm, false, 0, 1
	var phases []string
	o.OnPhase = func(p string) { phases = append(phases, p) }
	rep, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(phases, ",")
	for _, p := range []string{"profile clamps,importance search,fault-aware training,refresh clamps (epoch 2),importance search (epoch 2),fault-aware training,accuracy after"} {
		if !strings.Contains(got, p) {
			t.Errorf("phases %s lack %s", got, p)
		}
	}
	f := rep.Recipe.FAT
	if f.Refreshes != 1 || f.FaultySteps != int(f.Steps) || f.Injected != 0 || f.Lambda != o.Lambda {
		t.Errorf("every step carries the permanent map (and no transient fault at fault-prob 0), one refresh: %+v", *f)
	}
	if _, err := os.Stat(filepath.Join(o.Out, "importance-epoch2", "summary.json")); err != nil {
		t.Errorf("the epoch-2 pool search left no summary: %v", err)
	}
	p := f.Permanent
	if p == nil || p.Faults != 6 || p.File != perm {
		t.Fatalf("permanent record %+v", p)
	}
	t.Logf("accuracy with the permanent faults: %.3f before, %.3f after; clean after %.3f", p.AccuracyBefore, p.AccuracyAfter, rep.After.CleanAccuracy)
	if !(p.AccuracyBefore < rep.Before.CleanAccuracy-0.05) {
		t.Errorf("the permanent map costs too little to test with: %.3f with it, %.3f clean", p.AccuracyBefore, rep.Before.CleanAccuracy)
	}
	if !(p.AccuracyAfter > p.AccuracyBefore) {
		t.Errorf("training with the permanent faults on did not raise the accuracy with them: %.3f -> %.3f", p.AccuracyBefore, p.AccuracyAfter)
	}
	// A map with an activation fault is refused, naming the file.
	bad := filepath.Join(dir, "bad.jsonl")
	act, _ := json.Marshal(fault.Fault{Target: fault.Activation, Layer: "fc1", Point: fault.Output, Index: []int64{0, 0}, Kind: fault.BitFlip, Bits: []int{30}, DType: fault.Float32})
	if err := os.WriteFile(bad, append(act, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	o = small(ckpt, filepath.Join(dir, "bad"))
	o.Permanent = bad
	if _, err := Run(context.Background(), o); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("activation fault in the permanent map: %v", err)
	}
}
