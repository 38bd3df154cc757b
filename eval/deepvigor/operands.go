package deepvigor

import (
	"fmt"
	"math"

	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// operands holds a layer's MAC input operands per output position: cols[l, b, f]
// is operand f (input channel, kernel row, kernel column, row-major) of output
// position l on image b; excluded[l, 0, f] marks zero-padding operands, which
// Exact semantics does not count as fault sites (nil when none are excluded).
type operands struct {
	cols     *ts.Tensor
	excluded *ts.Tensor
	sem      Semantics
	groups   int64
	outPerG  int64 // output channels per group
	f        int64 // operands per neuron (per group)
	images   int64
	// wb is the layer's weight clamps (model.SetWeightClamps): a flipped
	// weight acts as its clamped value.
	wb *model.Bounds
}

// elementsPerChunk bounds the error tensors built at once (32 bits x positions x
// images x operands).
const elementsPerChunk = 16 << 20

// newOperands unfolds the layer input in ([B, Cin, H, W] or [B, In]).
func newOperands(sc *torch.Scope, s model.Site, in *ts.Tensor, sem Semantics) (*operands, error) {
	shape, err := torch.Shape(in)
	if err != nil {
		return nil, err
	}
	b := shape[0]
	o := &operands{sem: sem, groups: 1, outPerG: s.WeightShape[0], images: b}
	if s.Kind == model.Linear {
		o.f = shape[1]
		o.cols, err = sc.KeepErr(in.View([]int64{1, b, o.f}, false))
		return o, err
	}
	if len(s.WeightShape) != 4 || s.WeightShape[2] != s.WeightShape[3] {
		return nil, fmt.Errorf("weight shape %v: want a square conv kernel", s.WeightShape)
	}
	k, st, pad := s.WeightShape[2], s.Stride, s.Padding
	if st < 1 {
		st = 1
	}
	if s.Groups > 1 {
		o.groups = s.Groups
		o.outPerG = s.WeightShape[0] / s.Groups
	}
	cin := shape[1]
	o.f = (cin / o.groups) * k * k
	unfold := func(x *ts.Tensor) (*ts.Tensor, error) {
		p, err := sc.KeepErr(x.ConstantPadNdWithVal([]int64{pad, pad, pad, pad}, ts.FloatScalar(0), false))
		if err != nil {
			return nil, err
		}
		u, err := sc.KeepErr(p.Unfold(2, k, st, false))
		if err != nil {
			return nil, err
		}
		if u, err = sc.KeepErr(u.Unfold(3, k, st, false)); err != nil {
			return nil, err
		}
		// [N, Cin, Ho, Wo, k, k] -> [Ho*Wo, N, Cin*k*k]
		if u, err = sc.KeepErr(u.Permute([]int64{2, 3, 0, 1, 4, 5}, false)); err != nil {
			return nil, err
		}
		n := int64(1)
		if sh, err := torch.Shape(x); err == nil {
			n = sh[0]
		}
		return sc.KeepErr(u.Reshape([]int64{-1, n, cin * k * k}, false))
	}
	if o.cols, err = unfold(in); err != nil {
		return nil, err
	}
	if sem == Exact && pad > 0 {
		one, err := sc.KeepErr(ts.Ones([]int64{1, cin, shape[2], shape[3]}, gotch.Float, in.MustDevice()))
		if err != nil {
			return nil, err
		}
		u, err := unfold(one)
		if err != nil {
			return nil, err
		}
		if o.excluded, err = sc.KeepErr(u.Eq(ts.FloatScalar(0), false)); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// slice returns the operand columns of positions pos for output channel c's
// group: [len(pos), B, f] (and the matching excluded mask [len(pos), 1, f]).
func (o *operands) slice(sc *torch.Scope, c int, pos []int) (x, ex *ts.Tensor, err error) {
	idx := make([]int64, len(pos))
	for i, p := range pos {
		idx[i] = int64(p)
	}
	it, err := sc.KeepErr(torch.FromInt64(idx, []int64{int64(len(idx))}, o.cols.MustDevice()))
	if err != nil {
		return nil, nil, err
	}
	g := int64(c) / o.outPerG
	if x, err = sc.KeepErr(o.cols.IndexSelect(0, it, false)); err != nil {
		return nil, nil, err
	}
	if o.groups > 1 {
		if x, err = sc.KeepErr(x.Narrow(2, g*o.f, o.f, false)); err != nil {
			return nil, nil, err
		}
	}
	if o.excluded != nil {
		if ex, err = sc.KeepErr(o.excluded.IndexSelect(0, it, false)); err != nil {
			return nil, nil, err
		}
		if o.groups > 1 {
			if ex, err = sc.KeepErr(ex.Narrow(2, g*o.f, o.f, false)); err != nil {
				return nil, nil, err
			}
		}
	}
	return x, ex, nil
}

// filter returns channel c's weights flattened to [f].
func (o *operands) filter(sc *torch.Scope, w *ts.Tensor, c int) (*ts.Tensor, error) {
	r, err := sc.KeepErr(w.Narrow(0, int64(c), 1, false))
	if err != nil {
		return nil, err
	}
	return sc.KeepErr(r.Reshape([]int64{o.f}, false))
}

// activationDists builds the error distribution of each neuron (c, p), p in pos:
// every bit of every MAC input operand flipped, on every image, times the
// operand's weight.
func (o *operands) activationDists(w *ts.Tensor, c int, pos []int, g grid, bounds *ts.Tensor) ([]dist, error) {
	per := 32 * o.images * o.f
	chunk := max(1, int(elementsPerChunk/per))
	var out []dist
	for lo := 0; lo < len(pos); lo += chunk {
		ds, err := o.activationChunk(w, c, pos[lo:min(len(pos), lo+chunk)], g, bounds)
		if err != nil {
			return nil, err
		}
		out = append(out, ds...)
	}
	return out, nil
}

func (o *operands) activationChunk(w *ts.Tensor, c int, pos []int, g grid, bounds *ts.Tensor) ([]dist, error) {
	var sc torch.Scope
	defer sc.Drop()
	x, ex, err := o.slice(&sc, c, pos)
	if err != nil {
		return nil, err
	}
	wc, err := o.filter(&sc, w, c)
	if err != nil {
		return nil, err
	}
	eps, err := sc.KeepErr(flipErrors(x, o.sem)) // [P, B, f, 32]
	if err != nil {
		return nil, err
	}
	if wc, err = sc.KeepErr(wc.View([]int64{o.f, 1}, false)); err != nil {
		return nil, err
	}
	d, err := sc.KeepErr(eps.Mul(wc, false))
	if err != nil {
		return nil, err
	}
	n := int64(len(pos))
	if d, err = sc.KeepErr(d.View([]int64{n, -1}, false)); err != nil {
		return nil, err
	}
	var exr *ts.Tensor
	if ex != nil { // [P, 1, f] -> [P, B, f, 32]
		if exr, err = sc.KeepErr(ex.Unsqueeze(3, false)); err != nil {
			return nil, err
		}
		if exr, err = sc.KeepErr(exr.Expand([]int64{n, o.images, o.f, 32}, false, false)); err != nil {
			return nil, err
		}
		if exr, err = sc.KeepErr(exr.Reshape([]int64{n, -1}, false)); err != nil {
			return nil, err
		}
	}
	return histograms(d, exr, g, bounds, o.sem)
}

// weightDist builds filter c's error distribution: every bit of every weight of
// the filter flipped, on every image. Per position (the paper's and the
// reference's model), each fault gives one error per listed output position,
// its flipped weight times that position's operand, all pooled. Per fault, each
// (weight, bit, image) gives one error: the largest in magnitude over all the
// channel's positions (pos is then ignored), because one weight fault hits
// every position at once and the strongest of them decides.
func (o *operands) weightDist(w *ts.Tensor, c int, pos []int, g grid, bounds *ts.Tensor, perFault bool) (*dist, error) {
	per := 32 * o.images * o.f
	chunk := max(1, int(elementsPerChunk/per))
	if perFault {
		return o.faultDist(w, c, chunk, g, bounds)
	}
	total := &dist{}
	for lo := 0; lo < len(pos); lo += chunk {
		var d *dist
		err := o.weightErrors(w, c, pos[lo:min(len(pos), lo+chunk)], func(sc *torch.Scope, d4 *ts.Tensor) error {
			flat, err := sc.KeepErr(d4.View([]int64{1, -1}, false))
			if err != nil {
				return err
			}
			ds, err := histograms(flat, nil, g, bounds, o.sem)
			if err == nil {
				d = &ds[0]
			}
			return err
		})
		if err != nil {
			return nil, err
		}
		total.add(d)
	}
	return total, nil
}

// faultDist is weightDist per fault: the signed largest-magnitude error over
// every output position (a NaN at any position wins), then one histogram.
func (o *operands) faultDist(w *ts.Tensor, c int, chunk int, g grid, bounds *ts.Tensor) (*dist, error) {
	var keep torch.Scope
	defer keep.Drop()
	shape, err := torch.Shape(o.cols)
	if err != nil {
		return nil, err
	}
	all := iota(int(shape[0]))
	var cur *ts.Tensor // [1, B, f, 32]
	for lo := 0; lo < len(all); lo += chunk {
		err := o.weightErrors(w, c, all[lo:min(len(all), lo+chunk)], func(sc *torch.Scope, d4 *ts.Tensor) error {
			m, err := signedMaxAbs(sc, d4)
			if err != nil {
				return err
			}
			if cur != nil {
				both, err := sc.KeepErr(ts.Cat([]*ts.Tensor{cur, m}, 0))
				if err != nil {
					return err
				}
				if m, err = signedMaxAbs(sc, both); err != nil {
					return err
				}
			}
			cur, err = keep.KeepErr(m.DetachCopy(false))
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	flat, err := keep.KeepErr(cur.View([]int64{1, -1}, false))
	if err != nil {
		return nil, err
	}
	ds, err := histograms(flat, nil, g, bounds, o.sem)
	if err != nil {
		return nil, err
	}
	return &ds[0], nil
}

// signedMaxAbs reduces dimension 0 to the element of largest magnitude (NaN
// counting as largest), keeping its sign: [P, ...] -> [1, ...].
func signedMaxAbs(sc *torch.Scope, d *ts.Tensor) (*ts.Tensor, error) {
	a, err := sc.KeepErr(d.Abs(false))
	if err != nil {
		return nil, err
	}
	idx, err := sc.KeepErr(a.Argmax([]int64{0}, true, false))
	if err != nil {
		return nil, err
	}
	return sc.KeepErr(d.Gather(0, idx, false, false))
}

// weightErrors computes the errors [P, B, f, 32] of filter c's flipped weights
// at positions pos and passes them to use (valid only during the call).
func (o *operands) weightErrors(w *ts.Tensor, c int, pos []int, use func(*torch.Scope, *ts.Tensor) error) error {
	var sc torch.Scope
	defer sc.Drop()
	x, _, err := o.slice(&sc, c, pos) // [P, B, f]
	if err != nil {
		return err
	}
	wc, err := o.filter(&sc, w, c)
	if err != nil {
		return err
	}
	eps, err := sc.KeepErr(flipErrorsWithin(wc, o.sem, o.wb)) // [f, 32]
	if err != nil {
		return err
	}
	xs, err := sc.KeepErr(x.Unsqueeze(3, false)) // [P, B, f, 1]
	if err != nil {
		return err
	}
	d, err := sc.KeepErr(xs.Mul(eps, false)) // [P, B, f, 32]
	if err != nil {
		return err
	}
	return use(&sc, d)
}

// sensitivity is the variable the Exact sampling stratifies a layer's channels
// on: the runner's per-channel gradient sensitivity times the mean absolute
// weight of each channel's filter w (whose first dimension is the channel).
func sensitivity(r *runner, w *ts.Tensor, channels int) ([]float64, error) {
	g, err := r.sensitivity()
	if err != nil {
		return nil, err
	}
	wv, err := torch.Float32s(w)
	if err != nil {
		return nil, err
	}
	per := len(wv) / channels
	for c := range g {
		var a float64
		for _, x := range wv[c*per : (c+1)*per] {
			a += math.Abs(float64(x))
		}
		g[c] *= a / float64(per)
	}
	return g, nil
}
