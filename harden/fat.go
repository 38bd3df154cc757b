package harden

import (
	"fmt"
	"math/rand/v2"

	"github.com/faultline/faultline/fault"
	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model"
	"github.com/sugarme/gotch/ts"
)

// fat perturbs training steps with weight faults (train.Perturbation): with
// probability p a step carries k transient single-bit flips, each taken from
// the critical pool with probability poolShare (when the pool is not empty) or
// drawn fresh, and every step carries the permanent fault map, when there is
// one. The flips are undone after the perturbed pass, before the clean pass and
// the update, so the update lands on the clean weights.
type fat struct {
	inj       *fault.Injector
	rng       *rand.Rand
	p         float64
	k         int
	poolShare float64
	pool      []fault.Fault
	permanent []fault.Fault
	sites     []model.Site
	total     int64 // weights over all sites
	restore   []func() error
	// buffers are the model's non-trainable tensors (BatchNorm running
	// statistics): a faulty step must not fold its corrupted activations into
	// them, so they are saved before it and put back after.
	buffers []*ts.Tensor
	saved   []*ts.Tensor
	// counts
	Steps, Injected, FromPool int64
}

// fresh draws a fresh weight fault: a uniform weight, its exponent MSB half the
// time (the bit that matters in float32, where |w| < 2) and a uniform bit
// otherwise.
func (f *fat) fresh() fault.Fault {
	e := f.rng.Int64N(f.total)
	var s model.Site
	for _, s = range f.sites {
		n := model.Numel(s.WeightShape)
		if e < n {
			break
		}
		e -= n
	}
	bit := 30
	if f.rng.Float64() >= 0.5 {
		bit = f.rng.IntN(32)
	}
	return fault.Fault{Target: fault.Weight, Layer: s.Name, Param: "weight", Index: []int64{e}, Kind: fault.BitFlip,
		Bits: []int{bit}, DType: fault.Float32, Duration: fault.Transient}
}

// apply flips the step's faults; false means a clean step.
func (f *fat) apply(int64) (bool, error) {
	f.Steps++
	transient := f.rng.Float64() < f.p
	if !transient && len(f.permanent) == 0 {
		return false, nil
	}
	if err := torch.NoGrad(func() error {
		for _, b := range f.buffers {
			c, err := b.DetachCopy(false)
			if err != nil {
				return err
			}
			f.saved = append(f.saved, c)
		}
		return nil
	}); err != nil {
		return true, fmt.Errorf("harden: save BatchNorm statistics: %w", err)
	}
	for i := range f.permanent {
		if err := f.inject(&f.permanent[i]); err != nil {
			return true, err
		}
	}
	if !transient {
		return true, nil
	}
	for range f.k {
		var flt fault.Fault
		if len(f.pool) > 0 && f.rng.Float64() < f.poolShare {
			flt = f.pool[f.rng.IntN(len(f.pool))]
			f.FromPool++
		} else {
			flt = f.fresh()
		}
		if err := f.inject(&flt); err != nil {
			return true, err
		}
		f.Injected++
	}
	return true, nil
}

// inject applies one fault, to be undone by undo.
func (f *fat) inject(flt *fault.Fault) error {
	restore, err := f.inj.Apply(flt)
	if err != nil {
		return fmt.Errorf("harden: fault-aware training: %w", err)
	}
	f.restore = append(f.restore, restore)
	return nil
}

// undo restores the clean weights, last fault first, and the BatchNorm
// statistics from before the faulty step.
func (f *fat) undo() error {
	var first error
	for i := len(f.restore) - 1; i >= 0; i-- {
		if err := f.restore[i](); err != nil && first == nil {
			first = err
		}
	}
	f.restore = f.restore[:0]
	if len(f.saved) > 0 {
		err := torch.NoGrad(func() error {
			for i, b := range f.buffers {
				if err := b.CopyFrom(f.saved[i]); err != nil {
					return err
				}
			}
			return nil
		})
		for _, c := range f.saved {
			_ = c.Drop()
		}
		f.saved = f.saved[:0]
		if err != nil && first == nil {
			first = fmt.Errorf("harden: restore BatchNorm statistics: %w", err)
		}
	}
	return first
}

// undoStep is undo as a train.Perturbation's Undo.
func (f *fat) undoStep(int64) error { return f.undo() }
