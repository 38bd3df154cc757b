package train

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/faultline/faultline/configs"
	"github.com/faultline/faultline/datasets"
	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

func syntheticData(t testing.TB, n int) *Data {
	t.Helper()
	tr := datasets.Synthetic(datasets.SyntheticConfig{N: n, C: 1, H: 28, W: 28, Classes: 10, Seed: 3, Split: datasets.Train})
	te := datasets.Synthetic(datasets.SyntheticConfig{N: 500, C: 1, H: 28, W: 28, Classes: 10, Seed: 3, Split: datasets.Test})
	return &Data{Name: "synthetic", Train: tr, Test: te, Stats: datasets.ComputeStats(tr)}
}

// paramValues reads the model's parameter of that name.
func paramValues(t *testing.T, m *model.Model, name string) []float32 {
	t.Helper()
	var w []float32
	if err := torch.Do(func() error {
		p, err := m.Param(name)
		if err == nil {
			w, err = torch.Float32s(p)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return w
}

func tinyConfig(arch string) configs.Config {
	c, err := configs.Preset(arch + "-fashion")
	if err != nil {
		panic(err)
	}
	c.Train.Epochs = 2
	c.Train.BatchSize = 64
	c.Train.EvalBatchSize = 250
	c.Runtime.Threads = 1
	c.Runtime.Seed = 5
	return c
}

func TestTrainLearnsAndSaves(t *testing.T) {
	for _, arch := range []string{"lenet5", "mlp", "vgg11", "resnet20"} {
		t.Run(arch, func(t *testing.T) {
			cfg := tinyConfig(arch)
			if arch == "resnet20" { // the preset's SGD warm-up is too slow for 2 tiny epochs
				cfg.Model.Width, cfg.Train.Optimizer, cfg.Train.LR, cfg.Train.WarmupEpochs = 0.5, "adam", 2e-3, 0
				cfg.Train.Epochs = 4
				cfg.Train.Momentum, cfg.Train.Nesterov = 0, false
			}
			out := t.TempDir()
			var steps, epochs int
			res, err := Run(context.Background(), Options{Config: cfg, Data: syntheticData(t, 1200), Device: gotch.CPU, Out: out,
				Hooks: Hooks{OnStep: func(Step) { steps++ }, OnEpoch: func(Epoch) { epochs++ }}})
			if err != nil {
				t.Fatal(err)
			}
			if steps != cfg.Train.Epochs*(1200/64) || epochs != cfg.Train.Epochs {
				t.Errorf("hooks saw %d steps and %d epochs", steps, epochs)
			}
			minAcc := 0.8 // chance is 0.1
			if arch == "resnet20" {
				minAcc = 0.6 // learns more slowly on 1,200 images; 4 epochs measured 0.76
			}
			if res.TestAccuracy < minAcc {
				t.Errorf("%s: test accuracy %.3f on the learnable synthetic set, want >= %.1f (epochs %+v)", arch, res.TestAccuracy, minAcc, res.Epochs)
			}
			_, meta, err := model.Load(out, gotch.CPU)
			if err != nil {
				t.Fatal(err)
			}
			if res.Meta.Arch != arch || meta.TestAccuracy != res.TestAccuracy || meta.Epochs != cfg.Train.Epochs || meta.Steps != int64(steps) || meta.Seed != 5 || meta.Software.Threads != 1 {
				t.Errorf("metadata %+v", meta)
			}
		})
	}
}

// Same config and seed: bit-identical weights and numbers.
func TestTrainDeterministic(t *testing.T) {
	run := func() (*Result, []float32) {
		res, err := Run(context.Background(), Options{Config: tinyConfig("lenet5"), Data: syntheticData(t, 600), Device: gotch.CPU})
		if err != nil {
			t.Fatal(err)
		}
		return res, paramValues(t, res.Model, "conv1.weight")
	}
	a, wa := run()
	b, wb := run()
	if !reflect.DeepEqual(wa, wb) {
		t.Error("same seed, different weights")
	}
	for i := range a.Epochs {
		a.Epochs[i].Seconds, b.Epochs[i].Seconds = 0, 0
	}
	if !reflect.DeepEqual(a.Epochs, b.Epochs) {
		t.Errorf("same seed, different epochs: %+v vs %+v", a.Epochs, b.Epochs)
	}
}

func TestTrainStopsOnCancelAndBadConfig(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Run(ctx, Options{Config: tinyConfig("mlp"), Data: syntheticData(t, 200), Device: gotch.CPU}); err == nil {
		t.Error("cancelled run returned no error")
	}
	cfg := tinyConfig("mlp")
	cfg.Train.LR = -1
	if _, err := Run(context.Background(), Options{Config: cfg, Data: syntheticData(t, 200), Device: gotch.CPU}); err == nil {
		t.Error("negative lr accepted")
	}
	out := filepath.Join(t.TempDir(), "never")
	if _, err := os.Stat(out); err == nil {
		t.Error("output written for a failed run")
	}
}

func TestLRSchedules(t *testing.T) {
	base := configs.TrainConfig{Epochs: 10, LR: 0.1, Gamma: 0.5, StepSize: 3}
	cases := []struct {
		schedule string
		warmup   int
		step     int
		want     float64
	}{
		{configs.ScheduleNone, 0, 57, 0.1},
		{configs.ScheduleStep, 0, 29, 0.1},
		{configs.ScheduleStep, 0, 30, 0.05},
		{configs.ScheduleStep, 0, 99, 0.1 * 0.125},
		{configs.ScheduleCosine, 0, 0, 0.1},
		{configs.ScheduleCosine, 0, 50, 0.05},
		{configs.ScheduleCosine, 1, 0, 0.01},
		{configs.ScheduleCosine, 1, 10, 0.1},
		{configs.ScheduleOneCycle, 0, 0, 0.004},
		{configs.ScheduleOneCycle, 0, 30, 0.1},
	}
	for _, tc := range cases {
		c := base
		c.Schedule, c.WarmupEpochs = tc.schedule, tc.warmup
		if got := LR(c, tc.step, 10); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("%s warmup %d step %d: lr %v, want %v", tc.schedule, tc.warmup, tc.step, got, tc.want)
		}
	}
}

// A perturbed step's update is that of clean + Lambda x perturbed loss: with a
// perturbation that changes nothing, SGD moves the weights (1 + Lambda) times as
// far as a clean step; a non-finite perturbed loss is dropped (and the model
// restored); an oversized perturbed gradient is clipped to MaxNorm.
func TestPerturbationAddsLambdaTimesPerturbedGradient(t *testing.T) {
	cfg := tinyConfig("mlp")
	cfg.Model.Hidden = []int{16}
	cfg.Train.Epochs, cfg.Train.BatchSize, cfg.Train.Optimizer, cfg.Train.LR = 1, 128, configs.OptimizerSGD, 0.1
	cfg.Train.Momentum, cfg.Train.Nesterov, cfg.Train.WeightDecay, cfg.Train.Schedule, cfg.Train.WarmupEpochs = 0, false, 0, configs.ScheduleNone, 0
	cfg.Train.LabelSmoothing, cfg.Train.KeepBest = 0, false
	data := syntheticData(t, 128) // one step
	weights := func(m *model.Model) []float32 {
		var all []float32
		if err := torch.Do(func() error {
			for _, p := range m.Params() {
				v, err := torch.Float32s(p.Tensor)
				if err != nil {
					return err
				}
				all = append(all, v...)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return all
	}
	torch.ManualSeed(cfg.Runtime.Seed)
	initial, err := model.New(SpecFor(cfg.Model, data.Train), gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	w0 := weights(initial)
	var undone int
	// run trains one step from the initial weights with the perturbation mk
	// builds for the run's model and returns the weights' change.
	run := func(mk func(m *model.Model) *Perturbation) ([]float32, Epoch) {
		t.Helper()
		m, err := model.New(SpecFor(cfg.Model, data.Train), gotch.CPU)
		if err != nil {
			t.Fatal(err)
		}
		if err := torch.Do(func() error {
			return torch.NoGrad(func() error {
				for _, q := range m.Params() {
					src, err := initial.Param(q.Name)
					if err != nil {
						return err
					}
					if err := q.Tensor.CopyFrom(src); err != nil {
						return err
					}
				}
				return nil
			})
		}); err != nil {
			t.Fatal(err)
		}
		var p *Perturbation
		if mk != nil {
			p = mk(m)
		}
		undone = 0
		res, err := Run(context.Background(), Options{Config: cfg, Data: data, Device: gotch.CPU, Model: m, Hooks: Hooks{Perturb: p}})
		if err != nil {
			t.Fatal(err)
		}
		w := weights(res.Model)
		d := make([]float32, len(w))
		for i := range w {
			d[i] = w[i] - w0[i]
		}
		return d, res.Epochs[0]
	}
	norm := func(d []float32) float64 {
		var s float64
		for _, x := range d {
			s += float64(x) * float64(x)
		}
		return math.Sqrt(s)
	}
	clean, _ := run(nil)
	gnorm := norm(clean) / cfg.Train.LR // the clean gradient's global norm
	if gnorm == 0 {
		t.Fatal("the clean step did not move the weights")
	}
	identity := func(lambda, maxNorm float64) func(*model.Model) *Perturbation {
		return func(*model.Model) *Perturbation {
			return &Perturbation{Lambda: lambda, MaxNorm: maxNorm, Apply: func(int64) (bool, error) { return true, nil },
				Undo: func(int64) error { undone++; return nil }}
		}
	}
	// poison sets fc1.weight to +Inf for the perturbed pass (a non-finite loss)
	// and restores it.
	poison := func(m *model.Model) *Perturbation {
		var saved *ts.Tensor
		return &Perturbation{Lambda: 1,
			Apply: func(int64) (bool, error) {
				return true, torch.NoGrad(func() error {
					p, err := m.Param("fc1.weight")
					if err != nil {
						return err
					}
					if saved, err = p.DetachCopy(false); err != nil {
						return err
					}
					return p.Fill_(ts.FloatScalar(math.Inf(1)))
				})
			},
			Undo: func(int64) error {
				undone++
				return torch.NoGrad(func() error {
					p, err := m.Param("fc1.weight")
					if err != nil {
						return err
					}
					defer saved.Drop()
					return p.CopyFrom(saved)
				})
			}}
	}
	for _, tc := range []struct {
		name    string
		mk      func(*model.Model) *Perturbation
		scale   float64 // expected update / clean update
		skipped int
		clipped int
	}{
		{"lambda 1", identity(1, 0), 2, 0, 0},
		{"lambda 0.25", identity(0.25, 0), 1.25, 0, 0},
		{"clipped", identity(1, 0.5*gnorm), 1.5, 0, 1},
		{"norm below max", identity(1, 2*gnorm), 2, 0, 0},
		{"non-finite", poison, 1, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, ep := run(tc.mk)
			if ep.PerturbedSteps != 1 || ep.PerturbSkipped != tc.skipped || ep.PerturbClipped != tc.clipped || undone != 1 {
				t.Fatalf("epoch %+v, undone %d", ep, undone)
			}
			for i := range d {
				want := tc.scale * float64(clean[i])
				if math.Abs(float64(d[i])-want) > 1e-4*math.Abs(want)+1e-7 {
					t.Fatalf("weight %d moved %g, want %g x %g", i, d[i], tc.scale, clean[i])
				}
			}
		})
	}
}

// A run interrupted after an epoch and resumed ends with the weights and
// epochs of an uninterrupted run (bit for bit with plain SGD, whose update
// keeps no state), and leaves no resume state; state from another
// configuration is refused naming the key.
func TestTrainResume(t *testing.T) {
	cfg := tinyConfig("lenet5")
	cfg.Train.Epochs, cfg.Train.Optimizer, cfg.Train.Momentum, cfg.Train.Nesterov = 3, "sgd", 0, false
	cfg.Train.LR, cfg.Train.KeepBest = 0.05, true
	data := syntheticData(t, 384)
	weights := func(res *Result) []float32 { return paramValues(t, res.Model, "fc3.weight") }
	whole, err := Run(context.Background(), Options{Config: cfg, Data: data, Device: gotch.CPU, Out: filepath.Join(t.TempDir(), "whole")})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "cut")
	for _, stopAfter := range []int{1, 2} {
		ctx, cancel := context.WithCancel(context.Background())
		_, err := Run(ctx, Options{Config: cfg, Data: data, Device: gotch.CPU, Out: out, Resume: true,
			Hooks: Hooks{OnEpoch: func(e Epoch) {
				if e.Epoch == stopAfter {
					cancel()
				}
			}}})
		cancel()
		if err == nil {
			t.Fatalf("run stopped after epoch %d returned no error", stopAfter)
		}
		if _, err := os.Stat(filepath.Join(ResumeDir(out), "state.json")); err != nil {
			t.Fatalf("no resume state after epoch %d: %v", stopAfter, err)
		}
		if _, err := os.Stat(filepath.Join(out, "model.json")); err == nil {
			t.Fatal("an interrupted run wrote the checkpoint")
		}
	}
	bad := cfg
	bad.Train.LR = 0.01
	if _, err := Run(context.Background(), Options{Config: bad, Data: data, Device: gotch.CPU, Out: out, Resume: true}); !errors.Is(err, ErrResumeMismatch) || !strings.Contains(err.Error(), "train.lr=0.05") {
		t.Errorf("resume with another lr: %v, want ErrResumeMismatch naming train.lr", err)
	}
	var ran []int
	resumed, err := Run(context.Background(), Options{Config: cfg, Data: data, Device: gotch.CPU, Out: out, Resume: true,
		Hooks: Hooks{OnEpoch: func(e Epoch) { ran = append(ran, e.Epoch) }}})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ran, []int{3}) {
		t.Errorf("resumed run trained epochs %v, want [3]", ran)
	}
	if !reflect.DeepEqual(weights(whole), weights(resumed)) {
		t.Error("resumed run's weights differ from the uninterrupted run's")
	}
	for i := range whole.Epochs {
		whole.Epochs[i].Seconds, resumed.Epochs[i].Seconds = 0, 0
	}
	if !reflect.DeepEqual(whole.Epochs, resumed.Epochs) || whole.BestEpoch != resumed.BestEpoch || whole.TestAccuracy != resumed.TestAccuracy {
		t.Errorf("resumed epochs %+v (best %d), uninterrupted %+v (best %d)", resumed.Epochs, resumed.BestEpoch, whole.Epochs, whole.BestEpoch)
	}
	if _, err := os.Stat(ResumeDir(out)); !os.IsNotExist(err) {
		t.Errorf("resume state left after the checkpoint was saved: %v", err)
	}
	_, meta, err := model.Load(out, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	if meta.Epochs != 3 || meta.Steps != whole.Meta.Steps {
		t.Errorf("checkpoint says %d epochs, %d steps; want 3, %d", meta.Epochs, meta.Steps, whole.Meta.Steps)
	}
}
