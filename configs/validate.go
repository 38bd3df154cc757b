package configs

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
)

// Validate checks every section (every field of Config with a Validate method) and
// returns all problems joined with errors.Join, or nil. Each problem names its key
// and the bad value, e.g. "train.lr: must be > 0, got -0.1".
func (c Config) Validate() error {
	rv := reflect.ValueOf(c)
	var errs []error
	for i := range rv.NumField() {
		if s, ok := rv.Field(i).Interface().(interface{ Validate() error }); ok {
			errs = append(errs, s.Validate())
		}
	}
	return errors.Join(errs...)
}

// Validate checks the model section.
func (m ModelConfig) Validate() error {
	var ch checker
	ch.oneOf("model.arch", m.Arch)
	ch.positive("model.width", m.Width)
	if m.Arch == ArchMLP && len(m.Hidden) == 0 {
		ch.fail("model.hidden", "arch %s needs at least one hidden layer size, got none", ArchMLP)
	}
	for i, h := range m.Hidden {
		ch.atLeast(fmt.Sprintf("model.hidden[%d]", i), h, 1)
	}
	return ch.err()
}

// Validate checks the data section.
func (d DataConfig) Validate() error {
	var ch checker
	ch.oneOf("data.dataset", d.Dataset)
	ch.atLeast("data.train_limit", d.TrainLimit, 0)
	ch.atLeast("data.test_limit", d.TestLimit, 0)
	ch.oneOf("data.augment", d.Augment)
	return ch.err()
}

// Validate checks the train section.
func (t TrainConfig) Validate() error {
	var ch checker
	ch.atLeast("train.epochs", t.Epochs, 1)
	ch.atLeast("train.batch_size", t.BatchSize, 1)
	ch.atLeast("train.eval_batch_size", t.EvalBatchSize, 1)
	ch.oneOf("train.optimizer", t.Optimizer)
	ch.positive("train.lr", t.LR)
	ch.interval("train.momentum", t.Momentum, 0, 1, true, false)
	if t.Nesterov && (t.Optimizer != OptimizerSGD || !(t.Momentum > 0)) {
		ch.fail("train.nesterov", "needs train.optimizer %s and train.momentum > 0, got optimizer %q and momentum %v",
			OptimizerSGD, t.Optimizer, t.Momentum)
	}
	ch.interval("train.weight_decay", t.WeightDecay, 0, math.Inf(1), true, false)
	ch.oneOf("train.schedule", t.Schedule)
	if t.Schedule == ScheduleStep {
		if t.StepSize < 1 {
			ch.fail("train.step_size", "must be >= 1 when train.schedule is %s, got %d", ScheduleStep, t.StepSize)
		}
	} else {
		ch.atLeast("train.step_size", t.StepSize, 0)
	}
	ch.interval("train.gamma", t.Gamma, 0, 1, false, true)
	ch.atLeast("train.warmup_epochs", t.WarmupEpochs, 0)
	if t.WarmupEpochs > 0 && t.WarmupEpochs >= t.Epochs {
		ch.fail("train.warmup_epochs", "must be < train.epochs (%d), got %d", t.Epochs, t.WarmupEpochs)
	}
	ch.interval("train.label_smoothing", t.LabelSmoothing, 0, 1, true, false)
	return ch.err()
}

// Validate checks the runtime section.
func (r RuntimeConfig) Validate() error {
	var ch checker
	ch.atLeast("runtime.threads", r.Threads, 0)
	ch.oneOf("runtime.device", r.Device)
	return ch.err()
}

// Validate checks the harden section.
func (h HardenConfig) Validate() error {
	var ch checker
	ch.atLeast("harden.profile_images", h.ProfileImages, 0)
	unit := func(key string, v float64, open bool) {
		if !(v >= 0 && v <= 1) || (open && v == 0) {
			lo := "["
			if open {
				lo = "("
			}
			ch.fail(key, "%g is outside %s0, 1]", v, lo)
		}
	}
	if h.Margin < 0 {
		ch.fail("harden.margin", "%g is below 0", h.Margin)
	}
	ch.atLeast("harden.epochs", h.Epochs, 1)
	if !(h.LRScale > 0) {
		ch.fail("harden.lr_scale", "%g is not above 0", h.LRScale)
	}
	unit("harden.fault_prob", h.FaultProb, false)
	ch.atLeast("harden.faults_per_step", h.FaultsPerStep, 1)
	unit("harden.pool_share", h.PoolShare, false)
	ch.atLeast("harden.pool_budget", h.PoolBudget, 1)
	ch.atLeast("harden.pool_images", h.PoolImages, 1)
	if !(h.Lambda > 0) || math.IsInf(h.Lambda, 0) {
		ch.fail("harden.lambda", "%g is not a finite value above 0", h.Lambda)
	}
	if !(h.MaxGradNorm >= 0) || math.IsInf(h.MaxGradNorm, 0) {
		ch.fail("harden.max_grad_norm", "%g is not a finite value of at least 0", h.MaxGradNorm)
	}
	unit("harden.vf_ratio", h.VFRatio, true)
	if !(h.VFPrecision >= 0 && h.VFPrecision < 1) {
		ch.fail("harden.vf_precision", "%g is outside [0, 1) (0.005 = +-0.5 pp; 0 = the first draw only)", h.VFPrecision)
	}
	ch.atLeast("harden.vf_images", h.VFImages, 1)
	for i, b := range h.BER {
		unit(fmt.Sprintf("harden.ber[%d]", i), b, true)
	}
	ch.atLeast("harden.ber_trials", h.BERTrials, 1)
	ch.atLeast("harden.ber_images", h.BERImages, 1)
	return ch.err()
}

// checker collects the problems of one section.
type checker struct{ errs []error }

func (ch *checker) err() error { return errors.Join(ch.errs...) }

func (ch *checker) fail(key, format string, args ...any) {
	ch.errs = append(ch.errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
}

// oneOf checks an enumerated key against its Choices.
func (ch *checker) oneOf(key, got string) {
	allowed := choices[key]
	if !slices.Contains(allowed, got) {
		ch.fail(key, "must be one of %s, got %q", strings.Join(allowed, ", "), got)
	}
}

func (ch *checker) atLeast(key string, got, lo int) {
	if got < lo {
		ch.fail(key, "must be >= %d, got %d", lo, got)
	}
}

func (ch *checker) positive(key string, got float64) {
	ch.interval(key, got, 0, math.Inf(1), false, false)
}

// interval checks lo < got < hi, with either end inclusive; an infinite hi means
// no upper bound. NaN and infinities always fail.
func (ch *checker) interval(key string, got, lo, hi float64, loIn, hiIn bool) {
	if math.IsNaN(got) || math.IsInf(got, 0) {
		ch.fail(key, "must be a finite number, got %v", got)
		return
	}
	okLo := got > lo || (loIn && got == lo)
	okHi := got < hi || (hiIn && got == hi)
	if okLo && okHi {
		return
	}
	switch {
	case math.IsInf(hi, 1) && loIn:
		ch.fail(key, "must be >= %v, got %v", lo, got)
	case math.IsInf(hi, 1):
		ch.fail(key, "must be > %v, got %v", lo, got)
	default:
		open, closing := "(", ")"
		if loIn {
			open = "["
		}
		if hiIn {
			closing = "]"
		}
		ch.fail(key, "must be in %s%v, %v%s, got %v", open, lo, hi, closing, got)
	}
}
