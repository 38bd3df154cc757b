package onnx

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/faultline/faultline/model/graph"
)

// buildTensor assembles a tensor from a TensorProto's fields: raw_data when
// present, else the typed field its data type uses (float_data, double_data, or
// the varint fields int32_data/int64_data/uint64_data, collected in ints).
func buildTensor(name string, dims []int64, dtype int64, raw []byte, hasRaw bool,
	fixed []byte, ints []int64, hasStr bool) (*graph.Tensor, error) {
	if dtype < 0 || dtype > math.MaxInt32 {
		return nil, fmt.Errorf("data_type %d", dtype)
	}
	dt := graph.DType(dtype)
	size := dt.Size()
	switch {
	case dt == graph.String || hasStr:
		return nil, errors.New("string tensors not supported")
	case dt == graph.Undefined:
		return nil, errors.New("no data_type")
	case size == 0:
		return nil, fmt.Errorf("data type %v not supported", dt)
	}
	n, err := graph.NumElems(dims)
	if err != nil {
		return nil, fmt.Errorf("dims: %w", err)
	}
	count := func(have int) error {
		if int64(have) != n {
			return fmt.Errorf("%d values of %v for dims %v (%d elements)", have, dt, dims, n)
		}
		return nil
	}
	var data []byte
	switch {
	case hasRaw:
		if int64(len(raw)) != n*int64(size) {
			return nil, fmt.Errorf("raw_data of %d bytes for %v %v (want %d)", len(raw), dt, dims, n*int64(size))
		}
		data = append([]byte{}, raw...)
	case fixed != nil:
		if dt != graph.Float32 && dt != graph.Float64 {
			return nil, fmt.Errorf("float_data or double_data for a %v tensor", dt)
		}
		if err := count(len(fixed) / size); err != nil {
			return nil, err
		}
		data = append([]byte{}, fixed...)
	case ints != nil:
		if err := count(len(ints)); err != nil {
			return nil, err
		}
		if data, err = packInts(dt, ints); err != nil {
			return nil, err
		}
	default:
		if err := count(0); err != nil {
			return nil, err
		}
	}
	return graph.NewTensor(name, dt, dims, data)
}

// packInts encodes the values of int32_data (int8-32, uint8-16, bool, float16
// and bfloat16 bits), int64_data or uint64_data (uint32, uint64) as dt's bytes.
func packInts(dt graph.DType, ints []int64) ([]byte, error) {
	size := dt.Size()
	if dt.IsFloat() && size != 2 {
		return nil, fmt.Errorf("integer data for a %v tensor", dt)
	}
	data := make([]byte, len(ints)*size)
	for i, v := range ints {
		switch size {
		case 1:
			data[i] = byte(v)
		case 2:
			binary.LittleEndian.PutUint16(data[2*i:], uint16(v))
		case 4:
			binary.LittleEndian.PutUint32(data[4*i:], uint32(v))
		case 8:
			binary.LittleEndian.PutUint64(data[8*i:], uint64(v))
		}
	}
	return data, nil
}

// encodeTensor writes a TensorProto: dims, data_type, name and raw_data.
func encodeTensor(e *encoder, t *graph.Tensor) {
	e.packedVarints(tensorDims, t.Shape)
	e.varint(tensorDataType, int64(t.DType))
	e.strOpt(tensorName, t.Name)
	e.bytes(tensorRawData, t.Raw())
}
