package onnx

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Protobuf wire types.
const (
	wireVarint  = 0
	wireFixed64 = 1
	wireBytes   = 2
	wireFixed32 = 5
)

var wireNames = [...]string{"varint", "fixed64", "length-delimited", "start-group", "end-group", "fixed32", "6", "7"}

var errTruncated = errors.New("truncated varint")

// field is one decoded protobuf field: v holds a varint or fixed value, data a
// length-delimited one (a sub-slice of the input).
type field struct {
	num  int
	wire int
	v    uint64
	data []byte
}

// uvarint decodes a varint at the start of b, returning it and its length.
func uvarint(b []byte) (uint64, int, error) {
	var v uint64
	for i := 0; i < len(b) && i < 10; i++ {
		c := b[i]
		if i == 9 && c > 1 {
			return 0, 0, errors.New("varint overflows 64 bits")
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return v, i + 1, nil
		}
	}
	return 0, 0, errTruncated
}

// parse calls fn for every field of the message b, in order.
func parse(b []byte, fn func(f field) error) error {
	for len(b) > 0 {
		key, n, err := uvarint(b)
		if err != nil {
			return fmt.Errorf("field key: %w", err)
		}
		b = b[n:]
		num, wire := key>>3, int(key&7)
		if num == 0 || num > math.MaxInt32 {
			return fmt.Errorf("invalid field number %d", num)
		}
		f := field{num: int(num), wire: wire}
		switch wire {
		case wireVarint:
			if f.v, n, err = uvarint(b); err != nil {
				return fmt.Errorf("field %d: %w", num, err)
			}
			b = b[n:]
		case wireFixed64:
			if len(b) < 8 {
				return fmt.Errorf("field %d: truncated fixed64", num)
			}
			f.v, b = binary.LittleEndian.Uint64(b), b[8:]
		case wireFixed32:
			if len(b) < 4 {
				return fmt.Errorf("field %d: truncated fixed32", num)
			}
			f.v, b = uint64(binary.LittleEndian.Uint32(b)), b[4:]
		case wireBytes:
			l, n, err := uvarint(b)
			if err != nil {
				return fmt.Errorf("field %d: length: %w", num, err)
			}
			b = b[n:]
			if l > uint64(len(b)) {
				return fmt.Errorf("field %d: length %d exceeds the %d bytes left", num, l, len(b))
			}
			f.data, b = b[:l], b[l:]
		default:
			return fmt.Errorf("field %d: wire type %s not supported", num, wireNames[wire])
		}
		if err := fn(f); err != nil {
			return err
		}
	}
	return nil
}

// want checks f's wire type.
func (f field) want(wire int, name string) error {
	if f.wire != wire {
		return fmt.Errorf("field %d (%s): wire type %s, want %s", f.num, name, wireNames[f.wire], wireNames[wire])
	}
	return nil
}

// str returns a length-delimited field as a string.
func (f field) str(name string) (string, error) {
	if err := f.want(wireBytes, name); err != nil {
		return "", err
	}
	return string(f.data), nil
}

// int returns a varint field as int64.
func (f field) int(name string) (int64, error) {
	if err := f.want(wireVarint, name); err != nil {
		return 0, err
	}
	return int64(f.v), nil
}

// appendVarints appends a repeated varint field, packed or not.
func appendVarints(dst []int64, f field, name string) ([]int64, error) {
	switch f.wire {
	case wireVarint:
		return append(dst, int64(f.v)), nil
	case wireBytes:
		count := 0
		for _, c := range f.data {
			if c < 0x80 {
				count++
			}
		}
		dst = growInts(dst, count)
		for b := f.data; len(b) > 0; {
			v, n, err := uvarint(b)
			if err != nil {
				return nil, fmt.Errorf("field %d (%s): %w", f.num, name, err)
			}
			dst, b = append(dst, int64(v)), b[n:]
		}
		return dst, nil
	}
	return nil, fmt.Errorf("field %d (%s): wire type %s for a repeated varint", f.num, name, wireNames[f.wire])
}

func growInts(s []int64, n int) []int64 {
	if cap(s)-len(s) < n {
		t := make([]int64, len(s), len(s)+n)
		copy(t, s)
		return t
	}
	return s
}

// appendFixed appends a repeated fixed32 (size 4) or fixed64 (size 8) field,
// packed or not, as raw little-endian bytes.
func appendFixed(dst []byte, f field, size int, name string) ([]byte, error) {
	wire := wireFixed32
	if size == 8 {
		wire = wireFixed64
	}
	switch f.wire {
	case wire:
		if size == 4 {
			return binary.LittleEndian.AppendUint32(dst, uint32(f.v)), nil
		}
		return binary.LittleEndian.AppendUint64(dst, f.v), nil
	case wireBytes:
		if len(f.data)%size != 0 {
			return nil, fmt.Errorf("field %d (%s): packed length %d is not a multiple of %d", f.num, name, len(f.data), size)
		}
		return append(dst, f.data...), nil
	}
	return nil, fmt.Errorf("field %d (%s): wire type %s for a repeated %s", f.num, name, wireNames[f.wire], wireNames[wire])
}

// encoder appends protobuf fields to b.
type encoder struct {
	b []byte
}

func (e *encoder) key(num, wire int) { e.b = binary.AppendUvarint(e.b, uint64(num)<<3|uint64(wire)) }

func (e *encoder) varint(num int, v int64) {
	e.key(num, wireVarint)
	e.b = binary.AppendUvarint(e.b, uint64(v))
}

func (e *encoder) bytes(num int, data []byte) {
	e.key(num, wireBytes)
	e.b = binary.AppendUvarint(e.b, uint64(len(data)))
	e.b = append(e.b, data...)
}

func (e *encoder) str(num int, s string) {
	e.key(num, wireBytes)
	e.b = binary.AppendUvarint(e.b, uint64(len(s)))
	e.b = append(e.b, s...)
}

// strOpt writes a string field only when it is not empty.
func (e *encoder) strOpt(num int, s string) {
	if s != "" {
		e.str(num, s)
	}
}

func (e *encoder) float(num int, f float32) {
	e.key(num, wireFixed32)
	e.b = binary.LittleEndian.AppendUint32(e.b, math.Float32bits(f))
}

func (e *encoder) packedVarints(num int, vs []int64) {
	if len(vs) == 0 {
		return
	}
	var p []byte
	for _, v := range vs {
		p = binary.AppendUvarint(p, uint64(v))
	}
	e.bytes(num, p)
}

func (e *encoder) packedFloats(num int, vs []float32) {
	if len(vs) == 0 {
		return
	}
	p := make([]byte, 0, 4*len(vs))
	for _, v := range vs {
		p = binary.LittleEndian.AppendUint32(p, math.Float32bits(v))
	}
	e.bytes(num, p)
}

// message writes a sub-message built by fill.
func (e *encoder) message(num int, fill func(*encoder)) {
	var sub encoder
	fill(&sub)
	e.bytes(num, sub.b)
}
