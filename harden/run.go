package harden

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/faultline/faultline/configs"
	"github.com/faultline/faultline/datasets"
	"github.com/faultline/faultline/eval"
	"github.com/faultline/faultline/eval/deepvigor"
	"github.com/faultline/faultline/fault"
	"github.com/faultline/faultline/importance"
	"github.com/faultline/faultline/internal/atomicfile"
	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model"
	"github.com/faultline/faultline/train"
	"github.com/sugarme/gotch"
)

// Report kinds and files.
const (
	ReportKind   = "faultline.harden_report"
	ReportSchema = 1
	ReportFile   = "report.json"
	// RecipeKey is the checkpoint metadata section with the hardening recipe.
	RecipeKey = "harden"
)

// Options configure Run.
type Options struct {
	Checkpoint string
	Dataset    string // default: the checkpoint's
	DataDir    string
	Device     gotch.Device
	Threads    int
	Out        string
	Seed       int64

	// Range restriction: clamp every conv and linear layer's output to its
	// range on ProfileImages training images, widened by Margin (a share of
	// the range's width).
	Clamps        bool
	ProfileImages int
	Margin        float64
	// WeightClamps clamps each layer's weights, as forward passes read them, to
	// the range of the final weights: a flipped exponent MSB then yields the
	// layer's largest weight instead of 1e38.
	WeightClamps bool

	// Fault-aware fine-tuning for Epochs epochs at LRScale times the
	// checkpoint's learning rate: each step carries, with probability
	// FaultProb, FaultsPerStep transient weight flips, a PoolShare of them
	// from the critical faults importance sampling finds (PoolBudget
	// injections on PoolImages test images) and the rest fresh.
	FAT           bool
	Epochs        int
	LRScale       float64
	FaultProb     float64
	FaultsPerStep int
	PoolShare     float64
	PoolBudget    int
	PoolImages    int
	// Lambda weighs the faulty pass (loss = clean + Lambda x faulty, on the
	// same batch); MaxGradNorm (0 = off) clips its gradients' global norm.
	// Refresh re-profiles the clamps and searches the critical pool again
	// before every epoch after the first. Permanent is a fault-list JSONL file
	// of weight faults kept on in every step (permanent-fault mode; "" = none).
	Lambda      float64
	MaxGradNorm float64
	Refresh     bool
	Permanent   string

	// Verification, identical before and after: DeepVigor+ at VFRatio on
	// VFImages test images with the tail check on, drawing more channels
	// where a layer's LVF interval is wider than +-VFPrecision (0 = the
	// first draw only; eval.VFOptions.Precision), and BERTrials trials per
	// bit error rate over all weight bits on BERImages test images.
	VFRatio     float64
	VFPrecision float64
	VFImages    int
	BERs        []float64
	BERTrials   int
	BERImages   int

	// Ablation also hardens with clamps only and with fault-aware training
	// only (into Out/ablation/...), measures both the same way, and reports the
	// three side by side.
	Ablation bool

	// OnPhase is called when a phase starts; OnProgress reports its progress.
	OnPhase    func(phase string)
	OnProgress func(phase string, done, total int64)
}

// Defaults returns the default options: the default preset's harden section
// (the README's pipeline).
func Defaults() Options {
	c := configs.Default()
	o := FromConfig(c.Harden)
	o.Seed = c.Runtime.Seed
	return o
}

// FromConfig returns the options a harden config section sets.
func FromConfig(h configs.HardenConfig) Options {
	return Options{Clamps: h.Clamps, ProfileImages: h.ProfileImages, Margin: h.Margin, WeightClamps: h.WeightClamps, FAT: h.FAT, Epochs: h.Epochs,
		LRScale: h.LRScale, FaultProb: h.FaultProb, FaultsPerStep: h.FaultsPerStep, PoolShare: h.PoolShare,
		PoolBudget: h.PoolBudget, PoolImages: h.PoolImages, Lambda: h.Lambda, MaxGradNorm: h.MaxGradNorm, Refresh: h.Refresh,
		Permanent: h.Permanent, VFRatio: h.VFRatio, VFPrecision: h.VFPrecision, VFImages: h.VFImages,
		BERs: slices.Clone(h.BER), BERTrials: h.BERTrials, BERImages: h.BERImages, Ablation: h.Ablation}
}

