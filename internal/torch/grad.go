package torch

import (
	"github.com/sugarme/gotch/libtch"
	"github.com/sugarme/gotch/ts"
)

// SetGradEnabled switches libtorch's grad mode on the torch thread and returns the
// previous state. (gotch v0.8.0 misread the previous state; faultline's adapted
// gotch fixes that, and TestGradSetEnabledReturnsPrevious guards it.)
func SetGradEnabled(on bool) (prev bool, err error) {
	if err := mustBeOnTorchThread("SetGradEnabled"); err != nil {
		return false, err
	}
	return ts.GradSetEnabled(on)
}

// GradEnabled reports whether grad mode is on for the torch thread.
func GradEnabled() (bool, error) {
	prev, err := SetGradEnabled(true)
	if err != nil {
		return false, err
	}
	if _, err := SetGradEnabled(prev); err != nil {
		return false, err
	}
	return prev, nil
}

// NoGrad runs fn with grad mode off and then restores the previous state, even when
// fn fails or panics. It must run inside Do; use it instead of gotch's ts.NoGrad,
// which re-enables grad unconditionally and may run on any OS thread.
func NoGrad(fn func() error) (err error) {
	prev, err := SetGradEnabled(false)
	if err != nil {
		return err
	}
	defer func() {
		if _, rerr := SetGradEnabled(prev); rerr != nil && err == nil {
			err = rerr
		}
	}()
	return fn()
}

// BackwardKeepGraph runs the backward pass of scalar t like t.Backward, but
// keeps the autograd graph so that another backward pass can run over it
// (gotch's Backward always frees it). It must run on the torch thread.
func BackwardKeepGraph(t *ts.Tensor) error {
	if err := mustBeOnTorchThread("BackwardKeepGraph"); err != nil {
		return err
	}
	libtch.AtBackward(libtch.Ctensor(t.Ctensor()), 1, 0)
	return ts.TorchErr()
}
