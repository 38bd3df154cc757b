package harden

import (
	"fmt"
	"math/rand/v2"

	"github.com/faultline/faultline/fault"
	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model"
	"github.com/sugarme/gotch/ts"
)

// fat injects transient weight faults into training steps: before a step, with
// probability p, k single-bit flips, each taken from the critical pool with
// probability poolShare (when the pool is not empty) or drawn fresh; after the
// backward pass (or after the step, when the loss was not finite and there was
// no update) the clean weights are restored, so the update lands on them.
type fat struct {
	inj       *fault.Injector
	rng       *rand.Rand
	p         float64
	k         int
	poolShare float64
	pool      []fault.Fault
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

// before flips the step's faults.
func (f *fat) before(int64) error {
	f.Steps++
	if f.rng.Float64() >= f.p {
		return nil
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
		return fmt.Errorf("harden: save BatchNorm statistics: %w", err)
	}
	for range f.k {
		var flt fault.Fault
		if len(f.pool) > 0 && f.rng.Float64() < f.poolShare {
			flt = f.pool[f.rng.IntN(len(f.pool))]
			f.FromPool++
		} else {
			flt = f.fresh()
		}
		restore, err := f.inj.Apply(&flt)
		if err != nil {
			_ = f.undo()
			return fmt.Errorf("harden: fault-aware training: %w", err)
		}
		f.restore = append(f.restore, restore)
		f.Injected++
	}
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

func (f *fat) after(int64) error { return f.undo() }
