package deepvigor

import (
	"fmt"
	"math"

	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// flipErrors returns eps[..., b] = flip_b(x) - x for every bit b of 0..31 (bit 0
// the mantissa LSB, 31 the sign), as a new tensor of shape [x.shape..., 32] (the
// bit last, so that products with it stay contiguous).
// Exact semantics flips the IEEE-754 bits (0.0 stays 0.0 except for the exponent
// bits; NaN and subnormals as the hardware gives them). Reference semantics
// reproduces the reference's bit converter: a zero is encoded as 1.0, exponent 255
// decodes as a signed infinity and exponent 0 as 2^-127 * (1.m).
func flipErrors(x *ts.Tensor, sem Semantics) (*ts.Tensor, error) {
	return flipErrorsWithin(x, sem, nil)
}

// flipErrorsWithin is flipErrors with each flipped value clamped to b first
// (nil: no clamp), as a forward pass with weight clamps reads it; NaN stays NaN.
func flipErrorsWithin(x *ts.Tensor, sem Semantics, b *model.Bounds) (*ts.Tensor, error) {
	var sc torch.Scope
	defer sc.Drop()
	dev, err := x.Device()
	if err != nil {
		return nil, err
	}
	src := x
	if sem == Reference {
		zero, err := sc.KeepErr(x.Eq(ts.FloatScalar(0), false))
		if err != nil {
			return nil, err
		}
		if src, err = sc.KeepErr(x.MaskedFill(zero, ts.FloatScalar(1), false)); err != nil {
			return nil, err
		}
	} else if src, err = sc.KeepErr(x.Contiguous(false)); err != nil {
		return nil, err
	}
	shape, err := torch.Shape(src)
	if err != nil {
		return nil, err
	}
	bits, err := sc.KeepErr(src.ViewDtype(gotch.Int, false))
	if err != nil {
		return nil, err
	}
	if sem == Reference {
		if bits, err = referenceEncode(&sc, src, bits); err != nil {
			return nil, err
		}
	}
	maskShape := []int64{32}
	m := make([]int64, 32)
	for b := range m {
		m[b] = int64(int32(uint32(1) << b))
	}
	masks, err := sc.KeepErr(torch.FromInt64(m, maskShape, dev))
	if err != nil {
		return nil, err
	}
	if masks, err = sc.KeepErr(masks.Totype(gotch.Int, false)); err != nil {
		return nil, err
	}
	exp, err := sc.KeepErr(bits.Unsqueeze(int64(len(shape)), false))
	if err != nil {
		return nil, err
	}
	fb, err := sc.KeepErr(exp.BitwiseXorTensor(masks, false))
	if err != nil {
		return nil, err
	}
	flipped, err := sc.KeepErr(fb.ViewDtype(gotch.Float, false))
	if err != nil {
		return nil, err
	}
	if sem == Reference {
		if flipped, err = referenceDecode(&sc, fb, flipped); err != nil {
			return nil, err
		}
	}
	if b != nil {
		if flipped, err = sc.KeepErr(flipped.Clamp(ts.FloatScalar(float64(b.Min)), ts.FloatScalar(float64(b.Max)), false)); err != nil {
			return nil, err
		}
	}
	xs, err := sc.KeepErr(x.Unsqueeze(int64(len(shape)), false))
	if err != nil {
		return nil, err
	}
	return flipped.Sub(xs, false)
}

// referenceEncode applies the reference converter's encoding to the IEEE bits
// of src (int32, nonzero values): it takes the exponent as floor(log2|x|)
// computed in float32, which for a value a hair below a power of two rounds up
// to that power; the converter then reads the 23 bits below one position
// higher (the leading one becomes the mantissa's top bit), so the encoding
// stands for about twice the value. Other values keep their IEEE bits.
func referenceEncode(sc *torch.Scope, src, bits *ts.Tensor) (*ts.Tensor, error) {
	a, err := sc.KeepErr(src.Abs(false))
	if err != nil {
		return nil, err
	}
	if a, err = sc.KeepErr(a.Log2(false)); err != nil {
		return nil, err
	}
	if a, err = sc.KeepErr(a.Floor(false)); err != nil {
		return nil, err
	}
	field, err := sc.KeepErr(a.Totype(gotch.Int, false))
	if err != nil {
		return nil, err
	}
	if field, err = sc.KeepErr(field.AddScalar(ts.IntScalar(127), false)); err != nil {
		return nil, err
	}
	ieee, err := sc.KeepErr(bits.BitwiseRightShiftTensorScalar(ts.IntScalar(23), false))
	if err != nil {
		return nil, err
	}
	if ieee, err = sc.KeepErr(ieee.BitwiseAnd(ts.IntScalar(0xFF), false)); err != nil {
		return nil, err
	}
	up, err := sc.KeepErr(field.GtTensor(ieee, false))
	if err != nil {
		return nil, err
	}
	if any, err := anyTrue(sc, up); err != nil || !any {
		return bits, err
	}
	// field << 23 | (2^23 + m) >> 1, with the sign bit put back.
	mant, err := sc.KeepErr(bits.BitwiseAnd(ts.IntScalar(0x7FFFFF), false))
	if err != nil {
		return nil, err
	}
	if mant, err = sc.KeepErr(mant.BitwiseRightShiftTensorScalar(ts.IntScalar(1), false)); err != nil {
		return nil, err
	}
	if mant, err = sc.KeepErr(mant.BitwiseOr(ts.IntScalar(1<<22), false)); err != nil {
		return nil, err
	}
	enc, err := sc.KeepErr(field.BitwiseLeftShiftTensorScalar(ts.IntScalar(23), false))
	if err != nil {
		return nil, err
	}
	if enc, err = sc.KeepErr(enc.BitwiseOrTensor(mant, false)); err != nil {
		return nil, err
	}
	neg, err := sc.KeepErr(bits.Lt(ts.IntScalar(0), false))
	if err != nil {
		return nil, err
	}
	signed, err := sc.KeepErr(enc.AddScalar(ts.IntScalar(math.MinInt32), false))
	if err != nil {
		return nil, err
	}
	if enc, err = sc.KeepErr(signed.WhereSelf(neg, enc, false)); err != nil {
		return nil, err
	}
	return sc.KeepErr(enc.WhereSelf(up, bits, false))
}

// referenceDecode applies the reference converter's decoding of the flipped bit
// patterns fb (int32) to their float view: exponent 255 is a signed infinity
// (never NaN) and exponent 0 is 2^-127 * (1 + m / 2^23) (no subnormals).
func referenceDecode(sc *torch.Scope, fb, flipped *ts.Tensor) (*ts.Tensor, error) {
	e, err := sc.KeepErr(fb.BitwiseRightShiftTensorScalar(ts.IntScalar(23), false))
	if err != nil {
		return nil, err
	}
	if e, err = sc.KeepErr(e.BitwiseAnd(ts.IntScalar(0xFF), false)); err != nil {
		return nil, err
	}
	neg, err := sc.KeepErr(fb.Lt(ts.IntScalar(0), false))
	if err != nil {
		return nil, err
	}
	pos, err := sc.KeepErr(neg.LogicalNot(false))
	if err != nil {
		return nil, err
	}
	full, err := sc.KeepErr(e.Eq(ts.IntScalar(0xFF), false))
	if err != nil {
		return nil, err
	}
	for _, c := range []struct {
		sign *ts.Tensor
		v    float64
	}{{pos, math.Inf(1)}, {neg, math.Inf(-1)}} {
		both, err := sc.KeepErr(full.LogicalAnd(c.sign, false))
		if err != nil {
			return nil, err
		}
		if flipped, err = sc.KeepErr(flipped.MaskedFill(both, ts.FloatScalar(c.v), false)); err != nil {
			return nil, err
		}
	}
	sub, err := sc.KeepErr(e.Eq(ts.IntScalar(0), false))
	if err != nil {
		return nil, err
	}
	mant, err := sc.KeepErr(fb.BitwiseAnd(ts.IntScalar(0x7FFFFF), false))
	if err != nil {
		return nil, err
	}
	v, err := sc.KeepErr(mant.Totype(gotch.Float, false))
	if err != nil {
		return nil, err
	}
	if v, err = sc.KeepErr(v.MulScalar(ts.FloatScalar(math.Exp2(-23)), false)); err != nil {
		return nil, err
	}
	if v, err = sc.KeepErr(v.AddScalar(ts.FloatScalar(1), false)); err != nil {
		return nil, err
	}
	if v, err = sc.KeepErr(v.MulScalar(ts.FloatScalar(math.Exp2(-127)), false)); err != nil {
		return nil, err
	}
	sign, err := sc.KeepErr(neg.Totype(gotch.Float, false))
	if err != nil {
		return nil, err
	}
	// sign factor 1 - 2*neg
	if sign, err = sc.KeepErr(sign.MulScalar(ts.FloatScalar(-2), false)); err != nil {
		return nil, err
	}
	if sign, err = sc.KeepErr(sign.AddScalar(ts.FloatScalar(1), false)); err != nil {
		return nil, err
	}
	if v, err = sc.KeepErr(v.Mul(sign, false)); err != nil {
		return nil, err
	}
	return sc.KeepErr(v.WhereSelf(sub, flipped, false))
}

// histograms bins each row of delta ([R, M], float32) over the grid and returns
// one distribution per row. Entries where excluded ([R, M] or broadcastable bool,
// may be nil) is true are not fault sites and are not counted. Under Reference
// semantics NaN becomes 10000 and +-Inf become +-FLT_MAX first, as the
// reference's nan_to_num does.
func histograms(delta, excluded *ts.Tensor, g grid, bounds *ts.Tensor, sem Semantics) ([]dist, error) {
	var sc torch.Scope
	defer sc.Drop()
	shape, err := torch.Shape(delta)
	if err != nil {
		return nil, err
	}
	if len(shape) != 2 {
		return nil, fmt.Errorf("deepvigor: histogram of a %d-d tensor", len(shape))
	}
	rows, nt := shape[0], int64(len(g.t))
	dev, err := delta.Device()
	if err != nil {
		return nil, err
	}
	d := delta
	if sem == Reference {
		if d, err = sc.KeepErr(delta.NanToNum([]float64{10000}, []float64{math.MaxFloat32}, []float64{-math.MaxFloat32}, false)); err != nil {
			return nil, err
		}
	}
	b, err := sc.KeepErr(d.Bucketize(bounds, true, true, false)) // int32: faster
	if err != nil {
		return nil, err
	}
	// NaN and excluded entries get bins of their own; the masks (full passes
	// over the tensor) are applied only when there is something to mask.
	nan, err := sc.KeepErr(d.Isnan(false))
	if err != nil {
		return nil, err
	}
	anyNaN, err := anyTrue(&sc, nan)
	if err != nil {
		return nil, err
	}
	if anyNaN {
		if b, err = sc.KeepErr(b.MaskedFill(nan, ts.IntScalar(nt+1), false)); err != nil {
			return nil, err
		}
	}
	if excluded != nil {
		if b, err = sc.KeepErr(b.MaskedFill(excluded, ts.IntScalar(nt+2), false)); err != nil {
			return nil, err
		}
	}
	width := nt + 3
	if rows > 1 {
		off, err := sc.KeepErr(ts.ArangeStartStep(ts.IntScalar(0), ts.IntScalar(rows*width), ts.IntScalar(width), gotch.Int, dev))
		if err != nil {
			return nil, err
		}
		if off, err = sc.KeepErr(off.View([]int64{rows, 1}, false)); err != nil {
			return nil, err
		}
		if b, err = sc.KeepErr(b.Add(off, false)); err != nil {
			return nil, err
		}
	}
	if b, err = sc.KeepErr(b.View([]int64{-1}, false)); err != nil {
		return nil, err
	}
	counts, err := sc.KeepErr(b.Bincount(&ts.Tensor{}, rows*width, false))
	if err != nil {
		return nil, err
	}
	c, err := torch.Int64s(counts)
	if err != nil {
		return nil, err
	}
	// Exact zeros (a flip that changes nothing) are counted apart as well:
	// they are never critical, whatever the search finds.
	z, err := sc.KeepErr(d.Eq(ts.FloatScalar(0), false))
	if err != nil {
		return nil, err
	}
	if excluded != nil {
		in, err := sc.KeepErr(excluded.LogicalNot(false))
		if err != nil {
			return nil, err
		}
		if z, err = sc.KeepErr(z.LogicalAnd(in, false)); err != nil {
			return nil, err
		}
	}
	if z, err = sc.KeepErr(z.SumDimIntlist([]int64{1}, false, gotch.Int64, false)); err != nil {
		return nil, err
	}
	zs, err := torch.Int64s(z)
	if err != nil {
		return nil, err
	}
	out := make([]dist, rows)
	for r := range out {
		row := c[int64(r)*width : int64(r+1)*width]
		out[r] = dist{bins: append([]int64(nil), row[:nt+1]...), nan: row[nt+1], zeros: zs[r]}
	}
	return out, nil
}

// anyTrue reports whether a bool tensor has a true element.
func anyTrue(sc *torch.Scope, t *ts.Tensor) (bool, error) {
	a, err := sc.KeepErr(t.Any(false))
	if err != nil {
		return false, err
	}
	v, err := sc.KeepErr(a.Totype(gotch.Int64, false))
	if err != nil {
		return false, err
	}
	x, err := torch.Int64s(v)
	if err != nil {
		return false, err
	}
	return x[0] != 0, nil
}
