package graph

import (
	"encoding/binary"
	"math"
	"slices"
	"strings"
	"testing"
)

func TestNewTensorChecks(t *testing.T) {
	for _, tc := range []struct {
		dt    DType
		shape []int64
		raw   int
		want  string
	}{
		{Float32, []int64{2, 3}, 24, ""},
		{Float32, []int64{2, 3}, 20, "20 bytes of data"},
		{Float32, []int64{2, -3}, 0, "dimension 1 is -3"},
		{Int64, []int64{1 << 30, 1 << 30}, 0, "more than 2^40"},
		{String, []int64{1}, 1, "not supported"},
		{Complex64, []int64{1}, 8, "not supported"},
		{Bool, nil, 1, ""},
		{Float16, []int64{0, 5}, 0, ""},
	} {
		_, err := NewTensor("w", tc.dt, tc.shape, make([]byte, tc.raw))
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("NewTensor(%v %v, %d bytes) = %v, want %q", tc.dt, tc.shape, tc.raw, err, tc.want)
		}
	}
}

func TestFloat32sConverts(t *testing.T) {
	le := binary.LittleEndian
	want := []float32{1.5, -2, 0, 65504}
	raw64 := make([]byte, 32)
	raw16 := make([]byte, 8)
	rawBF := make([]byte, 8)
	for i, v := range want {
		le.PutUint64(raw64[8*i:], math.Float64bits(float64(v)))
		le.PutUint16(raw16[2*i:], Float32ToHalf(v))
		le.PutUint16(rawBF[2*i:], uint16(math.Float32bits(v)>>16))
	}
	for _, tc := range []struct {
		dt  DType
		raw []byte
		eps float32
	}{{Float64, raw64, 0}, {Float16, raw16, 0}, {BFloat16, rawBF, 300}} {
		x, err := NewTensor("x", tc.dt, []int64{4}, tc.raw)
		if err != nil {
			t.Fatal(err)
		}
		got, err := x.Float32s()
		if err != nil {
			t.Fatal(err)
		}
		for i := range want {
			if d := got[i] - want[i]; d > tc.eps || d < -tc.eps {
				t.Errorf("%v: got %v, want %v", tc.dt, got, want)
			}
		}
	}
	i64, _ := FromInt64s("i", []int64{1}, []int64{3})
	if _, err := i64.Float32s(); err == nil || !strings.Contains(err.Error(), `tensor "i": int64 data read as float32`) {
		t.Errorf("Float32s of int64: %v", err)
	}
}

func TestInt64sConverts(t *testing.T) {
	for _, tc := range []struct {
		dt   DType
		raw  []byte
		want []int64
	}{
		{Int8, []byte{0xff, 7}, []int64{-1, 7}},
		{Uint8, []byte{0xff, 7}, []int64{255, 7}},
		{Bool, []byte{0, 2}, []int64{0, 1}},
		{Int32, []byte{0xfe, 0xff, 0xff, 0xff, 1, 0, 0, 0}, []int64{-2, 1}},
		{Int16, []byte{0xfe, 0xff, 1, 0}, []int64{-2, 1}},
		{Uint32, []byte{0xfe, 0xff, 0xff, 0xff, 1, 0, 0, 0}, []int64{4294967294, 1}},
	} {
		x, err := NewTensor("x", tc.dt, []int64{2}, tc.raw)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := x.Int64s(); err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%v: Int64s = %v, %v, want %v", tc.dt, got, err, tc.want)
		}
	}
	big, _ := NewTensor("u", Uint64, []int64{1}, []byte{0, 0, 0, 0, 0, 0, 0, 0x80})
	if _, err := big.Int64s(); err == nil {
		t.Error("uint64 2^63 read as int64 without an error")
	}
	f, _ := FromFloat32s("f", []int64{1}, []float32{1})
	if _, err := f.Int64s(); err == nil {
		t.Error("float32 read as int64 without an error")
	}
}

// TestHalfRoundTrip checks every float16 value converts to float32 and back
// exactly, and rounding to nearest even between neighbours.
func TestHalfRoundTrip(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		f := HalfToFloat32(uint16(h))
		if f != f {
			if back := Float32ToHalf(f); back&0x7c00 != 0x7c00 || back&0x3ff == 0 {
				t.Fatalf("NaN %#04x -> %#04x", h, back)
			}
			continue
		}
		if back := Float32ToHalf(f); back != uint16(h) {
			t.Fatalf("%#04x -> %v -> %#04x", h, f, back)
		}
	}
	for _, tc := range []struct {
		f    float32
		want uint16
	}{
		{1 + 1.0/2048, 0x3c00}, // halfway between 1 and next: to even (1)
		{1 + 3.0/2048, 0x3c02}, // halfway: to even (up)
		{65520, 0x7c00},        // rounds past the largest half: infinity
		{1e-8, 0},              // below half the smallest subnormal
		{float32(math.Inf(-1)), 0xfc00},
		{5.960464477539063e-08, 0x0001}, // smallest subnormal
	} {
		if got := Float32ToHalf(tc.f); got != tc.want {
			t.Errorf("Float32ToHalf(%v) = %#04x, want %#04x", tc.f, got, tc.want)
		}
	}
}