func (o *Options) check() error {
	switch {
	case o.Checkpoint == "":
		return fmt.Errorf("harden: no checkpoint")
	case o.Out == "":
		return fmt.Errorf("harden: no output directory")
	case !o.Clamps && !o.FAT && !o.WeightClamps:
		return fmt.Errorf("harden: nothing to do: enable clamps, weight clamps, fault-aware training or a mix")
	case o.Margin < 0:
		return fmt.Errorf("harden: margin %g below 0", o.Margin)
	case o.FAT && o.Epochs < 1:
		return fmt.Errorf("harden: epochs %d: want at least 1", o.Epochs)
	case o.FAT && !(o.LRScale > 0):
		return fmt.Errorf("harden: lr scale %g: want > 0", o.LRScale)
	case o.FAT && !(o.FaultProb >= 0 && o.FaultProb <= 1):
		return fmt.Errorf("harden: fault probability %g outside [0, 1]", o.FaultProb)
	case o.FAT && !(o.PoolShare >= 0 && o.PoolShare <= 1):
		return fmt.Errorf("harden: pool share %g outside [0, 1]", o.PoolShare)
	case o.FAT && !(o.Lambda > 0 && !math.IsInf(o.Lambda, 0)):
		return fmt.Errorf("harden: lambda %g: want a finite value above 0", o.Lambda)
	case o.FAT && !(o.MaxGradNorm >= 0 && !math.IsInf(o.MaxGradNorm, 0)):
		return fmt.Errorf("harden: max grad norm %g: want a finite value of at least 0 (0 = off)", o.MaxGradNorm)
	case !o.FAT && o.Permanent != "":
		return fmt.Errorf("harden: permanent fault map %s given without fault-aware training (--fat)", o.Permanent)
	case o.FAT && o.FaultsPerStep < 1:
		return fmt.Errorf("harden: faults per step %d: want at least 1", o.FaultsPerStep)
	case !(o.VFRatio > 0 && o.VFRatio <= 1):
		return fmt.Errorf("harden: vf ratio %g outside (0, 1]", o.VFRatio)
	case !(o.VFPrecision >= 0 && o.VFPrecision < 1):
		return fmt.Errorf("harden: vf precision %g outside [0, 1) (0.005 = +-0.5 pp; 0 = the first draw only)", o.VFPrecision)
	case o.BERTrials < 1:
		return fmt.Errorf("harden: ber trials %d: want at least 1", o.BERTrials)
	}
	for _, b := range o.BERs {
		if !(b > 0 && b <= 1) {
			return fmt.Errorf("harden: bit error rate %g outside (0, 1]", b)
		}
	}
	return nil
}

// Report is report.json.
type Report struct {
	Kind          string `json:"kind"`
	SchemaVersion int    `json:"schema_version"`
	Checkpoint    string `json:"checkpoint"`
	Hardened      string `json:"hardened"`
	Recipe        Recipe `json:"recipe"`
	Before        Side   `json:"before"`
	After         Side   `json:"after"`
	Change        Change `json:"change"`
	// Ablation compares clamps only, fault-aware training only and both (with
	// Options.Ablation).
	Ablation []AblationRow  `json:"ablation,omitempty"`
	Timing   Timing         `json:"timing"`
	Software model.Software `json:"software"`
}

// Recipe is what was done, also stored in the hardened checkpoint's metadata.
type Recipe struct {
	Clamps        model.Clamps `json:"clamps,omitempty"`
	WeightClamps  model.Clamps `json:"weight_clamps,omitempty"`
	Margin        float64      `json:"margin"`
	ProfileImages int          `json:"profile_images"`
	FAT           *FATRecipe   `json:"fat,omitempty"`
	Seed          int64        `json:"seed"`
}

