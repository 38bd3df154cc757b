package graph

import (
	"encoding/binary"
	"fmt"
	"math"
)

// nums is a tensor's elements in a form arithmetic can work on: float64 for the
// floating-point types, int64 for the integer types and bool.
type nums struct {
	float bool
	f     []float64
	i     []int64
}

// toNums converts t's elements.
func toNums(t *Tensor) (nums, error) {
	if t.DType == Float64 {
		f := make([]float64, t.Len())
		for k := range f {
			f[k] = math.Float64frombits(binary.LittleEndian.Uint64(t.raw[8*k:]))
		}
		return nums{float: true, f: f}, nil
	}
	if t.DType.IsFloat() {
		f32, err := t.Float32s()
		if err != nil {
			return nums{}, err
		}
		f := make([]float64, len(f32))
		for k, v := range f32 {
			f[k] = float64(v)
		}
		return nums{float: true, f: f}, nil
	}
	i, err := t.Int64s()
	if err != nil {
		return nums{}, errNoFold
	}
	return nums{i: i}, nil
}

// at returns element k as float64 and as int64.
func (n nums) at(k int) (float64, int64) {
	if n.float {
		return n.f[k], int64(n.f[k])
	}
	return float64(n.i[k]), n.i[k]
}

// fromNums encodes values as a tensor of dtype dt, converting as a C cast does
// (floats to integers truncate toward zero, integers wrap, bool is v != 0).
func fromNums(dt DType, shape []int64, n nums) (*Tensor, error) {
	count := len(n.i)
	if n.float {
		count = len(n.f)
	}
	size := dt.Size()
	if size == 0 || dt == Uint64 && n.float {
		return nil, errNoFold
	}
	raw := make([]byte, count*size)
	le := binary.LittleEndian
	for k := 0; k < count; k++ {
		f, i := n.at(k)
		if n.float && !dt.IsFloat() && (f != f || math.Abs(f) >= 1<<63) {
			i = 0 // out of range or NaN: undefined in C; 0 here
		}
		switch dt {
		case Float32:
			le.PutUint32(raw[4*k:], math.Float32bits(float32(f)))
		case Float64:
			le.PutUint64(raw[8*k:], math.Float64bits(f))
		case Float16:
			le.PutUint16(raw[2*k:], Float32ToHalf(float32(f)))
		case BFloat16:
			b := math.Float32bits(float32(f))
			b += 0x7fff + (b>>16)&1 // round to nearest even
			le.PutUint16(raw[2*k:], uint16(b>>16))
		case Int64, Uint64:
			le.PutUint64(raw[8*k:], uint64(i))
		case Int32, Uint32:
			le.PutUint32(raw[4*k:], uint32(i))
		case Int16, Uint16:
			le.PutUint16(raw[2*k:], uint16(i))
		case Int8, Uint8:
			raw[k] = byte(i)
		case Bool:
			if (n.float && f != 0) || (!n.float && i != 0) {
				raw[k] = 1
			}
		default:
			return nil, errNoFold
		}
	}
	return NewTensor("", dt, shape, raw)
}

// broadcastShape returns the numpy-style broadcast of shapes.
func broadcastShape(shapes ...[]int64) ([]int64, error) {
	r := 0
	for _, s := range shapes {
		r = max(r, len(s))
	}
	out := make([]int64, r)
	for i := range out {
		out[i] = 1
	}
	for _, s := range shapes {
		for i, d := range s {
			j := r - len(s) + i
			switch {
			case d == out[j] || d == 1:
			case out[j] == 1:
				out[j] = d
			default:
				return nil, fmt.Errorf("shapes %v do not broadcast", shapes)
			}
		}
	}
	return out, nil
}

// broadcastIndex returns, for every element of shape out, the index of the
// element of a tensor of shape in that broadcasting maps to it.
func broadcastIndex(out, in []int64) []int64 {
	n := prod(out)
	idx := make([]int64, n)
	st := strides(in)
	off := len(out) - len(in)
	pos := make([]int64, len(out))
	for k := int64(0); k < n; k++ {
		x := int64(0)
		for a := off; a < len(out); a++ {
			if in[a-off] != 1 {
				x += pos[a] * st[a-off]
			}
		}
		idx[k] = x
		for a := len(out) - 1; a >= 0; a-- {
			pos[a]++
			if pos[a] < out[a] {
				break
			}
			pos[a] = 0
		}
	}
	return idx
}

