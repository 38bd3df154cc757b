package fault

import (
	"fmt"

	"github.com/faultline/faultline/model"
)

// flat returns the row-major flat index of coordinates idx in dims.
func flat(idx, dims []int64) int64 {
	var f int64
	for i, d := range dims {
		f = f*d + idx[i]
	}
	return f
}

// unflat returns the coordinates of flat index f in dims.
func unflat(f int64, dims []int64) []int64 {
	idx := make([]int64, len(dims))
	for i := len(dims) - 1; i >= 0; i-- {
		idx[i] = f % dims[i]
		f /= dims[i]
	}
	return idx
}

// inRange checks coordinates against dims.
func inRange(idx, dims []int64) bool {
	if len(idx) != len(dims) {
		return false
	}
	for i := range idx {
		if idx[i] < 0 || idx[i] >= dims[i] {
			return false
		}
	}
	return true
}

// checkAgainst validates f on its own and against the model's site and shapes, and
// the number of evaluation images.
func checkAgainst(f *Fault, sites map[string]model.Site, names []string, images int) error {
	if err := f.Validate(); err != nil {
		return fmt.Errorf("fault %d: %w", f.ID, err)
	}
	s, ok := sites[f.Layer]
	if !ok {
		return fmt.Errorf("fault %d: unknown layer %q (layers: %v)", f.ID, f.Layer, names)
	}
	if err := CheckSite(&s); err != nil {
		return fmt.Errorf("fault %d: %w", f.ID, err)
	}
	switch f.Target {
	case Weight:
		n := model.Numel(s.WeightShape)
		if f.Param == "bias" {
			if !s.HasBias {
				return fmt.Errorf("fault %d: layer %s has no bias", f.ID, f.Layer)
			}
			n = s.WeightShape[0]
		}
		if f.Index[0] >= n {
			return fmt.Errorf("fault %d: index %d out of range: %s has %d elements", f.ID, f.Index[0], paramOf(&s, f), n)
		}
	case Activation:
		dims := s.OutShape
		if f.Point == Input {
			dims = s.InShape
		}
		if !inRange(f.Index, dims) {
			return fmt.Errorf("fault %d: index %v out of range for the %s of %s, shape %v", f.ID, f.Index, pointNoun(f.Point), f.Layer, dims)
		}
		if f.Point == MAC {
			var op []int64
			if s.Kind == model.Conv {
				op = []int64{s.WeightShape[1], s.WeightShape[2], s.WeightShape[3]}
			} else {
				op = []int64{s.WeightShape[1]}
			}
			if !inRange(f.Operand, op) {
				return fmt.Errorf("fault %d: operand %v out of range for %s, operand shape %v", f.ID, f.Operand, f.Layer, op)
			}
		}
	}
	if f.Images != nil && f.Images[0]+f.Images[1] > int64(images) {
		return fmt.Errorf("fault %d: images [%d, %d) but the evaluation set has %d", f.ID, f.Images[0], f.Images[0]+f.Images[1], images)
	}
	return nil
}

func pointNoun(p Point) string {
	if p == Input {
		return "input"
	}
	return "output"
}