// FATRecipe is the fault-aware fine-tuning that was run, with its counts.
type FATRecipe struct {
	Epochs        int     `json:"epochs"`
	LR            float64 `json:"lr"`
	FaultProb     float64 `json:"fault_prob"`
	FaultsPerStep int     `json:"faults_per_step"`
	PoolShare     float64 `json:"pool_share"`
	PoolSize      int     `json:"pool_size"` // critical weight faults in the pool last searched (refreshed every epoch with Refresh)
	Steps         int64   `json:"steps"`
	Injected      int64   `json:"faults_injected"`
	FromPool      int64   `json:"faults_from_pool"`
	SkippedSteps  int     `json:"skipped_steps"` // non-finite clean losses
	Lambda        float64 `json:"lambda"`
	MaxGradNorm   float64 `json:"max_grad_norm"`
	// Faulty passes run, dropped (non-finite loss or gradients) and clipped.
	FaultySteps   int `json:"faulty_steps"`
	FaultySkipped int `json:"faulty_skipped"`
	FaultyClipped int `json:"faulty_clipped"`
	// Refreshes counts the per-epoch refreshes of the clamps and the pool (none
	// when there are neither clamps nor a pool to refresh).
	Refreshes int `json:"refreshes"`
	// Permanent is the permanent-fault mode's record, when it was on.
	Permanent *PermanentRecipe `json:"permanent,omitempty"`
}

// PermanentRecipe records permanent-fault mode: the fault map and the clean
// test accuracy with it on, before and after fault-aware training.
type PermanentRecipe struct {
	File           string  `json:"file"`
	Faults         int     `json:"faults"`
	AccuracyBefore float64 `json:"accuracy_before"`
	AccuracyAfter  float64 `json:"accuracy_after"`
}

// Side is one set of measurements. Every interval is a 95% one; the MVFs'
// are in VF.MVF (eval.MVF's activations_ci95, weights_ci95 and total_ci95).
type Side struct {
	CleanAccuracy float64 `json:"clean_accuracy"`
	// CleanAccuracyCI is Wilson's interval over the TestImages test images.
	CleanAccuracyCI [2]float64          `json:"clean_accuracy_ci95"`
	TestImages      int                 `json:"test_images"`
	VF              *eval.VF            `json:"vf"`
	BER             map[string]BERStats `json:"ber"`
}

// BERStats sums up the accuracy of one bit error rate's trials, each figure
// with its 95% interval over the trials (the trials are independent draws).
type BERStats struct {
	BER    float64 `json:"ber"`
	Trials int     `json:"trials"`
	Mean   float64 `json:"mean"`
	// MeanCI is the Student-t interval of the mean (the BER curve's
	// accuracy_ci; [0, 1] for one trial).
	MeanCI [2]float64 `json:"mean_ci95"`
	Median float64    `json:"median"`
	// MedianCI and P5CI are distribution-free order-statistic intervals of the
	// quantiles (quantileCI); an end the trials cannot bound is 0 or 1.
	MedianCI     [2]float64 `json:"median_ci95"`
	P5           float64    `json:"p5"`
	P5CI         [2]float64 `json:"p5_ci95"`
	Catastrophic float64    `json:"catastrophic"` // share of trials below 50% accuracy
	// CatastrophicCI is Wilson's interval over the trials.
	CatastrophicCI [2]float64 `json:"catastrophic_ci95"`
}

// Change compares after with before.
type Change struct {
	// Relative reductions of the MVFs: (before - after) / before.
	MVFTotal       *float64 `json:"mvf_total_reduction"`
	MVFActivations *float64 `json:"mvf_activations_reduction"`
	MVFWeights     *float64 `json:"mvf_weights_reduction"`
	// CleanAccuracy is after minus before (a fraction).
	CleanAccuracy float64 `json:"clean_accuracy"`
}

// AblationRow is one hardening variant's after-measurements.
type AblationRow struct {
	Variant    string `json:"variant"` // clamps, fat or both
	Checkpoint string `json:"checkpoint"`
	After      Side   `json:"after"`
	Change     Change `json:"change"`
}

// Timing is wall time per phase, in seconds.
type Timing struct {
	Before float64 `json:"before_seconds"`
	Harden float64 `json:"harden_seconds"`
	After  float64 `json:"after_seconds"`
	Total  float64 `json:"total_seconds"`
}