// elementwise evaluates the elementwise op ("Add", "Sub", "Mul", "Div", "Equal") with
// broadcasting.
func elementwise(op string, a, b *Tensor) (*Tensor, error) {
	if a.DType != b.DType {
		return nil, fmt.Errorf("%s of %v and %v", op, a.DType, b.DType)
	}
	shape, err := broadcastShape(a.Shape, b.Shape)
	if err != nil {
		return nil, err
	}
	n, err := NumElems(shape)
	if err != nil {
		return nil, err
	}
	if err := checkFoldSize(n, a, b); err != nil {
		return nil, err
	}
	x, err := toNums(a)
	if err != nil {
		return nil, err
	}
	y, err := toNums(b)
	if err != nil {
		return nil, err
	}
	ia, ib := broadcastIndex(shape, a.Shape), broadcastIndex(shape, b.Shape)
	res := nums{float: x.float && op != "Equal"}
	if res.float {
		res.f = make([]float64, n)
	} else {
		res.i = make([]int64, n)
	}
	for k := range ia {
		xf, xi := x.at(int(ia[k]))
		yf, yi := y.at(int(ib[k]))
		if op == "Equal" {
			if (x.float && xf == yf) || (!x.float && xi == yi) {
				res.i[k] = 1
			}
			continue
		}
		if x.float {
			switch op {
			case "Add":
				res.f[k] = xf + yf
			case "Sub":
				res.f[k] = xf - yf
			case "Mul":
				res.f[k] = xf * yf
			case "Div":
				res.f[k] = xf / yf
			}
			continue
		}
		switch op {
		case "Add":
			res.i[k] = xi + yi
		case "Sub":
			res.i[k] = xi - yi
		case "Mul":
			res.i[k] = xi * yi
		case "Div":
			if yi == 0 {
				return nil, fmt.Errorf("integer division by zero")
			}
			if yi == -1 {
				res.i[k] = -xi // MinInt64 / -1 wraps, as in C on two's complement
			} else {
				res.i[k] = xi / yi
			}
		}
	}
	if op == "Equal" {
		return fromNums(Bool, shape, res)
	}
	return fromNums(a.DType, shape, res)
}

// where implements ONNX Where(cond, x, y) with broadcasting.
func where(cond, x, y *Tensor) (*Tensor, error) {
	if x.DType != y.DType {
		return nil, fmt.Errorf("Where of %v and %v", x.DType, y.DType)
	}
	c, err := cond.Int64s()
	if err != nil {
		return nil, err
	}
	shape, err := broadcastShape(cond.Shape, x.Shape, y.Shape)
	if err != nil {
		return nil, err
	}
	out, err := newOut(x.DType, shape, cond, x, y)
	if err != nil {
		return nil, err
	}
	ic, ix, iy := broadcastIndex(shape, cond.Shape), broadcastIndex(shape, x.Shape), broadcastIndex(shape, y.Shape)
	es := int64(x.DType.Size())
	for k := range ic {
		src, at := y, iy[k]
		if c[ic[k]] != 0 {
			src, at = x, ix[k]
		}
		copy(out.raw[int64(k)*es:(int64(k)+1)*es], src.raw[at*es:(at+1)*es])
	}
	return out, nil
}

// cast converts t to dt.
func cast(t *Tensor, dt DType) (*Tensor, error) {
	if t.DType == dt {
		return t, nil
	}
	n, err := toNums(t)
	if err != nil {
		return nil, err
	}
	return fromNums(dt, t.Shape, n)
}

// rangeOp implements ONNX Range(start, limit, delta) on scalars.
func rangeOp(start, limit, delta *Tensor) (*Tensor, error) {
	if start.Len() != 1 || limit.Len() != 1 || delta.Len() != 1 || start.DType != limit.DType ||
		start.DType != delta.DType {
		return nil, fmt.Errorf("Range needs three scalars of one type")
	}
	s, _ := toNums(start)
	l, _ := toNums(limit)
	d, err := toNums(delta)
	if err != nil {
		return nil, err
	}
	sf, si := s.at(0)
	lf, li := l.at(0)
	df, di := d.at(0)
	var count float64
	if s.float {
		count = math.Ceil((lf - sf) / df)
	} else {
		if di == 0 {
			return nil, fmt.Errorf("Range delta 0")
		}
		count = math.Ceil((float64(li) - float64(si)) / float64(di))
	}
	if count != count || count < 0 {
		count = 0
	}
	if count > maxFoldElems {
		return nil, fmt.Errorf("Range of %g elements (limit %d)", count, maxFoldElems)
	}
	res := nums{float: s.float}
	for k := 0; k < int(count); k++ {
		if s.float {
			res.f = append(res.f, sf+float64(k)*df)
		} else {
			res.i = append(res.i, si+int64(k)*di)
		}
	}
	return fromNums(start.DType, []int64{int64(count)}, res)
}

// constantOfShape implements ONNX ConstantOfShape: value (one element, float32 0
// when nil) repeated over shape.
func constantOfShape(shape *Tensor, value *Tensor) (*Tensor, error) {
	dims, err := shape.Int64s()
	if err != nil {
		return nil, err
	}
	if len(shape.Shape) != 1 {
		return nil, fmt.Errorf("ConstantOfShape shape of rank %d", len(shape.Shape))
	}
	if value == nil {
		value = &Tensor{DType: Float32, Shape: []int64{1}, raw: make([]byte, 4)}
	}
	if value.Len() != 1 {
		return nil, fmt.Errorf("ConstantOfShape value has %d elements", value.Len())
	}
	out, err := newOut(value.DType, dims, shape)
	if err != nil {
		return nil, err
	}
	es := len(value.raw)
	for k := 0; k < out.Len(); k++ {
		copy(out.raw[k*es:], value.raw)
	}
	return out, nil
}
