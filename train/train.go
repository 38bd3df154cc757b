package train

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"time"

	"github.com/faultline/faultline/configs"
	"github.com/faultline/faultline/datasets"
	"github.com/faultline/faultline/internal/atomicfile"
	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// Options configure Run.
type Options struct {
	Config configs.Config
	// Data is the training and test data; nil loads it as Config.Data says.
	Data *Data
	// Device to train on.
	Device gotch.Device
	// Out is the checkpoint directory ("" = do not save).
	Out string
	// Model, when set, is trained further (fine-tuning) instead of a fresh one.
	Model *model.Model
	// Source is recorded in the checkpoint metadata ("train" when empty).
	Source string
	// Base is the metadata of the checkpoint Model was loaded from, when
	// fine-tuning: its ONNX source and class names carry over to the new
	// checkpoint.
	Base *model.Metadata
	// Resume makes the run resumable (it needs Out): after every epoch the
	// model, the epochs so far and the best weights are kept in ResumeDir(Out),
	// and a run that finds that state (left by an interrupted run with the same
	// configuration) continues after its last finished epoch instead of
	// starting over; the state is removed once the checkpoint is saved. The
	// data order, augmentation and learning-rate schedule continue exactly;
	// the optimiser's momentum restarts from zero, so a resumed run is close
	// to, not bit-identical with, an uninterrupted one.
	Resume bool
	// Hooks observe and extend the loop.
	Hooks Hooks
}

// Hooks let callers observe the loop (progress, logs) and extend it (fault-aware
// training). Every field is optional. Errors returned by hooks stop the run.
type Hooks struct {
	OnStart func(Start)
	OnStep  func(Step)
	OnEpoch func(Epoch)
	OnEnd   func(*Result)
	// Forward is passed to the model's forward pass during training steps.
	Forward model.Hook
	// BeforeEpoch runs on the torch thread before each epoch (0-based), e.g.
	// to refresh what fault-aware training draws its faults from.
	BeforeEpoch func(epoch int) error
	// Perturb, when set, makes steps fault-aware.
	Perturb *Perturbation
}

// Perturbation makes training steps fault-aware (loss = clean + Lambda x
// perturbed, on the same batch). On a step where Apply perturbs the model
// (flips weights, say), the perturbed pass runs first: its loss, times Lambda,
// is back-propagated; when that loss or its gradients are not finite the
// contribution is dropped (counted in Epoch.PerturbSkipped), and when the
// gradients' global norm exceeds MaxNorm (> 0) they are scaled down to it
// (counted in Epoch.PerturbClipped). Then Undo restores the model, and the clean
// pass adds its own gradients, so the optimiser's update lands on the clean
// weights. Undo runs whenever Apply returned true, errors included.
type Perturbation struct {
	Lambda  float64
	MaxNorm float64
	Apply   func(globalStep int64) (bool, error)
	Undo    func(globalStep int64) error
}

// Start describes a run about to begin.
type Start struct {
	Arch          string
	Epochs        int
	StepsPerEpoch int
	TrainImages   int
	TestImages    int
	Params        int64
	Threads       int
}

// Step reports one training step.
type Step struct {
	Epoch      int // 0-based
	Step       int // 0-based within the epoch
	GlobalStep int64
	Loss       float64
	LR         float64
	Images     int           // images seen so far in this epoch
	Elapsed    time.Duration // since the epoch began
}

// Epoch reports one finished epoch. Accuracies are fractions in [0,1].
type Epoch struct {
	Epoch         int     `json:"epoch"` // 1-based
	TrainLoss     float64 `json:"train_loss"`
	TrainAccuracy float64 `json:"train_accuracy"`
	TestAccuracy  float64 `json:"test_accuracy"`
	// Seconds is the epoch's wall time, kept out of the epoch's JSON (`train
	// --json` prints it under timing) so the rest is identical between runs.
	Seconds      float64 `json:"-"`
	SkippedSteps int     `json:"skipped_steps"` // non-finite losses
	// Perturbed steps (fault-aware training): how many there were, how many
	// perturbed contributions were dropped as not finite, and how many clipped.
	PerturbedSteps int `json:"perturbed_steps,omitempty"`
	PerturbSkipped int `json:"perturb_skipped,omitempty"`
	PerturbClipped int `json:"perturb_clipped,omitempty"`
}