// Run hardens o.Checkpoint into o.Out and measures both. The steps chain in
// memory: the checkpoint is read once for the before measurements and once more
// for each model to harden, and each hardened model is measured as it is in
// memory once saved (the importance searches of fault-aware training run on the
// model being trained, with no staging checkpoint). Their journals identify the
// models in memory by fault.ModelSHA256.
func Run(ctx context.Context, o Options) (*Report, error) {
	start := time.Now()
	if err := o.check(); err != nil {
		return nil, err
	}
	if err := atomicfile.CheckDir(o.Out); err != nil {
		return nil, fmt.Errorf("harden: %w", err)
	}
	// report.json is written last: a directory holding one holds a finished
	// hardening, and a rerun (after a crash) redoes every step.
	if err := os.Remove(filepath.Join(o.Out, ReportFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("harden: %w", err)
	}
	if _, err := torch.SetThreads(o.Threads); err != nil {
		return nil, err
	}
	rep := &Report{Kind: ReportKind, SchemaVersion: ReportSchema, Checkpoint: o.Checkpoint, Hardened: o.Out,
		Software: model.CurrentSoftware()}
	o.phase("accuracy before")
	before, err := fault.LoadCheckpoint(o.Checkpoint, o.Dataset, o.DataDir, o.Device)
	if err != nil {
		return nil, err
	}
	if rep.Before, err = measure(ctx, o, before, filepath.Join(o.Out, "before")); err != nil {
		return nil, err
	}
	tHarden := time.Now()
	d := &inputs{test: before}
	hardened, recipe, err := harden(ctx, o, d)
	if err != nil {
		return nil, err
	}
	rep.Recipe = recipe
	tAfter := time.Now()
	o.phase("accuracy after")
	if rep.After, err = measure(ctx, o, hardened, filepath.Join(o.Out, "after")); err != nil {
		return nil, err
	}
	rep.Change = change(rep.Before, rep.After)
	if o.Ablation {
		rep.Ablation = append(rep.Ablation, AblationRow{Variant: variant(o), Checkpoint: o.Out, After: rep.After, Change: rep.Change})
		for _, v := range []struct {
			name        string
			clamps, fat bool
		}{{"clamps", true, false}, {"fat", false, true}} {
			if v.clamps == o.Clamps && v.fat == o.FAT {
				continue
			}
			vo := o
			vo.Clamps, vo.WeightClamps, vo.FAT = v.clamps, v.clamps && o.WeightClamps, v.fat
			vo.Out = filepath.Join(o.Out, "ablation", v.name)
			vo.OnPhase = func(p string) { o.phase("ablation " + v.name + ": " + p) }
			if err := os.MkdirAll(vo.Out, 0o755); err != nil {
				return nil, fmt.Errorf("harden: %w", err)
			}
			h, _, err := harden(ctx, vo, d)
			if err != nil {
				return nil, err
			}
			vo.phase("accuracy after")
			after, err := measure(ctx, vo, h, filepath.Join(vo.Out, "after"))
			if err != nil {
				return nil, err
			}
			rep.Ablation = append(rep.Ablation, AblationRow{Variant: v.name, Checkpoint: vo.Out, After: after, Change: change(rep.Before, after)})
		}
	}
	rep.Timing = Timing{Before: tHarden.Sub(start).Seconds(), Harden: tAfter.Sub(tHarden).Seconds(),
		After: time.Since(tAfter).Seconds(), Total: time.Since(start).Seconds()}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(filepath.Join(o.Out, ReportFile), append(b, '\n'), 0o644); err != nil {
		return nil, err
	}
	return rep, nil
}

// inputs is the data a hardening reads, loaded once: the checkpoint's test split
// and normalisation (with the checkpoint as loaded), and, once an importance
// search needs it, the training split the sensitivities are measured on.
type inputs struct {
	test  *fault.Loaded
	train *datasets.Set
}

// trainSplit is the training split of the checkpoint's data set, loaded on
// first use.
func (d *inputs) trainSplit(dataDir string) (*datasets.Set, error) {
	if d.train == nil {
		set, err := datasets.Load(d.test.Dataset, dataDir, datasets.Train)
		if err != nil {
			return nil, err
		}
		d.train = set
	}
	return d.train, nil
}

// inMemory pairs model m, in memory, with the checkpoint's test split and
// normalisation, labelled name; its identity is fault.ModelSHA256.
func (d *inputs) inMemory(m *model.Model, meta model.Metadata, name string) *fault.Loaded {
	t := d.test
	return &fault.Loaded{Model: m, Meta: meta, Dataset: t.Dataset, Set: t.Set, Stats: t.Stats, Checkpoint: name}
}

// variant names what o does: clamps, fat or both.
func variant(o Options) string {
	switch {
	case o.Clamps && o.FAT:
		return "both"
	case o.Clamps:
		return "clamps"
	}
	return "fat"
}

func (o *Options) phase(name string) {
	if o.OnPhase != nil {
		o.OnPhase(name)
	}
}

func (o *Options) progress(phase string) func(done, total int64) {
	return func(done, total int64) {
		if o.OnProgress != nil {
			o.OnProgress(phase, done, total)
		}
	}
}

// measure takes model l's clean accuracy (whole test split), DeepVigor+ VFs
// and BER curve, writing the raw results under dir. The model is left as it
// was.
func measure(ctx context.Context, o Options, l *fault.Loaded, dir string) (Side, error) {
	var s Side
	var err error
	if s.CleanAccuracy, err = train.Evaluate(l.Model, l.Set, l.Stats, 1000, l.Model.Device(), nil); err != nil {
		return s, err
	}
	s.TestImages = l.Set.Len()
	s.CleanAccuracyCI = fault.Wilson(int64(math.Round(s.CleanAccuracy*float64(s.TestImages))), int64(s.TestImages), confidence)
	phase := "vf " + filepath.Base(dir)
	o.phase(phase)
	s.VF, err = eval.RunVFOn(ctx, l, eval.VFOptions{ReplaceJournal: true,
		Threads: o.Threads, Target: "both", Ratio: o.VFRatio, Precision: o.VFPrecision, Images: o.VFImages, Semantics: deepvigor.Exact, TailCheck: "on",
		Seed: o.Seed, Out: filepath.Join(dir, "vf"),
		OnProgress: func(_ string, done, total int64) { o.progress(phase)(done, total) }})
	if err != nil {
		return s, err
	}
	phase = "ber " + filepath.Base(dir)
	o.phase(phase)
	curve, err := fault.RunBERCurveOn(ctx, l, fault.BERRunOptions{Threads: o.Threads, Images: o.BERImages, Out: filepath.Join(dir, "ber"),
		BER:        fault.BEROptions{BERs: o.BERs, Trials: o.BERTrials, Seed: o.Seed, Confidence: confidence},
		OnProgress: func(done, total int) { o.progress(phase)(int64(done), int64(total)) }})
	if err != nil {
		return s, err
	}
	s.BER = berStats(curve)
	return s, nil
}

// berStats sums up a BER curve's trials per rate, with their intervals.
func berStats(c *fault.BERCurve) map[string]BERStats {
	out := map[string]BERStats{}
	for pi, p := range c.Points {
		var acc []float64
		for _, t := range c.Trials {
			if t.Point == pi {
				acc = append(acc, t.Accuracy)
			}
		}
		if len(acc) == 0 {
			continue
		}
		slices.Sort(acc)
		st := BERStats{BER: p.BER, Trials: len(acc), MeanCI: p.AccuracyCI,
			Median: quantile(acc, 0.5), MedianCI: quantileCI(acc, 0.5, confidence, 0, 1),
			P5: quantile(acc, 0.05), P5CI: quantileCI(acc, 0.05, confidence, 0, 1)}
		catastrophic := 0
		for _, a := range acc {
			st.Mean += a / float64(len(acc))
			if a < 0.5 {
				st.Catastrophic += 1 / float64(len(acc))
				catastrophic++
			}
		}
		st.CatastrophicCI = fault.Wilson(int64(catastrophic), int64(len(acc)), confidence)
		out[strconv.FormatFloat(p.BER, 'g', -1, 64)] = st
	}
	return out
}

// quantile is the linear-interpolation quantile q of sorted xs.
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 1 {
		return xs[0]
	}
	h := q * float64(len(xs)-1)
	i := int(math.Floor(h))
	if i+1 >= len(xs) {
		return xs[len(xs)-1]
	}
	return xs[i] + (h-float64(i))*(xs[i+1]-xs[i])
}

