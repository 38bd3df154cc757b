package npz

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"strconv"

	"gorgonia.org/tensor"
)

// dtype is one element type both NumPy and gorgonia know.
type dtype struct {
	kind  byte // NumPy kind character: 'f', 'i', 'u' or 'b'
	width int  // bytes per element
	dt    tensor.Dtype
}

// dtypes lists every supported element type.
var dtypes = []dtype{
	{'f', 4, tensor.Float32},
	{'f', 8, tensor.Float64},
	{'i', 1, tensor.Int8},
	{'i', 2, tensor.Int16},
	{'i', 4, tensor.Int32},
	{'i', 8, tensor.Int64},
	{'u', 1, tensor.Uint8},
	{'u', 2, tensor.Uint16},
	{'u', 4, tensor.Uint32},
	{'u', 8, tensor.Uint64},
	{'b', 1, tensor.Bool},
}

// descr is the little-endian NumPy descriptor NumPy itself writes ('<f4', '|u1').
func (d dtype) descr() string {
	order := "<"
	if d.width == 1 {
		order = "|"
	}
	return order + string(d.kind) + strconv.Itoa(d.width)
}

// dtypeOf finds the NumPy type for a gorgonia dtype. Go's int is written with the
// width of int on this platform (so it reads back as Int64 or Int32).
func dtypeOf(dt tensor.Dtype) (dtype, bool) {
	if dt == tensor.Int {
		dt = tensor.Int64
		if strconv.IntSize == 32 {
			dt = tensor.Int32
		}
	}
	for _, d := range dtypes {
		if d.dt == dt {
			return d, true
		}
	}
	return dtype{}, false
}

// parseDescr decodes a simple NumPy descriptor such as '<f4' or '>i8' into the
// element type and the byte order of the data.
func parseDescr(s string) (dtype, binary.ByteOrder, error) {
	if len(s) < 3 || len(s) > 4 {
		return dtype{}, nil, fmt.Errorf("unsupported dtype %q", s)
	}
	width, err := strconv.Atoi(s[2:])
	if err != nil {
		return dtype{}, nil, fmt.Errorf("unsupported dtype %q", s)
	}
	var found *dtype
	for i := range dtypes {
		if dtypes[i].kind == s[1] && dtypes[i].width == width {
			found = &dtypes[i]
		}
	}
	if found == nil {
		return dtype{}, nil, fmt.Errorf("unsupported dtype %q (supported: f4 f8 i1 i2 i4 i8 u1 u2 u4 u8 b1)", s)
	}
	switch {
	case width == 1 && (s[0] == '|' || s[0] == '<' || s[0] == '>' || s[0] == '='):
		return *found, binary.LittleEndian, nil
	case s[0] == '<':
		return *found, binary.LittleEndian, nil
	case s[0] == '>':
		return *found, binary.BigEndian, nil
	case s[0] == '=':
		return dtype{}, nil, fmt.Errorf("dtype %q has native byte order, which a file cannot declare", s)
	default:
		return dtype{}, nil, fmt.Errorf("unsupported dtype %q: bad byte order %q", s, s[0])
	}
}

// chunkBytes is how much data is decoded or encoded per read or write call.
const chunkBytes = 1 << 16

// readElems reads n elements of width bytes each, decoding every one with dec. The
// result grows only as data arrives, so a header that lies about its shape cannot make
// it allocate more than the data it actually has. It returns the elements and, on a
// short read, the number of bytes that were there.
func readElems[T any](r io.Reader, n, width int, dec func([]byte) T) ([]T, int64, error) {
	per := chunkBytes / width
	buf := make([]byte, min(n, per)*width)
	out := make([]T, 0, min(n, per))
	for len(out) < n {
		k := min(n-len(out), per)
		if len(out)+k > cap(out) {
			grown := make([]T, len(out), min(n, max(2*cap(out), len(out)+k)))
			copy(grown, out)
			out = grown
		}
		m, err := io.ReadFull(r, buf[:k*width])
		for i := 0; i+width <= m; i += width {
			out = append(out, dec(buf[i:i+width]))
		}
		if err != nil {
			return nil, int64(len(out))*int64(width) + int64(m%width), err
		}
	}
	return out, int64(n) * int64(width), nil
}