// Result is a finished run.
type Result struct {
	Model        *model.Model
	Meta         model.Metadata
	Epochs       []Epoch
	TestAccuracy float64 // of the returned model
	BestEpoch    int     // 1-based epoch whose weights were kept
	TrainSeconds float64
}

// Run trains a model as opts say and, when opts.Out is set, saves the checkpoint
// there. It returns when done, on the first error, or when ctx is cancelled.
func Run(ctx context.Context, opts Options) (*Result, error) {
	cfg := opts.Config
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := checkSchedule(cfg.Train); err != nil {
		return nil, err
	}
	if opts.Out != "" {
		if err := atomicfile.CheckDir(opts.Out); err != nil {
			return nil, fmt.Errorf("train: %w", err)
		}
	}
	if opts.Resume && opts.Out == "" {
		return nil, errors.New("train: resuming needs a checkpoint directory (Out)")
	}
	var (
		resumed   resumeState
		hasResume bool
		resumeCfg json.RawMessage
	)
	if opts.Resume {
		var err error
		if resumeCfg, err = resumeConfig(cfg); err != nil {
			return nil, err
		}
		if resumed, hasResume, err = loadResume(ResumeDir(opts.Out), cfg); err != nil {
			return nil, err
		}
		if hasResume && len(resumed.Epochs) > cfg.Train.Epochs {
			return nil, fmt.Errorf("%w: %s has %d epochs done, this run has train.epochs=%d", ErrResumeMismatch,
				ResumeDir(opts.Out), len(resumed.Epochs), cfg.Train.Epochs)
		}
	}
	data := opts.Data
	if data == nil {
		var err error
		if data, err = LoadData(cfg.Data); err != nil {
			return nil, err
		}
	}
	threads, err := torch.SetThreads(cfg.Runtime.Threads)
	if err != nil {
		return nil, err
	}
	torch.ManualSeed(cfg.Runtime.Seed + int64(len(resumed.Epochs)))
	m := opts.Model
	var bestSnap *snapshot
	if hasResume {
		if m, bestSnap, err = loadResumeModels(ResumeDir(opts.Out), resumed, opts.Device); err != nil {
			return nil, err
		}
	}
	if m == nil {
		if m, err = model.New(SpecFor(cfg.Model, data.Train), opts.Device); err != nil {
			return nil, err
		}
	}
	loader, err := datasets.NewLoader(data.Train, datasets.LoaderOptions{BatchSize: cfg.Train.BatchSize, Shuffle: true,
		Seed: cfg.Runtime.Seed, DropLast: data.Train.Len() > cfg.Train.BatchSize, Stats: data.Stats})
	if err != nil {
		return nil, err
	}
	var aug *augmenter
	if cfg.Data.Augment == configs.AugmentFlipCrop {
		aug = newAugmenter(data.Stats, 2)
	}
	steps := loader.Batches(0)
	res := &Result{Model: m}
	if opts.Hooks.OnStart != nil {
		opts.Hooks.OnStart(Start{Arch: m.Spec().Arch, Epochs: cfg.Train.Epochs, StepsPerEpoch: steps,
			TrainImages: data.Train.Len(), TestImages: data.Test.Len(), Params: m.NumParams(), Threads: threads})
	}
	rec := cfg
	if opts.Model != nil {
		rec.Model = configs.ModelConfig{} // the model is the one given, not the config's
	}
	cfgJSON, _ := json.Marshal(rec)
	source := opts.Source
	if source == "" {
		source = "train"
	}
	meta := model.Metadata{Dataset: data.Name, Normalization: model.Normalization{Mean: data.Stats.Mean, Std: data.Stats.Std},
		Seed: cfg.Runtime.Seed, Source: source, Config: cfgJSON}
	if opts.Base != nil {
		meta.ONNX, meta.Labels = opts.Base.ONNX, opts.Base.Labels
	}
	var (
		best  = -1.0
		gstep int64
		began = time.Now()
		done  float64 // seconds of epochs run before a resume
	)
	if hasResume {
		res.Epochs, gstep = resumed.Epochs, resumed.GlobalStp
		for i := range res.Epochs {
			res.Epochs[i].Seconds = resumed.Seconds[i]
			done += resumed.Seconds[i]
		}
		if bestSnap != nil {
			best, res.BestEpoch = resumed.BestAcc, resumed.BestEpoch
		}
	}
	err = torch.Do(func() error {
		opt, err := newOptimizer(cfg.Train, m)
		if err != nil {
			return err
		}
		defer opt.Drop()
		defer func() {
			if bestSnap != nil {
				bestSnap.drop()
			}
		}()
		for epoch := len(res.Epochs); epoch < cfg.Train.Epochs; epoch++ {
			if opts.Hooks.BeforeEpoch != nil {
				if err := opts.Hooks.BeforeEpoch(epoch); err != nil {
					return err
				}
			}
			st, err := runEpoch(ctx, epochArgs{cfg: cfg, m: m, opt: opt, loader: loader, aug: aug, epoch: epoch,
				steps: steps, dev: opts.Device, hooks: opts.Hooks, gstep: &gstep})
			if err != nil {
				return err
			}
			if st.TestAccuracy, err = Evaluate(m, data.Test, data.Stats, cfg.Train.EvalBatchSize, opts.Device, nil); err != nil {
				return err
			}
			res.Epochs = append(res.Epochs, st)
			if opts.Hooks.OnEpoch != nil {
				opts.Hooks.OnEpoch(st)
			}
			newBest := cfg.Train.KeepBest && st.TestAccuracy > best
			if newBest {
				best, res.BestEpoch = st.TestAccuracy, st.Epoch
				if bestSnap != nil {
					bestSnap.drop()
				}
				if bestSnap, err = snapshotOf(m); err != nil {
					return err
				}
			}
			if opts.Resume && epoch+1 < cfg.Train.Epochs {
				rs := resumeState{Kind: resumeKind, Config: resumeCfg, Epochs: res.Epochs, GlobalStp: gstep,
					BestAcc: best, BestEpoch: res.BestEpoch}
				if !newBest && cfg.Train.KeepBest {
					rs.Best = resumed.Best
				}
				for _, e := range res.Epochs {
					rs.Seconds = append(rs.Seconds, e.Seconds)
				}
				meta.TestAccuracy, meta.Steps = st.TestAccuracy, gstep
				if resumed, err = saveResume(ResumeDir(opts.Out), rs, m, meta, newBest); err != nil {
					return err
				}
			}
		}
		last := res.Epochs[len(res.Epochs)-1]
		res.TestAccuracy, res.BestEpoch = last.TestAccuracy, last.Epoch
		if cfg.Train.KeepBest && bestSnap != nil && best > last.TestAccuracy {
			if err := bestSnap.restore(m); err != nil {
				return err
			}
			res.TestAccuracy = best
			res.BestEpoch = res.Epochs[0].Epoch
			for _, e := range res.Epochs {
				if e.TestAccuracy == best {
					res.BestEpoch = e.Epoch
					break
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	res.TrainSeconds = done + time.Since(began).Seconds()
	meta.Arch, meta.Spec = m.Spec().Arch, m.Spec()
	meta.Epochs, meta.Steps = len(res.Epochs), gstep
	meta.TestAccuracy, meta.Timing.TrainSeconds = res.TestAccuracy, res.TrainSeconds
	res.Meta = meta
	if opts.Out != "" {
		if err := m.Save(opts.Out, meta); err != nil {
			return nil, err
		}
		if opts.Resume {
			if err := os.RemoveAll(ResumeDir(opts.Out)); err != nil {
				return nil, fmt.Errorf("train: %w", err)
			}
		}
	}
	if opts.Hooks.OnEnd != nil {
		opts.Hooks.OnEnd(res)
	}
	return res, nil
}

// newOptimizer builds libtorch's optimizer over the trainable parameters.
func newOptimizer(c configs.TrainConfig, m *model.Model) (*ts.COptimizer, error) {
	var (
		opt *ts.COptimizer
		err error
	)
	switch c.Optimizer {
	case configs.OptimizerSGD:
		opt, err = ts.Sgd(c.LR, c.Momentum, 0, c.WeightDecay, c.Nesterov)
	case configs.OptimizerAdam:
		opt, err = ts.Adam(c.LR, 0.9, 0.999, c.WeightDecay)
	default:
		return nil, fmt.Errorf("train.optimizer: unknown %q", c.Optimizer)
	}
	if err != nil {
		return nil, fmt.Errorf("train: optimizer: %w", err)
	}
	var params []*ts.Tensor
	for _, p := range m.Params() {
		if p.Trainable {
			params = append(params, p.Tensor)
		}
	}
	if err := opt.AddParameters(params); err != nil {
		opt.Drop()
		return nil, fmt.Errorf("train: optimizer: %w", err)
	}
	return opt, nil
}

type epochArgs struct {
	cfg    configs.Config
	m      *model.Model
	opt    *ts.COptimizer
	loader *datasets.Loader
	aug    *augmenter
	epoch  int
	steps  int
	dev    gotch.Device
	hooks  Hooks
	gstep  *int64
}

// runEpoch trains one epoch on the torch thread.
func runEpoch(ctx context.Context, a epochArgs) (Epoch, error) {
	st := Epoch{Epoch: a.epoch + 1}
	start := time.Now()
	it := a.loader.Epoch(a.epoch)
	var lossSum float64
	var correct, seen int64
	for i := 0; ; i++ {
		b, ok := it.Next()
		if !ok {
			break
		}
		if err := ctx.Err(); err != nil {
			return st, err
		}
		if a.aug != nil {
			a.aug.apply(b, a.cfg.Runtime.Seed, a.epoch, i)
		}
		lr := LR(a.cfg.Train, int(*a.gstep), a.steps)
		if err := a.opt.SetLearningRate(lr); err != nil {
			return st, fmt.Errorf("train: set lr: %w", err)
		}
		loss, ok, err := step(a, b, &st)
		if err != nil {
			return st, fmt.Errorf("train: epoch %d step %d: %w", a.epoch+1, i+1, err)
		}
		if !ok {
			st.SkippedSteps++
		} else {
			lossSum += loss.loss * float64(b.N)
			correct += loss.correct
			seen += int64(b.N)
		}
		*a.gstep++
		if a.hooks.OnStep != nil {
			a.hooks.OnStep(Step{Epoch: a.epoch, Step: i, GlobalStep: *a.gstep, Loss: loss.loss, LR: lr,
				Images: (i + 1) * b.N, Elapsed: time.Since(start)})
		}
	}
	if seen == 0 {
		return st, errors.New("train: every step of the epoch had a non-finite loss")
	}
	st.TrainLoss, st.TrainAccuracy = lossSum/float64(seen), float64(correct)/float64(seen)
	st.Seconds = time.Since(start).Seconds()
	return st, nil
}

type stepResult struct {
	loss    float64
	correct int64
}

// step runs forward, backward and the optimiser on one batch (after the
// perturbed pass, when a.hooks.Perturb perturbs this step). ok is false when the
// clean loss was not finite (the update is skipped).
func step(a epochArgs, b *datasets.Batch, st *Epoch) (res stepResult, ok bool, err error) {
	var s torch.Scope
	defer s.Drop()
	x, y, err := b.Tensors(a.dev)
	if err != nil {
		return res, false, err
	}
	s.Keep(x)
	s.Keep(y)
	if err := a.opt.ZeroGrad(); err != nil {
		return res, false, err
	}
	if p := a.hooks.Perturb; p != nil {
		if err := perturbed(a, p, x, y, st); err != nil {
			return res, false, err
		}
	}
	logits, loss, err := lossOn(a, &s, x, y)
	if err != nil {
		return res, false, err
	}
	if res.loss, err = loss.Float64Value(nil); err != nil {
		return res, false, err
	}
	if math.IsNaN(res.loss) || math.IsInf(res.loss, 0) {
		return res, false, nil
	}
	if err := loss.Backward(); err != nil {
		return res, false, err
	}
	if err := a.opt.Step(); err != nil {
		return res, false, err
	}
	if res.correct, err = countCorrect(logits, y); err != nil {
		return res, false, err
	}
	return res, true, nil
}

// lossOn runs the training-mode forward pass on x and the cross-entropy loss
// against y; both tensors are kept in s.
func lossOn(a epochArgs, s *torch.Scope, x, y *ts.Tensor) (logits, loss *ts.Tensor, err error) {
	if logits, err = s.KeepErr(a.m.Forward(x, true, a.hooks.Forward)); err != nil {
		return nil, nil, err
	}
	loss, err = s.KeepErr(logits.CrossEntropyLoss(y, ts.NewTensor(), 1, -100, a.cfg.Train.LabelSmoothing, false))
	return logits, loss, err
}

// perturbed runs the perturbed pass of a fault-aware step: Apply, forward,
// Lambda x loss backward, the finiteness check and clipping, Undo.
func perturbed(a epochArgs, p *Perturbation, x, y *ts.Tensor, st *Epoch) (err error) {
	on, err := p.Apply(*a.gstep)
	if err != nil || !on {
		return err
	}
	defer func() {
		if uerr := p.Undo(*a.gstep); uerr != nil && err == nil {
			err = uerr
		}
	}()
	st.PerturbedSteps++
	var s torch.Scope
	defer s.Drop()
	_, loss, err := lossOn(a, &s, x, y)
	if err != nil {
		return err
	}
	v, err := loss.Float64Value(nil)
	if err != nil {
		return err
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		st.PerturbSkipped++
		return nil
	}
	lambda, err := s.KeepErr(ts.OfSlice([]float32{float32(p.Lambda)}))
	if err != nil {
		return err
	}
	scaled, err := s.KeepErr(loss.Mul(lambda, false))
	if err != nil {
		return err
	}
	if err := scaled.Backward(); err != nil {
		return err
	}
	norm, err := gradNorm(a.m)
	if err != nil {
		return err
	}
	switch {
	case math.IsNaN(norm) || math.IsInf(norm, 0):
		st.PerturbSkipped++
		return a.opt.ZeroGrad()
	case p.MaxNorm > 0 && norm > p.MaxNorm:
		st.PerturbClipped++
		return scaleGrads(a.m, p.MaxNorm/norm)
	}
	return nil
}

// gradNorm is the global L2 norm of the trainable parameters' gradients (+Inf
// or NaN when one is not finite).
func gradNorm(m *model.Model) (float64, error) {
	var sum float64
	err := eachGrad(m, func(g *ts.Tensor) error {
		n, err := g.Norm(false)
		if err != nil {
			return err
		}
		v, err := n.Float64Value(nil)
		_ = n.Drop()
		sum += v * v
		return err
	})
	return math.Sqrt(sum), err
}

// scaleGrads multiplies every trainable parameter's gradient by f in place.
func scaleGrads(m *model.Model, f float64) error {
	k, err := ts.OfSlice([]float32{float32(f)})
	if err != nil {
		return err
	}
	defer k.Drop()
	return eachGrad(m, func(g *ts.Tensor) error { return g.Mul_(k) })
}

// eachGrad calls fn with the defined gradient of every trainable parameter.
func eachGrad(m *model.Model, fn func(g *ts.Tensor) error) error {
	for _, p := range m.Params() {
		if !p.Trainable {
			continue
		}
		g, err := p.Tensor.Grad(false)
		if err != nil {
			return fmt.Errorf("gradient of %s: %w", p.Name, err)
		}
		def, err := g.Defined()
		if err == nil && def {
			err = fn(g)
		}
		_ = g.Drop()
		if err != nil {
			return fmt.Errorf("gradient of %s: %w", p.Name, err)
		}
	}
	return nil
}

// countCorrect counts rows whose argmax equals the label.
func countCorrect(logits, y *ts.Tensor) (int64, error) {
	var s torch.Scope
	defer s.Drop()
	pred, err := s.KeepErr(logits.Argmax([]int64{1}, false, false))
	if err != nil {
		return 0, err
	}
	eq, err := s.KeepErr(pred.EqTensor(y, false))
	if err != nil {
		return 0, err
	}
	sum, err := s.KeepErr(eq.Sum(gotch.Int64, false))
	if err != nil {
		return 0, err
	}
	return sum.Int64Value(nil)
}