func change(b, a Side) Change {
	c := Change{CleanAccuracy: a.CleanAccuracy - b.CleanAccuracy}
	red := func(x, y *float64) *float64 {
		if x == nil || y == nil || *x == 0 {
			return nil
		}
		r := (*x - *y) / *x
		return &r
	}
	if b.VF != nil && a.VF != nil {
		c.MVFTotal = red(b.VF.MVF.Total, a.VF.MVF.Total)
		c.MVFActivations = red(b.VF.MVF.Activations, a.VF.MVF.Activations)
		c.MVFWeights = red(b.VF.MVF.Weights, a.VF.MVF.Weights)
	}
	return c
}

// harden builds the hardened checkpoint in o.Out from a fresh load of
// o.Checkpoint and returns the hardened model, as saved, in memory (labelled
// o.Out) with its recipe.
func harden(ctx context.Context, o Options, d *inputs) (*fault.Loaded, Recipe, error) {
	r := Recipe{Margin: o.Margin, Seed: o.Seed}
	m, meta, err := model.Load(o.Checkpoint, o.Device)
	if err != nil {
		return nil, r, err
	}
	cfg := configs.Default()
	if len(meta.Config) > 0 {
		if err := json.Unmarshal(meta.Config, &cfg); err != nil {
			return nil, r, fmt.Errorf("harden: %s: config: %w", o.Checkpoint, err)
		}
	}
	if o.Dataset != "" {
		cfg.Data.Dataset = o.Dataset
	}
	if o.DataDir != "" {
		cfg.Data.Dir = o.DataDir
	}
	tdata, err := train.LoadData(cfg.Data)
	if err != nil {
		return nil, r, err
	}
	// The model's own input normalisation (an import may record its own, or
	// none), as every other command reads it.
	tdata.Stats = datasets.Stats{Mean: meta.Normalization.Mean, Std: meta.Normalization.Std}
	if o.Clamps {
		o.phase("profile clamps")
		if r.Clamps, err = Profile(m, tdata.Train, tdata.Stats, o.ProfileImages, 500, o.Margin); err != nil {
			return nil, r, err
		}
		r.ProfileImages = min(o.ProfileImages, tdata.Train.Len())
		if o.ProfileImages <= 0 {
			r.ProfileImages = tdata.Train.Len()
		}
		if err := m.SetClamps(r.Clamps); err != nil {
			return nil, r, err
		}
	}
	if o.FAT {
		if r.FAT, err = fineTune(ctx, o, m, meta, cfg, tdata, d); err != nil {
			return nil, r, err
		}
		if o.Clamps {
			r.Clamps = m.Clamps() // refreshed every epoch
		}
	}
	if o.WeightClamps {
		o.phase("weight clamps")
		err := torch.Do(func() error {
			var err error
			if r.WeightClamps, err = m.WeightRanges(); err != nil {
				return err
			}
			return m.SetWeightClamps(r.WeightClamps)
		})
		if err != nil {
			return nil, r, err
		}
	}
	rec, err := json.Marshal(r)
	if err != nil {
		return nil, r, err
	}
	meta.Source = "harden"
	meta.Extra = map[string]json.RawMessage{RecipeKey: rec}
	meta.TestAccuracy, err = train.Evaluate(m, tdata.Test, tdata.Stats, 1000, o.Device, nil)
	if err != nil {
		return nil, r, err
	}
	if err := m.Save(o.Out, meta); err != nil {
		return nil, r, err
	}
	return d.inMemory(m, meta, o.Out), r, nil
}

