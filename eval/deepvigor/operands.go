package deepvigor

import (
	"fmt"
	"math"

	"github.com/faultline/faultline/fault"
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
	// signed marks a layer whose inputs take both signs on the analysis
	// images (a first layer, or one after a layer without ReLU): there a
	// weight fault's errors at the channel's positions do not share one sign.
	signed bool
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
	lo, err := sc.KeepErr(in.Min(false))
	if err != nil {
		return nil, err
	}
	lv, err := torch.Float32s(lo)
	if err != nil {
		return nil, err
	}
	o.signed = lv[0] < 0
	if err := fault.CheckSite(&s); err != nil {
		return nil, err
	}
	if s.Kind == model.Linear {
		o.f = shape[1]
		o.cols, err = sc.KeepErr(in.View([]int64{1, b, o.f}, false))
		return o, err
	}
	g, err := fault.GeometryOf(&s)
	if err != nil {
		return nil, err
	}
	o.groups, o.outPerG = g.Cin/g.Cg, g.Og
	cin, kk := shape[1], g.KH*g.KW
	o.f = g.Cg * kk
	padded := g.PT != 0 || g.PL != 0 || g.PB != 0 || g.PR != 0
	// unfold lists each output position's window of x through the layer's
	// pads, strides and dilations: [Ho*Wo, N, Cin*kh*kw], an input channel's
	// taps together, row-major (as the weight [Cout, Cin/groups, kh, kw]).
	unfold := func(x *ts.Tensor) (*ts.Tensor, error) {
		p := x
		if padded {
			if p, err = sc.KeepErr(x.ConstantPadNdWithVal([]int64{g.PL, g.PR, g.PT, g.PB}, ts.FloatScalar(0), false)); err != nil {
				return nil, err
			}
		}
		u, err := sc.KeepErr(p.Im2col([]int64{g.KH, g.KW}, []int64{g.DH, g.DW}, []int64{0, 0}, []int64{g.SH, g.SW}, false))
		if err != nil {
			return nil, err
		}
		// [N, Cin*kh*kw, Ho*Wo] -> [Ho*Wo, N, Cin*kh*kw]
		if u, err = sc.KeepErr(u.Permute([]int64{2, 0, 1}, false)); err != nil {
			return nil, err
		}
		if sh, err := torch.Shape(u); err != nil || sh[0] != g.OH*g.OW {
			return nil, fmt.Errorf("layer %s: unfolded %v positions, want %d (%w)", s.Name, sh, g.OH*g.OW, err)
		}
		return sc.KeepErr(u.Contiguous(false))
	}
	if o.cols, err = unfold(in); err != nil {
		return nil, err
	}
	if sem == Exact && padded {
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
// operand's weight. Per image (perImage), each neuron gets one distribution per
// image, of that image's errors; otherwise one pooled over the images (the
// reference's). The result is indexed [neuron][image] (one entry when pooled).
func (o *operands) activationDists(w *ts.Tensor, c int, pos []int, g grid, bounds *ts.Tensor, perImage bool) ([][]dist, error) {
	per := 32 * o.images * o.f
	chunk := max(1, int(elementsPerChunk/per))
	var out [][]dist
	for lo := 0; lo < len(pos); lo += chunk {
		ds, err := o.activationChunk(w, c, pos[lo:min(len(pos), lo+chunk)], g, bounds, perImage)
		if err != nil {
			return nil, err
		}
		out = append(out, ds...)
	}
	return out, nil
}

func (o *operands) activationChunk(w *ts.Tensor, c int, pos []int, g grid, bounds *ts.Tensor, perImage bool) ([][]dist, error) {
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
	rows, per := n, int64(1) // rows of the histogram and images per row group
	if perImage {
		rows, per = n*o.images, o.images
	}
	if d, err = sc.KeepErr(d.View([]int64{rows, -1}, false)); err != nil {
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
		if exr, err = sc.KeepErr(exr.Reshape([]int64{rows, -1}, false)); err != nil {
			return nil, err
		}
	}
	flat, err := histograms(d, exr, g, bounds, o.sem)
	if err != nil {
		return nil, err
	}
	out := make([][]dist, n)
	for i := range out {
		out[i] = flat[int64(i)*per : int64(i+1)*per]
	}
	return out, nil
}

// weightDist builds filter c's error distribution: every bit of every weight of
// the filter flipped, on every image. Per position (the paper's and the
// reference's model), each fault gives one error per listed output position,
// its flipped weight times that position's operand, all pooled. Per fault, each
// (weight, bit, image) gives one error: the largest in magnitude over all the
// channel's positions (pos is then ignored), because one weight fault hits
// every position at once and the strongest of them decides. Averaged, each
// gives one error: its errors at all the channel's positions averaged with
// weights (positionWeights, [B, hw]), the uniform delta it amounts to (the
// analysis uses it where the layer's inputs are non-negative, so that the
// errors share one sign). Per image
// (perImage), the result holds one distribution per image, of that image's
// errors; otherwise one pooled over the images.
func (o *operands) weightDist(w *ts.Tensor, c int, pos []int, g grid, bounds *ts.Tensor, model WeightErrors, perImage bool, weights []float32) ([]dist, error) {
	per := 32 * o.images * o.f
	chunk := max(1, int(elementsPerChunk/per))
	switch model {
	case PerFault:
		return o.faultDist(w, c, chunk, g, bounds, perImage)
	case Averaged:
		return o.meanDist(w, c, g, bounds, perImage, weights)
	}
	var total []dist
	for lo := 0; lo < len(pos); lo += chunk {
		var ds []dist
		err := o.weightErrors(w, c, pos[lo:min(len(pos), lo+chunk)], func(sc *torch.Scope, d4 *ts.Tensor) error {
			rows, err := imageRows(sc, d4, perImage)
			if err != nil {
				return err
			}
			ds, err = histograms(rows, nil, g, bounds, o.sem)
			return err
		})
		if err != nil {
			return nil, err
		}
		if total == nil {
			total = make([]dist, len(ds))
		}
		for i := range ds {
			total[i].add(&ds[i])
		}
	}
	return total, nil
}

// imageRows views errors [P, B, f, 32] as histogram rows: one per image
// ([B, P*f*32]) or one pooled ([1, P*B*f*32]).
func imageRows(sc *torch.Scope, d4 *ts.Tensor, perImage bool) (*ts.Tensor, error) {
	if !perImage {
		return sc.KeepErr(d4.View([]int64{1, -1}, false))
	}
	t, err := sc.KeepErr(d4.Transpose(0, 1, false))
	if err != nil {
		return nil, err
	}
	shape, err := torch.Shape(t)
	if err != nil {
		return nil, err
	}
	return sc.KeepErr(t.Reshape([]int64{shape[0], -1}, false))
}

// faultDist is weightDist per fault: the signed largest-magnitude error over
// every output position (a NaN at any position wins), then the histograms.
func (o *operands) faultDist(w *ts.Tensor, c int, chunk int, g grid, bounds *ts.Tensor, perImage bool) ([]dist, error) {
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
	rows, err := imageRows(&keep, cur, perImage)
	if err != nil {
		return nil, err
	}
	return histograms(rows, nil, g, bounds, o.sem)
}

// meanDist is weightDist averaged: each (weight, bit, image) error is the
// flipped weight's change times the weighted mean of its operand over the
// channel's positions, with weights ([B, hw]) per image.
func (o *operands) meanDist(w *ts.Tensor, c int, g grid, bounds *ts.Tensor, perImage bool, weights []float32) ([]dist, error) {
	var sc torch.Scope
	defer sc.Drop()
	shape, err := torch.Shape(o.cols)
	if err != nil {
		return nil, err
	}
	p := shape[0]
	if int64(len(weights)) != o.images*p {
		return nil, fmt.Errorf("deepvigor: %d position weights for %d images of %d positions", len(weights), o.images, p)
	}
	dev := o.cols.MustDevice()
	at, err := sc.KeepErr(torch.FromFloat32(weights, []int64{o.images, p}, dev))
	if err != nil {
		return nil, err
	}
	if at, err = sc.KeepErr(at.Transpose(0, 1, false)); err != nil {
		return nil, err
	}
	if at, err = sc.KeepErr(at.Unsqueeze(2, false)); err != nil { // [P, B, 1]
		return nil, err
	}
	// The weighted mean of each operand over the positions, in chunks of
	// positions: [B, f].
	var mean *ts.Tensor
	step := max(1, int(elementsPerChunk/(o.images*o.f)))
	for lo := 0; lo < int(p); lo += step {
		hi := min(int(p), lo+step)
		x, _, err := o.slice(&sc, c, iota(hi)[lo:]) // [n, B, f]
		if err != nil {
			return nil, err
		}
		a, err := sc.KeepErr(at.Narrow(0, int64(lo), int64(hi-lo), false))
		if err != nil {
			return nil, err
		}
		ax, err := sc.KeepErr(x.Mul(a, false))
		if err != nil {
			return nil, err
		}
		part, err := sc.KeepErr(ax.SumDimIntlist([]int64{0}, false, ax.DType(), false))
		if err != nil {
			return nil, err
		}
		if mean == nil {
			mean = part
		} else if mean, err = sc.KeepErr(mean.Add(part, false)); err != nil {
			return nil, err
		}
	}
	wc, err := o.filter(&sc, w, c)
	if err != nil {
		return nil, err
	}
	eps, err := sc.KeepErr(flipErrorsWithin(wc, o.sem, o.wb)) // [f, 32]
	if err != nil {
		return nil, err
	}
	if mean, err = sc.KeepErr(mean.Unsqueeze(2, false)); err != nil { // [B, f, 1]
		return nil, err
	}
	d, err := sc.KeepErr(mean.Mul(eps, false)) // [B, f, 32]
	if err != nil {
		return nil, err
	}
	if d, err = sc.KeepErr(d.Unsqueeze(0, false)); err != nil {
		return nil, err
	}
	rows, err := imageRows(&sc, d, perImage)
	if err != nil {
		return nil, err
	}
	return histograms(rows, nil, g, bounds, o.sem)
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
// on: the per-channel gradient sensitivity of the layer's slopes times the mean
// absolute weight of each channel's filter w (whose first dimension is the
// channel).
func sensitivity(sl *slopes, golden []int, w *ts.Tensor, channels int) ([]float64, error) {
	g := sl.sensitivity(golden)
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

// patterns returns, for each operand f of channel c's filter, its values at
// every output position of the channel on every image ([B, hw] each): the
// error pattern of a fault in weight f, per unit of the weight's change.
func (o *operands) patterns(c int) ([][]float32, error) {
	var sc torch.Scope
	defer sc.Drop()
	shape, err := torch.Shape(o.cols)
	if err != nil {
		return nil, err
	}
	p := shape[0]
	x, _, err := o.slice(&sc, c, iota(int(p))) // [P, B, f]
	if err != nil {
		return nil, err
	}
	if x, err = sc.KeepErr(x.Permute([]int64{2, 1, 0}, false)); err != nil { // [f, B, P]
		return nil, err
	}
	if x, err = sc.KeepErr(x.Contiguous(false)); err != nil {
		return nil, err
	}
	v, err := torch.Float32s(x)
	if err != nil {
		return nil, err
	}
	out := make([][]float32, o.f)
	per := o.images * p
	for f := range out {
		out[f] = v[int64(f)*per : int64(f+1)*per]
	}
	return out, nil
}

// faultErrors returns the 32 bit-flip changes of each weight of channel c's
// filter ([f][32]; the flipped value clamped as the forward pass reads it).
func (o *operands) faultErrors(w *ts.Tensor, c int) ([][]float32, error) {
	var sc torch.Scope
	defer sc.Drop()
	wc, err := o.filter(&sc, w, c)
	if err != nil {
		return nil, err
	}
	eps, err := sc.KeepErr(flipErrorsWithin(wc, o.sem, o.wb)) // [f, 32]
	if err != nil {
		return nil, err
	}
	v, err := torch.Float32s(eps)
	if err != nil {
		return nil, err
	}
	out := make([][]float32, o.f)
	for f := range out {
		out[f] = v[f*32 : (f+1)*32]
	}
	return out, nil
}
