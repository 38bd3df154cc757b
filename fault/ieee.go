package fault

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Float32 bit layout: bit 31 is the sign, bits 30..23 the exponent (bit 30 its most
// significant bit), bits 22..0 the mantissa. All bit arithmetic of the engine lives
// in this file.
const (
	SignBit     = 31
	ExponentMSB = 30
	ExponentLSB = 23
	MantissaMSB = 22
	Float32Bits = 32
)

// FlipBits returns v with the given bits inverted. Bits must be in 0..31 (checked
// by Fault.Validate); flipping a bit twice restores it.
func FlipBits(v float32, bits ...int) float32 {
	u := math.Float32bits(v)
	for _, b := range bits {
		u ^= 1 << uint(b)
	}
	return math.Float32frombits(u)
}

// SetBit returns v with bit b forced to one (stuck-at-1) or zero (stuck-at-0).
func SetBit(v float32, b int, one bool) float32 {
	u := math.Float32bits(v)
	if one {
		u |= 1 << uint(b)
	} else {
		u &^= 1 << uint(b)
	}
	return math.Float32frombits(u)
}

// BitField names the part of a float32 that bit b belongs to.
func BitField(b int) string {
	switch {
	case b == SignBit:
		return "sign"
	case b >= ExponentLSB:
		return "exponent"
	default:
		return "mantissa"
	}
}

// Value is a float32 that survives JSON exactly. Finite values are written as the
// shortest decimal that reads back to the same bits; NaN and the infinities, which
// JSON cannot hold as numbers, as the strings "NaN", "+Inf" and "-Inf". The bit
// pattern, recorded next to a Value where it matters, is authoritative (a NaN's
// payload is not in the string).
type Value float32

// MarshalJSON implements json.Marshaler.
func (v Value) MarshalJSON() ([]byte, error) {
	f := float32(v)
	switch {
	case f != f:
		return []byte(`"NaN"`), nil
	case math.IsInf(float64(f), 1):
		return []byte(`"+Inf"`), nil
	case math.IsInf(float64(f), -1):
		return []byte(`"-Inf"`), nil
	}
	return strconv.AppendFloat(nil, float64(f), 'g', -1, 32), nil
}

// UnmarshalJSON implements json.Unmarshaler.
func (v *Value) UnmarshalJSON(b []byte) error {
	s := string(b)
	switch s {
	case `"NaN"`:
		*v = Value(float32(math.NaN()))
		return nil
	case `"+Inf"`, `"Inf"`:
		*v = Value(float32(math.Inf(1)))
		return nil
	case `"-Inf"`:
		*v = Value(float32(math.Inf(-1)))
		return nil
	}
	if strings.HasPrefix(s, `"`) {
		return fmt.Errorf("value %s: want a number, \"NaN\", \"+Inf\" or \"-Inf\"", s)
	}
	f, err := strconv.ParseFloat(s, 32)
	if err != nil {
		return fmt.Errorf("value %s: not a float32", s)
	}
	*v = Value(float32(f))
	return nil
}

// Bits is a float32 bit pattern written in JSON as "0x" and 8 hex digits.
type Bits uint32

// MarshalJSON implements json.Marshaler.
func (b Bits) MarshalJSON() ([]byte, error) {
	return []byte(fmt.Sprintf(`"0x%08x"`, uint32(b))), nil
}

// UnmarshalJSON implements json.Unmarshaler.
func (b *Bits) UnmarshalJSON(data []byte) error {
	s := string(data)
	if len(s) != 12 || !strings.HasPrefix(s, `"0x`) || !strings.HasSuffix(s, `"`) {
		return fmt.Errorf("bit pattern %s: want \"0x\" and 8 hex digits", s)
	}
	u, err := strconv.ParseUint(s[3:11], 16, 32)
	if err != nil {
		return fmt.Errorf("bit pattern %s: %w", s, err)
	}
	*b = Bits(u)
	return nil
}

// Float returns the float32 with this bit pattern.
func (b Bits) Float() float32 { return math.Float32frombits(uint32(b)) }

// BitsOf returns the bit pattern of f.
func BitsOf(f float32) Bits { return Bits(math.Float32bits(f)) }
