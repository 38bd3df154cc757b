package fault

import (
	"fmt"
	"math"

	"github.com/faultline/faultline/internal/torch"
	"github.com/sugarme/gotch/ts"
)

// Apply installs a weight fault (any kind: bit flips, stuck-at bits, a random value,
// zero) in its parameter, in place, until the returned restore is called; whatever
// f.Duration says, it stays for every forward pass in between. It starts from the
// element's current value, so faults on one element stack when restored in reverse
// order. restore writes the old value back and reads it back bit for bit (an error
// if any bit differs); calling it again does nothing. Both run on the torch thread.
// While a fault is applied, the injector's other runs still take the golden host
// copy as the fault-free weights, and an EvalSet's cached golden activations
// (filled by RunBatched) are not recomputed: evaluate a model under an applied
// fault with a fresh EvalSet.
func (inj *Injector) Apply(f *Fault) (restore func() error, err error) {
	if err := inj.Check(f, math.MaxInt32); err != nil {
		return nil, err
	}
	if f.Target != Weight {
		return nil, fmt.Errorf("fault %d: only weight faults can be applied in place (activation faults are transient)", f.ID)
	}
	s := inj.sites[f.Layer]
	name, i := paramOf(&s, f), f.Index[0]
	if f.Param == "weight" {
		i = storeIndex(&s, i)
	}
	p, err := inj.m.Param(name)
	if err != nil {
		return nil, err
	}
	var before float32
	read := false
	err = torch.NoGrad(func() error {
		var err error
		if before, err = readElement(p, i); err != nil {
			return err
		}
		read = true
		return writeExact(p, i, f.Corrupt(before))
	})
	if err != nil {
		if read {
			_ = torch.NoGrad(func() error { return writeElement(p, i, before) })
		}
		return nil, fmt.Errorf("fault %d: apply to %s[%d]: %w", f.ID, name, i, err)
	}
	done := false
	return func() error {
		if done {
			return nil
		}
		if err := torch.NoGrad(func() error { return writeExact(p, i, before) }); err != nil {
			return fmt.Errorf("fault %d: restore %s[%d]: %w", f.ID, name, i, err)
		}
		done = true
		return nil
	}, nil
}

// writeExact writes v at flat index i and reads it back bit for bit.
func writeExact(p *ts.Tensor, i int64, v float32) error {
	if err := writeElement(p, i, v); err != nil {
		return err
	}
	got, err := readElement(p, i)
	if err != nil {
		return err
	}
	if BitsOf(got) != BitsOf(v) {
		return fmt.Errorf("wrote 0x%08x, read back 0x%08x", math.Float32bits(v), math.Float32bits(got))
	}
	return nil
}
