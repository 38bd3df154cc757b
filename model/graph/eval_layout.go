package graph

import (
	"errors"
	"fmt"
	"math"
)

// errNoFold marks a node that Fold leaves in the graph: an op or a type the
// constant evaluator does not handle. It is never returned to callers.
var errNoFold = errors.New("not foldable")

// maxFoldElems bounds the size of a folded tensor that is larger than all of its
// inputs together (ConstantOfShape, Range, broadcasting, Gather): a few constants
// in a file must not make Fold allocate gigabytes.
const maxFoldElems = 1 << 22

// checkFoldSize rejects an output of n elements larger than maxFoldElems and than
// the inputs' total.
func checkFoldSize(n int64, in ...*Tensor) error {
	total := int64(0)
	for _, t := range in {
		if t != nil {
			total += int64(t.Len())
		}
	}
	if n > maxFoldElems && n > total {
		return fmt.Errorf("folded tensor would have %d elements (limit %d)", n, maxFoldElems)
	}
	return nil
}

// newOut returns an output tensor of dtype and shape with zeroed data.
func newOut(dt DType, shape []int64, in ...*Tensor) (*Tensor, error) {
	n, err := NumElems(shape)
	if err != nil {
		return nil, err
	}
	if dt.Size() == 0 {
		return nil, errNoFold
	}
	if err := checkFoldSize(n, in...); err != nil {
		return nil, err
	}
	return &Tensor{DType: dt, Shape: shape, raw: make([]byte, n*int64(dt.Size()))}, nil
}

// normAxis maps a possibly negative axis into [0, rank).
func normAxis(axis int64, rank int) (int, error) {
	if axis < -int64(rank) || axis >= int64(rank) {
		return 0, fmt.Errorf("axis %d out of range for rank %d", axis, rank)
	}
	if axis < 0 {
		axis += int64(rank)
	}
	return int(axis), nil
}

// strides returns the C-order element strides of shape.
func strides(shape []int64) []int64 {
	s := make([]int64, len(shape))
	acc := int64(1)
	for i := len(shape) - 1; i >= 0; i-- {
		s[i] = acc
		acc *= shape[i]
	}
	return s
}

// prod returns the product of dims (all non-negative, already bounded).
func prod(dims []int64) int64 {
	p := int64(1)
	for _, d := range dims {
		p *= d
	}
	return p
}

// reshaped returns t's data under a new shape (the element count must match).
func reshaped(t *Tensor, shape []int64) (*Tensor, error) {
	n, err := NumElems(shape)
	if err != nil {
		return nil, err
	}
	if n != int64(t.Len()) {
		return nil, fmt.Errorf("cannot reshape %v (%d elements) to %v", t.Shape, t.Len(), shape)
	}
	return &Tensor{DType: t.DType, Shape: shape, raw: t.raw}, nil
}

// pick gathers from t the elements whose index along each axis a is idx[a][k]:
// the output has shape len(idx[a]) per axis.
func pick(t *Tensor, idx [][]int64) (*Tensor, error) {
	shape := make([]int64, len(idx))
	for a := range idx {
		shape[a] = int64(len(idx[a]))
	}
	out, err := newOut(t.DType, shape, t)
	if err != nil {
		return nil, err
	}
	n := int64(out.Len())
	if n == 0 {
		return out, nil
	}
	es := int64(t.DType.Size())
	st := strides(t.Shape)
	pos := make([]int64, len(shape))
	for o := int64(0); o < n; o++ {
		off := int64(0)
		for a, p := range pos {
			off += idx[a][p] * st[a]
		}
		copy(out.raw[o*es:(o+1)*es], t.raw[off*es:(off+1)*es])
		for a := len(pos) - 1; a >= 0; a-- {
			pos[a]++
			if pos[a] < shape[a] {
				break
			}
			pos[a] = 0
		}
	}
	return out, nil
}

