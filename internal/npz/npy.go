package npz

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"gorgonia.org/tensor"
)

// ReadNpy reads one .npy array (format 1.0, 2.0 or 3.0) from r; name is used only in
// error messages. The whole of r must be the array: trailing bytes are an error.
// Element types are bool, int8-64, uint8-64, float32 and float64; big-endian data is
// converted; Fortran order is refused unless it is the same as C order (1-D); 0-d
// arrays read as scalar tensors of shape (); arrays with no elements are refused, as
// gorgonia tensors cannot be empty.
func ReadNpy(r io.Reader, name string) (*tensor.Dense, error) {
	t, err := readNpy(r, -1)
	if err != nil {
		return nil, fmt.Errorf("npz: %s: %w", name, err)
	}
	return t, nil
}

// WriteNpy writes t to w as a .npy array (format 1.0, little-endian, C order), byte for
// byte as numpy.save would. The dtypes ReadNpy reads can be written, and Go int as
// int64 (int32 on 32-bit platforms). Views and transposes are written in their logical
// order; masked and column-major tensors are refused.
func WriteNpy(w io.Writer, t *tensor.Dense) error {
	if err := writeNpy(w, t); err != nil {
		return fmt.Errorf("npz: write npy: %w", err)
	}
	return nil
}

// readHeader reads the magic, version and header dictionary. avail is the number of
// bytes r holds, or -1 if unknown. It returns the header and its length in bytes.
func readHeader(r io.Reader, avail int64) (header, int64, error) {
	var pre [12]byte
	if n, err := io.ReadFull(r, pre[:8]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return header{}, 0, fmt.Errorf("not an npy file: only %d bytes", n)
		}
		return header{}, 0, err
	}
	if string(pre[:6]) != magic {
		return header{}, 0, fmt.Errorf("not an npy file: bad magic %q (want %q)", pre[:6], magic)
	}
	major, minor := pre[6], pre[7]
	var hlen, prefix int64
	switch {
	case major == 1 && minor == 0:
		if _, err := io.ReadFull(r, pre[8:10]); err != nil {
			return header{}, 0, fmt.Errorf("truncated header length: %w", err)
		}
		hlen, prefix = int64(binary.LittleEndian.Uint16(pre[8:10])), 10
	case (major == 2 || major == 3) && minor == 0:
		if _, err := io.ReadFull(r, pre[8:12]); err != nil {
			return header{}, 0, fmt.Errorf("truncated header length: %w", err)
		}
		hlen, prefix = int64(binary.LittleEndian.Uint32(pre[8:12])), 12
	default:
		return header{}, 0, fmt.Errorf("unsupported npy format version %d.%d (want 1.0, 2.0 or 3.0)", major, minor)
	}
	if hlen > maxHeaderLen {
		return header{}, 0, fmt.Errorf("header too long: %d bytes (limit %d)", hlen, maxHeaderLen)
	}
	if avail >= 0 && prefix+hlen > avail {
		return header{}, 0, fmt.Errorf("header length %d exceeds the %d bytes available", hlen, avail-prefix)
	}
	text, err := io.ReadAll(io.LimitReader(r, hlen))
	if err != nil {
		return header{}, 0, fmt.Errorf("reading header: %w", err)
	}
	if int64(len(text)) != hlen {
		return header{}, 0, fmt.Errorf("truncated header: %d of %d bytes", len(text), hlen)
	}
	h, err := parseHeader(string(text))
	if err != nil {
		return header{}, 0, fmt.Errorf("header: %w", err)
	}
	return h, prefix + hlen, nil
}