// finiteOn checks that m gives finite logits on the first test images: fault-
// aware training without range restriction can diverge.
func finiteOn(m *model.Model, data *train.Data) error {
	head, err := data.Test.Head(min(256, data.Test.Len()))
	if err != nil {
		return err
	}
	ld, err := datasets.NewLoader(head, datasets.LoaderOptions{BatchSize: head.Len(), Stats: data.Stats})
	if err != nil {
		return err
	}
	b, _ := ld.Epoch(0).Next()
	return torch.Do(func() error {
		return torch.NoGrad(func() error {
			x, y, err := b.Tensors(m.Device())
			if err != nil {
				return err
			}
			defer x.Drop()
			defer y.Drop()
			out, err := m.Forward(x, false, nil)
			if err != nil {
				return err
			}
			defer out.Drop()
			v, err := torch.Float32s(out)
			if err != nil {
				return err
			}
			for _, l := range v {
				if math.IsNaN(float64(l)) || math.IsInf(float64(l), 0) {
					return fmt.Errorf("harden: fault-aware training diverged: the model's logits are not finite on clean test images (lower --lr-scale, or keep --clamps on)")
				}
			}
			return nil
		})
	})
}

// fineTune runs fault-aware training on m (with its clamps), after searching
// critical weight faults with importance sampling on the clamped model. With
// o.Refresh it re-profiles the clamps and searches the pool again before every
// epoch after the first, so both follow the weights as they move.
func fineTune(ctx context.Context, o Options, m *model.Model, meta model.Metadata, cfg configs.Config, data *train.Data, d *inputs) (*FATRecipe, error) {
	fr := &FATRecipe{Epochs: o.Epochs, LR: cfg.Train.LR * o.LRScale, FaultProb: o.FaultProb, FaultsPerStep: o.FaultsPerStep,
		PoolShare: o.PoolShare, Lambda: o.Lambda, MaxGradNorm: o.MaxGradNorm}
	pool, err := searchPool(ctx, o, d.inMemory(m, meta, poolModelName(o)), d, "importance search", "importance")
	if err != nil {
		return nil, err
	}
	fr.PoolSize = len(pool)
	var inj *fault.Injector
	if err := torch.Do(func() error {
		var err error
		inj, err = fault.NewInjector(m)
		return err
	}); err != nil {
		return nil, err
	}
	f := &fat{inj: inj, rng: rand.New(rand.NewPCG(uint64(o.Seed), 0xfa7)), p: o.FaultProb, k: o.FaultsPerStep,
		poolShare: o.PoolShare, pool: pool, sites: m.Sites()}
	for _, s := range f.sites {
		f.total += model.Numel(s.WeightShape)
	}
	for _, p := range m.Params() {
		if !p.Trainable {
			f.buffers = append(f.buffers, p.Tensor)
		}
	}
	if o.Permanent != "" {
		if f.permanent, err = permanentFaults(o.Permanent); err != nil {
			return nil, err
		}
		fr.Permanent = &PermanentRecipe{File: o.Permanent, Faults: len(f.permanent)}
		if fr.Permanent.AccuracyBefore, err = accuracyWith(m, f, data); err != nil {
			return nil, err
		}
	}
	c := cfg
	c.Train.Epochs, c.Train.LR, c.Train.WarmupEpochs, c.Train.KeepBest = o.Epochs, fr.LR, 0, false
	c.Runtime.Seed, c.Runtime.Threads = o.Seed, o.Threads
	o.phase("fault-aware training")
	total := int64(o.Epochs) * int64((data.Train.Len()+c.Train.BatchSize-1)/max(1, c.Train.BatchSize))
	refresh := func(epoch int) error {
		if epoch == 0 || !o.Refresh || !o.Clamps && o.PoolShare == 0 {
			return nil // nothing to refresh without clamps and a pool
		}
		fr.Refreshes++
		if o.Clamps {
			o.phase(fmt.Sprintf("refresh clamps (epoch %d)", epoch+1))
			if err := m.SetClamps(nil); err != nil {
				return err
			}
			cl, err := Profile(m, data.Train, data.Stats, o.ProfileImages, 500, o.Margin)
			if err != nil {
				return err
			}
			if err := m.SetClamps(cl); err != nil {
				return err
			}
		}
		pool, err := searchPool(ctx, o, d.inMemory(m, meta, poolModelName(o)), d, fmt.Sprintf("importance search (epoch %d)", epoch+1),
			fmt.Sprintf("importance-epoch%d", epoch+1))
		if err != nil {
			return err
		}
		f.pool, fr.PoolSize = pool, len(pool) // both stay empty at pool share 0
		o.phase("fault-aware training")
		return nil
	}
	res, err := train.Run(ctx, train.Options{Config: c, Data: data, Device: o.Device, Model: m, Source: "harden",
		Hooks: train.Hooks{BeforeEpoch: refresh,
			Perturb: &train.Perturbation{Lambda: o.Lambda, MaxNorm: o.MaxGradNorm, Apply: f.apply, Undo: f.undoStep},
			OnStep:  func(s train.Step) { o.progress("fault-aware training")(s.GlobalStep+1, total) }}})
	if err != nil {
		return nil, err
	}
	fr.Steps, fr.Injected, fr.FromPool = f.Steps, f.Injected, f.FromPool
	if err := finiteOn(m, data); err != nil {
		return nil, err
	}
	for _, e := range res.Epochs {
		fr.SkippedSteps += e.SkippedSteps
		fr.FaultySteps += e.PerturbedSteps
		fr.FaultySkipped += e.PerturbSkipped
		fr.FaultyClipped += e.PerturbClipped
	}
	if fr.Permanent != nil {
		if fr.Permanent.AccuracyAfter, err = accuracyWith(m, f, data); err != nil {
			return nil, err
		}
	}
	return fr, nil
}