// transpose permutes t's axes (perm nil: reversed).
func transpose(t *Tensor, perm []int64) (*Tensor, error) {
	r := len(t.Shape)
	if perm == nil {
		for i := r - 1; i >= 0; i-- {
			perm = append(perm, int64(i))
		}
	}
	if len(perm) != r {
		return nil, fmt.Errorf("perm %v for rank %d", perm, r)
	}
	seen := make([]bool, r)
	shape := make([]int64, r)
	for i, p := range perm {
		if p < 0 || p >= int64(r) || seen[p] {
			return nil, fmt.Errorf("perm %v is not a permutation", perm)
		}
		seen[p] = true
		shape[i] = t.Shape[p]
	}
	out, err := newOut(t.DType, shape, t)
	if err != nil {
		return nil, err
	}
	n := int64(out.Len())
	es := int64(t.DType.Size())
	st := strides(t.Shape)
	pos := make([]int64, r)
	for o := int64(0); o < n; o++ {
		off := int64(0)
		for i, p := range pos {
			off += p * st[perm[i]]
		}
		copy(out.raw[o*es:(o+1)*es], t.raw[off*es:(off+1)*es])
		for a := r - 1; a >= 0; a-- {
			pos[a]++
			if pos[a] < shape[a] {
				break
			}
			pos[a] = 0
		}
	}
	return out, nil
}

// gather implements ONNX Gather along axis with the given (possibly negative)
// indices.
func gather(t *Tensor, indices *Tensor, axis int64) (*Tensor, error) {
	if len(t.Shape) == 0 {
		return nil, fmt.Errorf("Gather on a scalar")
	}
	ax, err := normAxis(axis, len(t.Shape))
	if err != nil {
		return nil, err
	}
	ind, err := indices.Int64s()
	if err != nil {
		return nil, err
	}
	dim := t.Shape[ax]
	for i, v := range ind {
		if v < -dim || v >= dim {
			return nil, fmt.Errorf("index %d out of range for dimension %d", v, dim)
		}
		if v < 0 {
			ind[i] = v + dim
		}
	}
	shape := append(append(append([]int64{}, t.Shape[:ax]...), indices.Shape...), t.Shape[ax+1:]...)
	if t.Len() == 0 || len(ind) == 0 {
		return newOut(t.DType, shape, t, indices)
	}
	idx := make([][]int64, len(t.Shape))
	for a, d := range t.Shape {
		if a == ax {
			idx[a] = ind
			continue
		}
		idx[a] = make([]int64, d)
		for k := range idx[a] {
			idx[a][k] = int64(k)
		}
	}
	if err := checkFoldSize(int64(len(ind))*prod(t.Shape)/max(dim, 1), t, indices); err != nil {
		return nil, err
	}
	out, err := pick(t, idx)
	if err != nil {
		return nil, err
	}
	return reshaped(out, shape)
}

// concat joins ts along axis.
func concat(ts []*Tensor, axis int64) (*Tensor, error) {
	if len(ts) == 0 {
		return nil, fmt.Errorf("Concat of nothing")
	}
	r := len(ts[0].Shape)
	ax, err := normAxis(axis, r)
	if err != nil {
		return nil, err
	}
	shape := append([]int64{}, ts[0].Shape...)
	shape[ax] = 0
	for _, t := range ts {
		if t.DType != ts[0].DType || len(t.Shape) != r {
			return nil, fmt.Errorf("Concat of %v %v and %v %v", ts[0].DType, ts[0].Shape, t.DType, t.Shape)
		}
		for a := range shape {
			if a != ax && t.Shape[a] != shape[a] {
				return nil, fmt.Errorf("Concat of shapes %v and %v along axis %d", ts[0].Shape, t.Shape, ax)
			}
		}
		shape[ax] += t.Shape[ax]
	}
	out, err := newOut(ts[0].DType, shape, ts...)
	if err != nil {
		return nil, err
	}
	outer := prod(shape[:ax])
	es := int64(ts[0].DType.Size())
	at := int64(0)
	for o := int64(0); o < outer; o++ {
		for _, t := range ts {
			chunk := prod(t.Shape[ax:]) * es
			copy(out.raw[at:at+chunk], t.raw[o*chunk:(o+1)*chunk])
			at += chunk
		}
	}
	return out, nil
}

