package torch

import (
	"fmt"
	"runtime"
	"unsafe"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// FromFloat32 copies data into a new float32 tensor of the given shape on dev.
func FromFloat32(data []float32, shape []int64, dev gotch.Device) (*ts.Tensor, error) {
	return fromData(data, shape, gotch.Float, dev)
}

// FromInt64 copies data into a new int64 tensor of the given shape on dev.
func FromInt64(data []int64, shape []int64, dev gotch.Device) (*ts.Tensor, error) {
	return fromData(data, shape, gotch.Int64, dev)
}

// fromData copies data into a new CPU tensor with one memory copy (gotch's own
// constructors inspect every element by reflection, which dominates the cost of
// the fault engine's index tensors) and moves it to dev.
func fromData[T float32 | int64](data []T, shape []int64, dtype gotch.DType, dev gotch.Device) (*ts.Tensor, error) {
	want := int64(1)
	for _, d := range shape {
		want *= d
	}
	if int64(len(data)) != want || len(data) == 0 {
		return nil, fmt.Errorf("torch: %d values for shape %v (want %d, non-empty)", len(data), shape, want)
	}
	t, err := ts.Empty(shape, dtype, gotch.CPU)
	if err != nil {
		return nil, fmt.Errorf("torch: new tensor %v: %w", shape, err)
	}
	p, err := t.DataPtr()
	if err != nil {
		_ = t.Drop()
		return nil, fmt.Errorf("torch: new tensor %v: %w", shape, err)
	}
	copy(unsafe.Slice((*T)(p), len(data)), data)
	runtime.KeepAlive(t)
	if dev == gotch.CPU {
		return t, nil
	}
	return t.To(dev, true)
}

// Float32s copies a tensor's values to a new Go slice (converting to float32 on the
// CPU first when needed; the input is left untouched).
func Float32s(t *ts.Tensor) ([]float32, error) { return hostCopy[float32](t, gotch.Float) }

// Int64s copies a tensor's values to a new Go slice as int64.
func Int64s(t *ts.Tensor) ([]int64, error) { return hostCopy[int64](t, gotch.Int64) }

// hostCopy copies t's values, as dtype (whose Go type is T), into a new slice.
func hostCopy[T float32 | int64](t *ts.Tensor, dtype gotch.DType) ([]T, error) {
	src, drop, err := hostAs(t, dtype)
	if err != nil {
		return nil, err
	}
	defer drop()
	out := make([]T, src.Numel())
	if len(out) == 0 {
		return out, nil
	}
	p, err := src.DataPtr()
	if err != nil {
		return nil, fmt.Errorf("torch: copy to host: %w", err)
	}
	copy(out, unsafe.Slice((*T)(p), len(out)))
	runtime.KeepAlive(src) // the copy read its memory through a raw pointer
	return out, nil
}

// hostAs returns a contiguous CPU tensor of dtype with t's values, and a function
// that drops it when it is a copy.
func hostAs(t *ts.Tensor, dtype gotch.DType) (*ts.Tensor, func(), error) {
	dev, err := t.Device()
	if err != nil {
		return nil, nil, fmt.Errorf("torch: device: %w", err)
	}
	contig, err := t.IsContiguous()
	if err != nil {
		return nil, nil, fmt.Errorf("torch: is contiguous: %w", err)
	}
	if dev == gotch.CPU && t.DType() == dtype && contig {
		return t, func() {}, nil
	}
	c, err := t.To(gotch.CPU, false)
	if err != nil {
		return nil, nil, fmt.Errorf("torch: to cpu: %w", err)
	}
	d, err := c.Totype(dtype, true)
	if err != nil {
		return nil, nil, fmt.Errorf("torch: to %v: %w", dtype, err)
	}
	cc, err := d.Contiguous(true)
	if err != nil {
		return nil, nil, fmt.Errorf("torch: contiguous: %w", err)
	}
	return cc, func() { _ = cc.Drop() }, nil
}

// Shape returns t's shape, wrapping gotch's error.
func Shape(t *ts.Tensor) ([]int64, error) {
	s, err := t.Size()
	if err != nil {
		return nil, fmt.Errorf("torch: size: %w", err)
	}
	return s, nil
}