// poolModelName labels the model being hardened in the importance searches'
// summaries and journals: it is in memory, on its way to o.Out.
func poolModelName(o Options) string {
	return o.Checkpoint + " (hardening in memory)"
}

// searchPool runs the importance search for critical weight faults on model
// l as it is now (in memory) into o.Out/sub and returns them; nothing when
// o.PoolShare is 0.
func searchPool(ctx context.Context, o Options, l *fault.Loaded, d *inputs, phase, sub string) ([]fault.Fault, error) {
	if o.PoolShare == 0 {
		return nil, nil
	}
	o.phase(phase)
	trainSet, err := d.trainSplit(o.DataDir)
	if err != nil {
		return nil, err
	}
	res, err := importance.RunOn(ctx, l, trainSet, importance.Options{ReplaceJournal: true,
		Threads: o.Threads, Target: importance.Weights, Mode: importance.SearchMode,
		Budget: o.PoolBudget, Tau: 0.05, Images: o.PoolImages, Alpha: 0.1, ScoreFloor: 1, Seed: o.Seed, Out: filepath.Join(o.Out, sub),
		OnProgress: func(_ string, done, total int64) { o.progress(phase)(done, total) }})
	if err != nil {
		return nil, err
	}
	var pool []fault.Fault
	for _, f := range res.Critical {
		if f.Target == fault.Weight {
			f.Outcome = nil
			pool = append(pool, f)
		}
	}
	return pool, nil
}

// permanentFaults reads a permanent fault map: weight faults only.
func permanentFaults(path string) ([]fault.Fault, error) {
	all, err := fault.ReadFaults(path)
	if err != nil {
		return nil, err
	}
	if len(all) == 0 {
		return nil, fmt.Errorf("harden: permanent fault map %s holds no faults", path)
	}
	for i := range all {
		if all[i].Target != fault.Weight {
			return nil, fmt.Errorf("harden: permanent fault map %s: fault %d targets %s; permanent-fault mode takes weight faults only", path, i+1, all[i].Target)
		}
		all[i].Outcome = nil
	}
	return all, nil
}

// accuracyWith is m's clean test accuracy with f's permanent faults on.
func accuracyWith(m *model.Model, f *fat, data *train.Data) (float64, error) {
	var acc float64
	err := torch.Do(func() (err error) {
		for i := range f.permanent {
			if err := f.inject(&f.permanent[i]); err != nil {
				_ = f.undo()
				return err
			}
		}
		defer func() {
			if uerr := f.undo(); uerr != nil && err == nil {
				err = uerr
			}
		}()
		acc, err = train.Evaluate(m, data.Test, data.Stats, 1000, m.Device(), nil)
		return err
	})
	return acc, err
}