// sliceIndices returns the indices along a dimension of size dim that ONNX Slice
// selects with start, end and step (clamped as the operator specifies).
func sliceIndices(dim, start, end, step int64) ([]int64, error) {
	if step == 0 {
		return nil, fmt.Errorf("Slice step 0")
	}
	out := make([]int64, 0, sliceLen(dim, start, end, step))
	start, end = sliceRange(dim, start, end, step)
	if step > 0 {
		for i := start; i < end; i += step {
			out = append(out, i)
			if i > math.MaxInt64-step {
				break
			}
		}
	} else {
		for i := start; i > end; i += step {
			out = append(out, i)
			if i < math.MinInt64-step {
				break
			}
		}
	}
	return out, nil
}

// sliceRange clamps Slice's start and end for a dimension of size dim as the
// operator specifies.
func sliceRange(dim, start, end, step int64) (int64, int64) {
	clamp := func(v, lo, hi int64) int64 { return min(max(v, lo), hi) }
	if start < 0 {
		start = max(start, -dim-1) + dim
	}
	if end < 0 {
		end = max(end, -dim-1) + dim
	}
	if step > 0 {
		return clamp(start, 0, dim), clamp(end, 0, dim)
	}
	return clamp(start, -1, dim-1), clamp(end, -1, dim-1)
}

// sliceLen returns how many indices Slice selects along a dimension of size dim
// (step non-zero).
func sliceLen(dim, start, end, step int64) int64 {
	start, end = sliceRange(dim, start, end, step)
	if step > 0 {
		if end <= start {
			return 0
		}
		return (end-start-1)/step + 1
	}
	if start <= end {
		return 0
	}
	neg := -step
	if neg < 0 { // step is MinInt64
		neg = math.MaxInt64
	}
	return (start-end-1)/neg + 1
}

// sliceAxes resolves Slice's starts/ends/axes/steps (axes nil: 0..n-1, steps nil:
// all 1) into per-axis (start, end, step) triples for a tensor of the given rank.
func sliceAxes(rank int, starts, ends, axes, steps []int64) (map[int][3]int64, error) {
	if len(starts) != len(ends) || (axes != nil && len(axes) != len(starts)) ||
		(steps != nil && len(steps) != len(starts)) {
		return nil, fmt.Errorf("Slice starts %v, ends %v, axes %v and steps %v differ in length",
			starts, ends, axes, steps)
	}
	m := make(map[int][3]int64)
	for i := range starts {
		a := int64(i)
		if axes != nil {
			a = axes[i]
		}
		ax, err := normAxis(a, rank)
		if err != nil {
			return nil, err
		}
		if _, dup := m[ax]; dup {
			return nil, fmt.Errorf("Slice axis %d repeated", ax)
		}
		step := int64(1)
		if steps != nil {
			step = steps[i]
		}
		if step == 0 {
			return nil, fmt.Errorf("Slice step 0")
		}
		m[ax] = [3]int64{starts[i], ends[i], step}
	}
	return m, nil
}

// slice implements ONNX Slice.
func slice(t *Tensor, starts, ends, axes, steps []int64) (*Tensor, error) {
	m, err := sliceAxes(len(t.Shape), starts, ends, axes, steps)
	if err != nil {
		return nil, err
	}
	idx := make([][]int64, len(t.Shape))
	shape := make([]int64, len(t.Shape))
	for a, d := range t.Shape {
		s, ok := m[a]
		if !ok {
			s = [3]int64{0, d, 1}
		}
		shape[a] = sliceLen(d, s[0], s[1], s[2])
		if t.Len() == 0 {
			continue
		}
		if idx[a], err = sliceIndices(d, s[0], s[1], s[2]); err != nil {
			return nil, err
		}
	}
	if t.Len() == 0 {
		return newOut(t.DType, shape, t)
	}
	return pick(t, idx)
}