// readNpy reads an .npy array; avail is the size of r in bytes, or -1 if unknown.
// Errors are not prefixed, so callers can say which file and entry they came from.
func readNpy(r io.Reader, avail int64) (*tensor.Dense, error) {
	h, hsize, err := readHeader(r, avail)
	if err != nil {
		return nil, err
	}
	if h.fortran && !trivialOrder(h.shape) {
		return nil, fmt.Errorf("shape %s is in Fortran order, which is not supported (save with numpy.ascontiguousarray)", formatShape(h.shape))
	}
	want := int64(h.count) * int64(h.dtype.width)
	mismatch := func(got int64, more string) error {
		return fmt.Errorf("header declares shape %s = %d elements but data has %s%d bytes (want %d)",
			formatShape(h.shape), h.count, more, got, want)
	}
	if avail >= 0 && avail-hsize != want {
		return nil, mismatch(avail-hsize, "")
	}
	if h.count == 0 {
		return nil, fmt.Errorf("shape %s has no elements; gorgonia tensors cannot be empty", formatShape(h.shape))
	}
	data, got, err := decode(r, h.dtype, h.order, h.count)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, mismatch(got, "")
		}
		return nil, fmt.Errorf("reading data: %w", err)
	}
	// Read past the end, which also makes archive/zip verify the entry's checksum.
	var extra [1]byte
	if n, err := io.ReadFull(r, extra[:]); n > 0 {
		return nil, mismatch(want, "more than ")
	} else if !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("reading data: %w", err)
	}
	return newDense(h.shape, data)
}

// trivialOrder reports whether C and Fortran order lay the shape out identically,
// which is so when at most one dimension is longer than 1.
func trivialOrder(shape []int) bool {
	long := 0
	for _, d := range shape {
		if d > 1 {
			long++
		}
	}
	return long <= 1
}

// newDense builds a tensor over data. The shape and length are already checked; the
// recover only turns a gorgonia panic on an unforeseen input into an error.
func newDense(shape []int, data any) (t *tensor.Dense, err error) {
	defer func() {
		if r := recover(); r != nil {
			t, err = nil, fmt.Errorf("gorgonia cannot hold shape %s: %v", formatShape(shape), r)
		}
	}()
	return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(data)), nil
}

// writeNpy writes t as an .npy array; errors are not prefixed.
func writeNpy(w io.Writer, t *tensor.Dense) error {
	t, d, err := prepare(t)
	if err != nil {
		return err
	}
	shape := []int(t.Shape())
	if _, err := w.Write(encodeHeader(d.descr(), shape)); err != nil {
		return err
	}
	return encode(w, t, t.Shape().TotalSize())
}

// prepare checks that t can be written and returns it in row-major order with its
// NumPy type.
func prepare(t *tensor.Dense) (*tensor.Dense, dtype, error) {
	if t == nil {
		return nil, dtype{}, errors.New("nil tensor")
	}
	if t.Dtype().Type == nil {
		return nil, dtype{}, errors.New("tensor has no dtype (zero tensor.Dense)")
	}
	d, ok := dtypeOf(t.Dtype())
	if !ok {
		return nil, dtype{}, fmt.Errorf("dtype %v is not supported (supported: float32 float64 int int8 int16 int32 int64 uint8 uint16 uint32 uint64 bool)", t.Dtype())
	}
	if t.IsMasked() {
		return nil, dtype{}, errors.New("masked tensors are not supported")
	}
	if t.IsMaterializable() {
		m, ok := t.Materialize().(*tensor.Dense)
		if !ok {
			return nil, dtype{}, fmt.Errorf("materialising a view gave %T", t.Materialize())
		}
		t = m
	}
	if t.Dims() > maxDims {
		return nil, dtype{}, fmt.Errorf("%d dimensions is more than %d", t.Dims(), maxDims)
	}
	if t.DataOrder().IsColMajor() && !trivialOrder(t.Shape()) {
		return nil, dtype{}, fmt.Errorf("column-major tensor of shape %s is not supported", formatShape(t.Shape()))
	}
	if n := t.Shape().TotalSize(); n < 1 || t.Len() < n {
		return nil, dtype{}, fmt.Errorf("tensor of shape %s holds %d elements", formatShape(t.Shape()), t.Len())
	}
	return t, d, nil
}
