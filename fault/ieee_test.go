package fault

import (
	"encoding/json"
	"math"
	"testing"
)

func TestBitArithmeticAgainstHandComputedValues(t *testing.T) {
	cases := []struct {
		name string
		in   uint32 // input bit pattern
		op   func(float32) float32
		want uint32
	}{
		{"sign flip of 1.0", 0x3f800000, func(v float32) float32 { return FlipBits(v, 31) }, 0xbf800000},
		{"exponent MSB of 0.5 gives 2^127 = 1.7e38", 0x3f000000, func(v float32) float32 { return FlipBits(v, 30) }, 0x7f000000},
		{"exponent MSB of 1.0 gives +Inf", 0x3f800000, func(v float32) float32 { return FlipBits(v, 30) }, 0x7f800000},
		{"exponent MSB of 1.5 gives NaN", 0x3fc00000, func(v float32) float32 { return FlipBits(v, 30) }, 0x7fc00000},
		{"mantissa LSB of 1.0", 0x3f800000, func(v float32) float32 { return FlipBits(v, 0) }, 0x3f800001},
		{"exponent LSB of 1.0 gives 0.5", 0x3f800000, func(v float32) float32 { return FlipBits(v, 23) }, 0x3f000000},
		{"bit 0 of +0 gives the smallest subnormal", 0x00000000, func(v float32) float32 { return FlipBits(v, 0) }, 0x00000001},
		{"bit 30 of +0 gives 2.0", 0x00000000, func(v float32) float32 { return FlipBits(v, 30) }, 0x40000000},
		{"sign of +0 gives -0", 0x00000000, func(v float32) float32 { return FlipBits(v, 31) }, 0x80000000},
		{"exponent LSB of a subnormal makes it normal", 0x00000001, func(v float32) float32 { return FlipBits(v, 23) }, 0x00800001},
		{"two bits", 0x3f800000, func(v float32) float32 { return FlipBits(v, 31, 0) }, 0xbf800001},
		{"stuck-at-1 on a set bit keeps the value", 0x3f800000, func(v float32) float32 { return SetBit(v, 29, true) }, 0x3f800000},
		{"stuck-at-1 on bit 30 of 0.25", 0x3e800000, func(v float32) float32 { return SetBit(v, 30, true) }, 0x7e800000},
		{"stuck-at-0 on bit 29 of 1.0 gives 2^-64", 0x3f800000, func(v float32) float32 { return SetBit(v, 29, false) }, 0x1f800000},
	}
	for _, c := range cases {
		got := math.Float32bits(c.op(math.Float32frombits(c.in)))
		if got != c.want {
			t.Errorf("%s: 0x%08x -> 0x%08x, want 0x%08x", c.name, c.in, got, c.want)
		}
	}
	if v := FlipBits(0.5, 30); v < 1.7e38 || v > 1.71e38 {
		t.Errorf("flip of bit 30 of 0.5 = %g, want 1.7e38", v)
	}
	for _, b := range []int{0, 12, 22, 23, 30, 31} {
		v := float32(-3.75)
		if got := FlipBits(FlipBits(v, b), b); math.Float32bits(got) != math.Float32bits(v) {
			t.Errorf("double flip of bit %d changed the value", b)
		}
	}
	if BitField(31) != "sign" || BitField(30) != "exponent" || BitField(23) != "exponent" || BitField(22) != "mantissa" {
		t.Error("bit fields")
	}
}

func TestCorruptKinds(t *testing.T) {
	r := Value(float32(7.5))
	cases := []struct {
		f    Fault
		in   float32
		want uint32
	}{
		{Fault{Kind: BitFlip, Bits: []int{31}}, 2, 0xc0000000},
		{Fault{Kind: StuckAt0, Bits: []int{30, 23}}, 1, 0x3f000000 &^ (1 << 30)},
		{Fault{Kind: StuckAt1, Bits: []int{31}}, 1, 0xbf800000},
		{Fault{Kind: Zero}, -5, 0},
		{Fault{Kind: RandomValue, Value: &r}, 1, math.Float32bits(7.5)},
	}
	for _, c := range cases {
		if got := math.Float32bits(c.f.Corrupt(c.in)); got != c.want {
			t.Errorf("%s%v on %v: 0x%08x, want 0x%08x", c.f.Kind, c.f.Bits, c.in, got, c.want)
		}
	}
}

func TestValueAndBitsJSON(t *testing.T) {
	cases := []struct {
		v    float32
		json string
	}{
		{0.5, "0.5"},
		{float32(math.Inf(1)), `"+Inf"`},
		{float32(math.Inf(-1)), `"-Inf"`},
		{float32(math.NaN()), `"NaN"`},
		{math.Float32frombits(1), "1e-45"},
		{1.7014118e38, "1.7014118e+38"},
		{float32(math.Copysign(0, -1)), "-0"},
	}
	for _, c := range cases {
		b, err := json.Marshal(Value(c.v))
		if err != nil || string(b) != c.json {
			t.Errorf("marshal %v = %s, %v; want %s", c.v, b, err, c.json)
		}
		var back Value
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("unmarshal %s: %v", b, err)
		}
		if c.v == c.v && math.Float32bits(float32(back)) != math.Float32bits(c.v) {
			t.Errorf("round trip of %v gave %v", c.v, back)
		}
		if c.v != c.v && float32(back) == float32(back) {
			t.Errorf("NaN came back as %v", back)
		}
	}
	for _, bad := range []string{`"nan"`, `"1.5"`, `true`, `1e999`} {
		var v Value
		if err := json.Unmarshal([]byte(bad), &v); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
	b, _ := json.Marshal(BitsOf(0.5))
	if string(b) != `"0x3f000000"` {
		t.Errorf("bits of 0.5: %s", b)
	}
	var bits Bits
	if err := json.Unmarshal([]byte(`"0x7fc00001"`), &bits); err != nil || uint32(bits) != 0x7fc00001 {
		t.Errorf("bits: %v %x", err, uint32(bits))
	}
	for _, bad := range []string{`"0x7fc0001"`, `"7fc000011"`, `"0xzzzzzzzz"`, `5`} {
		if err := json.Unmarshal([]byte(bad), &bits); err == nil {
			t.Errorf("bits %s: no error", bad)
		}
	}
}