// decode reads n elements of type d stored in byte order o and returns them as the
// backing slice of a tensor.
func decode(r io.Reader, d dtype, o binary.ByteOrder, n int) (any, int64, error) {
	switch d.dt {
	case tensor.Float32:
		return wrap(readElems(r, n, 4, func(b []byte) float32 { return math.Float32frombits(o.Uint32(b)) }))
	case tensor.Float64:
		return wrap(readElems(r, n, 8, func(b []byte) float64 { return math.Float64frombits(o.Uint64(b)) }))
	case tensor.Int8:
		return wrap(readElems(r, n, 1, func(b []byte) int8 { return int8(b[0]) }))
	case tensor.Int16:
		return wrap(readElems(r, n, 2, func(b []byte) int16 { return int16(o.Uint16(b)) }))
	case tensor.Int32:
		return wrap(readElems(r, n, 4, func(b []byte) int32 { return int32(o.Uint32(b)) }))
	case tensor.Int64:
		return wrap(readElems(r, n, 8, func(b []byte) int64 { return int64(o.Uint64(b)) }))
	case tensor.Uint8:
		return wrap(readElems(r, n, 1, func(b []byte) uint8 { return b[0] }))
	case tensor.Uint16:
		return wrap(readElems(r, n, 2, o.Uint16))
	case tensor.Uint32:
		return wrap(readElems(r, n, 4, o.Uint32))
	case tensor.Uint64:
		return wrap(readElems(r, n, 8, o.Uint64))
	case tensor.Bool:
		return wrap(readElems(r, n, 1, func(b []byte) bool { return b[0] != 0 }))
	}
	return nil, 0, fmt.Errorf("internal error: no decoder for %v", d.dt)
}

// wrap turns a typed readElems result into an untyped one.
func wrap[T any](xs []T, got int64, err error) (any, int64, error) {
	if err != nil {
		return nil, got, err
	}
	return xs, got, nil
}

// writeElems encodes xs little-endian, width bytes per element, in chunks.
func writeElems[T any](w io.Writer, xs []T, width int, enc func([]byte, T)) error {
	per := chunkBytes / width
	buf := make([]byte, min(len(xs), per)*width)
	for len(xs) > 0 {
		k := min(len(xs), per)
		for i, x := range xs[:k] {
			enc(buf[i*width:], x)
		}
		if _, err := w.Write(buf[:k*width]); err != nil {
			return err
		}
		xs = xs[k:]
	}
	return nil
}

// encode writes the first n elements of the row-major, non-view tensor t.
func encode(w io.Writer, t *tensor.Dense, n int) error {
	le := binary.LittleEndian
	switch t.Dtype() {
	case tensor.Float32:
		return writeElems(w, t.Float32s()[:n], 4, func(b []byte, v float32) { le.PutUint32(b, math.Float32bits(v)) })
	case tensor.Float64:
		return writeElems(w, t.Float64s()[:n], 8, func(b []byte, v float64) { le.PutUint64(b, math.Float64bits(v)) })
	case tensor.Int:
		if strconv.IntSize == 32 {
			return writeElems(w, t.Ints()[:n], 4, func(b []byte, v int) { le.PutUint32(b, uint32(v)) })
		}
		return writeElems(w, t.Ints()[:n], 8, func(b []byte, v int) { le.PutUint64(b, uint64(v)) })
	case tensor.Int8:
		return writeElems(w, t.Int8s()[:n], 1, func(b []byte, v int8) { b[0] = byte(v) })
	case tensor.Int16:
		return writeElems(w, t.Int16s()[:n], 2, func(b []byte, v int16) { le.PutUint16(b, uint16(v)) })
	case tensor.Int32:
		return writeElems(w, t.Int32s()[:n], 4, func(b []byte, v int32) { le.PutUint32(b, uint32(v)) })
	case tensor.Int64:
		return writeElems(w, t.Int64s()[:n], 8, func(b []byte, v int64) { le.PutUint64(b, uint64(v)) })
	case tensor.Uint8:
		return writeElems(w, t.Uint8s()[:n], 1, func(b []byte, v uint8) { b[0] = v })
	case tensor.Uint16:
		return writeElems(w, t.Uint16s()[:n], 2, le.PutUint16)
	case tensor.Uint32:
		return writeElems(w, t.Uint32s()[:n], 4, le.PutUint32)
	case tensor.Uint64:
		return writeElems(w, t.Uint64s()[:n], 8, le.PutUint64)
	case tensor.Bool:
		return writeElems(w, t.Bools()[:n], 1, func(b []byte, v bool) {
			b[0] = 0
			if v {
				b[0] = 1
			}
		})
	}
	return fmt.Errorf("dtype %v is not supported", t.Dtype())
}
