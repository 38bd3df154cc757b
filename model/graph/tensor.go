package graph

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Tensor is a constant: a weight (an initializer), a Constant node's value or a
// tensor attribute. Its data is kept as little-endian bytes in C (row-major)
// order, as ONNX's raw_data; the typed accessors convert.
type Tensor struct {
	Name  string
	DType DType
	// Shape is the tensor's dimensions; empty for a scalar.
	Shape []int64
	raw   []byte
}

// maxElems bounds the element count of a tensor's shape (2^40), so that size
// computations never overflow.
const maxElems = 1 << 40

// NumElems returns the number of elements shape describes, or an error for a
// negative dimension or an implausibly large product.
func NumElems(shape []int64) (int64, error) {
	n := int64(1)
	for i, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("dimension %d is %d", i, d)
		}
		if d != 0 && n > maxElems/d {
			return 0, fmt.Errorf("shape %v has more than 2^40 elements", shape)
		}
		n *= d
	}
	return n, nil
}

// NewTensor returns a tensor holding raw (little-endian, C order, not copied),
// checking that dtype can be held and that len(raw) matches the shape.
func NewTensor(name string, dtype DType, shape []int64, raw []byte) (*Tensor, error) {
	size := dtype.Size()
	if size == 0 {
		return nil, fmt.Errorf("tensor %q: element type %v not supported", name, dtype)
	}
	n, err := NumElems(shape)
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", name, err)
	}
	if int64(len(raw)) != n*int64(size) {
		return nil, fmt.Errorf("tensor %q: %d bytes of data for %v %v (want %d)",
			name, len(raw), dtype, shape, n*int64(size))
	}
	if raw == nil {
		raw = []byte{}
	}
	return &Tensor{Name: name, DType: dtype, Shape: append([]int64{}, shape...), raw: raw}, nil
}

// FromFloat32s returns a float32 tensor holding vals; len(vals) must match shape.
func FromFloat32s(name string, shape []int64, vals []float32) (*Tensor, error) {
	raw := make([]byte, 4*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	return NewTensor(name, Float32, shape, raw)
}

// FromInt64s returns an int64 tensor holding vals; len(vals) must match shape.
func FromInt64s(name string, shape []int64, vals []int64) (*Tensor, error) {
	raw := make([]byte, 8*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint64(raw[8*i:], uint64(v))
	}
	return NewTensor(name, Int64, shape, raw)
}

// Raw returns the tensor's data: little-endian bytes in C order. The slice is
// the tensor's own storage.
func (t *Tensor) Raw() []byte { return t.raw }

// Len returns the number of elements.
func (t *Tensor) Len() int {
	if s := t.DType.Size(); s > 0 {
		return len(t.raw) / s
	}
	return 0
}

// Clone returns a deep copy of t named name.
func (t *Tensor) Clone(name string) *Tensor {
	return &Tensor{Name: name, DType: t.DType, Shape: append([]int64{}, t.Shape...),
		raw: append([]byte{}, t.raw...)}
}

// check reports whether the tensor's data matches its type and shape.
func (t *Tensor) check() error {
	_, err := NewTensor(t.Name, t.DType, t.Shape, t.raw)
	return err
}

// Float32s returns the elements as float32, converting from float16, bfloat16 and
// float64; other element types are an error.
func (t *Tensor) Float32s() ([]float32, error) {
	n := t.Len()
	out := make([]float32, n)
	le := binary.LittleEndian
	switch t.DType {
	case Float32:
		for i := range out {
			out[i] = math.Float32frombits(le.Uint32(t.raw[4*i:]))
		}
	case Float64:
		for i := range out {
			out[i] = float32(math.Float64frombits(le.Uint64(t.raw[8*i:])))
		}
	case Float16:
		for i := range out {
			out[i] = HalfToFloat32(le.Uint16(t.raw[2*i:]))
		}
	case BFloat16:
		for i := range out {
			out[i] = math.Float32frombits(uint32(le.Uint16(t.raw[2*i:])) << 16)
		}
	default:
		return nil, fmt.Errorf("tensor %q: %v data read as float32", t.Name, t.DType)
	}
	return out, nil
}

// Int64s returns the elements as int64, converting from the other integer types
// and bool (0 or 1); floating-point types, and uint64 values above the int64
// range, are an error.
func (t *Tensor) Int64s() ([]int64, error) {
	n := t.Len()
	out := make([]int64, n)
	le := binary.LittleEndian
	for i := range out {
		switch t.DType {
		case Int64:
			out[i] = int64(le.Uint64(t.raw[8*i:]))
		case Uint64:
			u := le.Uint64(t.raw[8*i:])
			if u > math.MaxInt64 {
				return nil, fmt.Errorf("tensor %q: uint64 element %d (%d) overflows int64", t.Name, i, u)
			}
			out[i] = int64(u)
		case Int32:
			out[i] = int64(int32(le.Uint32(t.raw[4*i:])))
		case Uint32:
			out[i] = int64(le.Uint32(t.raw[4*i:]))
		case Int16:
			out[i] = int64(int16(le.Uint16(t.raw[2*i:])))
		case Uint16:
			out[i] = int64(le.Uint16(t.raw[2*i:]))
		case Int8:
			out[i] = int64(int8(t.raw[i]))
		case Uint8:
			out[i] = int64(t.raw[i])
		case Bool:
			if t.raw[i] != 0 {
				out[i] = 1
			}
		default:
			return nil, fmt.Errorf("tensor %q: %v data read as int64", t.Name, t.DType)
		}
	}
	return out, nil
}

// HalfToFloat32 converts an IEEE 754 half-precision number (its bits) to float32.
func HalfToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	frac := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // inf, nan
		return math.Float32frombits(sign | 0x7f800000 | frac<<13)
	case exp == 0:
		if frac == 0 {
			return math.Float32frombits(sign)
		}
		// subnormal: value = frac * 2^-24
		v := float32(frac) * float32(1.0/16777216.0)
		if sign != 0 {
			v = -v
		}
		return v
	}
	return math.Float32frombits(sign | (exp+112)<<23 | frac<<13)
}

// Float32ToHalf converts a float32 to IEEE 754 half precision (its bits), rounding
// to nearest even; values beyond the half range become infinities.
func Float32ToHalf(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	frac := b & 0x7fffff
	if exp == 0xff { // inf, nan
		if frac != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 { // subnormal or zero in half
		if e < -10 {
			return sign
		}
		m := frac | 0x800000
		shift := uint32(14 - e)
		half := m >> shift
		rem := m & (1<<shift - 1)
		mid := uint32(1) << (shift - 1)
		if rem > mid || (rem == mid && half&1 == 1) {
			half++
		}
		return sign | uint16(half)
	}
	half := uint32(e)<<10 | frac>>13
	rem := frac & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && half&1 == 1) {
		half++ // may carry into the exponent, which is right (up to infinity)
	}
	return sign | uint16(half)
}
