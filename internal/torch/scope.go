package torch

import "github.com/sugarme/gotch/ts"

// Scope collects tensors created in a loop iteration or a function so they can be
// dropped together: tensors hold C memory that Go's garbage collector does not see,
// and finalizers run too late in hot loops.
type Scope struct {
	tensors []*ts.Tensor
}

// Keep adds t to the scope and returns it (nil is ignored).
func (s *Scope) Keep(t *ts.Tensor) *ts.Tensor {
	if t != nil {
		s.tensors = append(s.tensors, t)
	}
	return t
}

// KeepErr is Keep for a (tensor, error) result: it adds t when err is nil.
func (s *Scope) KeepErr(t *ts.Tensor, err error) (*ts.Tensor, error) {
	if err != nil {
		return nil, err
	}
	return s.Keep(t), nil
}

// Drop frees every tensor in the scope and empties it; the scope can be reused.
func (s *Scope) Drop() {
	for _, t := range s.tensors {
		_ = t.Drop()
	}
	s.tensors = s.tensors[:0]
}

// Len is the number of tensors held.
func (s *Scope) Len() int { return len(s.tensors) }
