package deepvigor

import (
	"fmt"
	"math"

	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// target is what a delta is added to: one output neuron (flat index into the
// per-sample output) or, when neuron < 0, every position of an output channel.
type target struct {
	channel int
	neuron  int64
	// pattern, when set ([B, hw]), makes a delta d add d * pattern[img] to
	// the channel's positions instead of d to each: a weight fault's own
	// error pattern (its operand at every position), scaled by the change.
	pattern []float32
}

// query is one sample of a batched forward: image img with delta d at target t.
type query struct {
	t   *target
	img int
	d   float32
}

// result is a query's outcome: whether the image left its golden class and, for
// gradient queries, whether the loss gradient at the target was exactly zero.
type result struct {
	mis      bool
	zeroGrad bool
}

// runner re-runs the network after one site with deltas added to its output.
type runner struct {
	m        *model.Model
	site     model.Site
	stage    int
	lead     bool
	stageIn  *ts.Tensor // golden input of the site's stage [B, ...]
	out      *ts.Tensor // golden output of the site [B, ...]
	golden   []int
	classes  int
	per      int64 // per-sample output size
	hw       int64 // positions per channel
	maxBatch int
	exact    bool // a non-finite logit misclassifies (Exact); else argmax only

	imageForwards  int64
	imageBackwards int64
}

// run evaluates queries in batches and returns their results; with grad (the
// reference's probe) it also reports whether d(loss)/d(output at the target) is
// zero, for the reference's loss (backward).
func (r *runner) run(qs []query, grad bool) ([]result, error) {
	res := make([]result, len(qs))
	step := r.maxBatch
	if grad { // whole groups of images: the reference's loss mixes a group's images
		b := len(r.golden)
		step = max(1, step/b) * b
	}
	for lo := 0; lo < len(qs); lo += step {
		hi := min(len(qs), lo+step)
		if err := r.batch(qs[lo:hi], res[lo:hi], grad); err != nil {
			return nil, err
		}
	}
	return res, nil
}

func (r *runner) batch(qs []query, res []result, grad bool) error {
	var sc torch.Scope
	defer sc.Drop()
	dev := r.m.Device()
	n := int64(len(qs))
	imgs := make([]int64, n)
	var idx []int64
	var vals []float32
	for s, q := range qs {
		imgs[s] = int64(q.img)
		base := int64(s) * r.per
		if q.t.neuron >= 0 {
			idx = append(idx, base+q.t.neuron)
			vals = append(vals, q.d)
			continue
		}
		c0 := base + int64(q.t.channel)*r.hw
		for k := range r.hw {
			idx = append(idx, c0+k)
			if q.t.pattern != nil {
				vals = append(vals, q.d*q.t.pattern[int64(q.img)*r.hw+k])
			} else {
				vals = append(vals, q.d)
			}
		}
	}
	it, err := sc.KeepErr(torch.FromInt64(imgs, []int64{n}, dev))
	if err != nil {
		return err
	}
	y, err := sc.KeepErr(r.out.IndexSelect(0, it, false))
	if err != nil {
		return err
	}
	pi, err := sc.KeepErr(torch.FromInt64(idx, []int64{int64(len(idx))}, dev))
	if err != nil {
		return err
	}
	pv, err := sc.KeepErr(torch.FromFloat32(vals, []int64{int64(len(vals))}, dev))
	if err != nil {
		return err
	}
	if err := y.Put_(pi, pv, true); err != nil {
		return err
	}
	var logits *ts.Tensor
	if grad {
		prev, err := torch.SetGradEnabled(true)
		if err != nil {
			return err
		}
		logits, err = r.logits(&sc, y, it, true)
		var gy *ts.Tensor
		if err == nil {
			gy, err = r.backward(&sc, qs, y, logits)
		}
		if err == nil {
			err = r.gradients(&sc, qs, res, gy, pi)
		}
		if _, rerr := torch.SetGradEnabled(prev); err == nil {
			err = rerr
		}
		if err != nil {
			return err
		}
		r.imageBackwards += n
	} else if logits, err = r.logits(&sc, y, it, false); err != nil {
		return err
	}
	r.imageForwards += n
	lv, err := torch.Float32s(logits)
	if err != nil {
		return err
	}
	for s, q := range qs {
		res[s].mis = r.misclassified(lv[s*r.classes:(s+1)*r.classes], r.golden[q.img])
	}
	return nil
}

// misclassified reports whether logits leave class g: argmax (the first maximum,
// a NaN counting as the maximum, as torch.argmax does) differs from g; under
// Exact semantics any non-finite logit also counts (a detected unrecoverable error).
func (r *runner) misclassified(l []float32, g int) bool {
	best := 0
	for j, v := range l {
		if math.IsNaN(float64(v)) {
			best = j
			break
		}
		if v > l[best] {
			best = j
		}
	}
	if best != g {
		return true
	}
	if r.exact {
		for _, v := range l {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return true
			}
		}
	}
	return false
}

// logits runs the network on from the site's output y (samples of the images
// in it) and returns the logits. With grad, y becomes a leaf that requires grad
// (call with grad mode on).
func (r *runner) logits(sc *torch.Scope, y, it *ts.Tensor, grad bool) (*ts.Tensor, error) {
	if grad {
		if err := y.RequiresGrad_(true); err != nil {
			return nil, err
		}
	}
	if r.lead {
		var hook model.Hook
		if grad { // no in-place activation on a tensor autograd needs
			hook = func(*model.Site, *ts.Tensor, *ts.Tensor) (*ts.Tensor, error) { return nil, nil }
		}
		return sc.KeepErr(r.m.RunAfterLead(r.stage, y, r.m.NumStages(), false, hook))
	}
	x, err := sc.KeepErr(r.stageIn.IndexSelect(0, it, false))
	if err != nil {
		return nil, err
	}
	hook := func(s *model.Site, _, _ *ts.Tensor) (*ts.Tensor, error) {
		if s.Name != r.site.Name {
			return nil, nil
		}
		return y.ShallowClone()
	}
	return sc.KeepErr(r.m.RunStages(x, r.stage, r.m.NumStages(), false, hook))
}

// backward back-propagates the reference's loss and returns its gradient at y.
// The queries come in groups of one target and side over every image in order
// (probe), and each group's loss is the reference's, whose one-hot vectors have
// shape [B, 1, C] so that its product with the [B, C] logits broadcasts to
// [B, B, C] and mixes the group's images:
// L = (1/B) sum_i sum_k sum_j sigmoid((sum_k' E_k'[j] oh_i[j]) - E_k[j]),
// with E the group's logits and oh_i the one-hot of image i's golden class,
// computed with the reference's operations in its order, in float32. Its
// gradient at an image is almost never exactly zero; a per-image loss would
// be zero wherever every margin saturates the sigmoid (spec section 2.5).
func (r *runner) backward(sc *torch.Scope, qs []query, y, logits *ts.Tensor) (*ts.Tensor, error) {
	return r.backwardOn(sc, qs, y, logits, r.m.Device())
}

// backwardOn is backward with the one-hots made on dev.
func (r *runner) backwardOn(sc *torch.Scope, qs []query, y, logits *ts.Tensor, dev gotch.Device) (*ts.Tensor, error) {
	b := int64(len(r.golden))
	n := int64(len(qs))
	if n%b != 0 {
		return nil, fmt.Errorf("deepvigor: %d gradient queries are not whole groups of %d images", n, b)
	}
	g := n / b
	c := int64(r.classes)
	oh := make([]float32, n*c)
	for s, q := range qs {
		if int64(q.img) != int64(s)%b {
			return nil, fmt.Errorf("deepvigor: gradient query %d is image %d, want %d", s, q.img, int64(s)%b)
		}
		oh[int64(s)*c+int64(r.golden[q.img])] = 1
	}
	ot, err := sc.KeepErr(torch.FromFloat32(oh, []int64{g, b, 1, c}, dev))
	if err != nil {
		return nil, err
	}
	e4, err := sc.KeepErr(logits.View([]int64{g, 1, b, c}, false))
	if err != nil {
		return nil, err
	}
	prod, err := sc.KeepErr(e4.Mul(ot, false)) // [G, B(i), B(k), C]: E[k, j] oh_i[j]
	if err != nil {
		return nil, err
	}
	sum, err := sc.KeepErr(prod.SumDimIntlist([]int64{2}, false, prod.DType(), false)) // [G, B, C]
	if err != nil {
		return nil, err
	}
	if sum, err = sc.KeepErr(sum.Unsqueeze(2, false)); err != nil { // [G, B, 1, C]
		return nil, err
	}
	diff, err := sc.KeepErr(sum.Sub(e4, false)) // [G, B(i), B(k), C]
	if err != nil {
		return nil, err
	}
	sig, err := sc.KeepErr(diff.Sigmoid(false))
	if err != nil {
		return nil, err
	}
	total, err := sc.KeepErr(sig.Sum(sig.DType(), false))
	if err != nil {
		return nil, err
	}
	loss, err := sc.KeepErr(total.DivScalar(ts.FloatScalar(float64(b)), false))
	if err != nil {
		return nil, err
	}
	if err := loss.Backward(); err != nil {
		return nil, err
	}
	return sc.KeepErr(y.Grad(false))
}

// gradients records which queries saw a zero loss gradient gy at their target
// (for a channel, the sum over its positions). at holds the targets' flat
// indices into gy, in query order, as the deltas were added.
func (r *runner) gradients(sc *torch.Scope, qs []query, res []result, gy, at *ts.Tensor) error {
	// Only the targets' gradients come to the host: one value per neuron query,
	// a channel's positions per channel query.
	gt2, err := sc.KeepErr(gy.Take(at, false))
	if err != nil {
		return err
	}
	gv, err := torch.Float32s(gt2)
	if err != nil {
		return err
	}
	k := 0
	w := r.width()
	for s, q := range qs {
		if q.t.neuron >= 0 {
			res[s].zeroGrad = gv[k] == 0
			k++
			continue
		}
		// The reference sums over the last dimension first, then the rows.
		var total float32
		for row := int64(0); row < r.hw/w; row++ {
			var acc float32
			for x := range w {
				acc += gv[k+int(row*w+x)]
			}
			total += acc
		}
		res[s].zeroGrad = total == 0
		k += int(r.hw)
	}
	return nil
}

// width is the output map's width (1 for a linear layer).
func (r *runner) width() int64 {
	if len(r.site.OutShape) == 3 {
		return r.site.OutShape[2]
	}
	return 1
}

// slopes is a layer's first-order picture at the golden point: for every
// image, the golden logits and the Jacobian of the logits with respect to the
// site's output, from which Exact semantics predicts the error that first
// changes an image's class.
type slopes struct {
	classes, images int
	per, hw         int64
	logits          []float32 // [B, C]
	jac             []float32 // [C, B, per]: d logit / d output
	chanJac         []float32 // [C, B, channels]: jac summed over each channel's positions
}

// jacobian computes the layer's slopes: one forward pass of every image from the
// site on, and one backward pass per class over it.
func (r *runner) jacobian() (*slopes, error) {
	b := len(r.golden)
	sl := &slopes{classes: r.classes, images: b, per: r.per, hw: r.hw,
		logits: make([]float32, b*r.classes), jac: make([]float32, int64(r.classes*b)*r.per)}
	step := max(1, min(b, r.maxBatch))
	for lo := 0; lo < b; lo += step {
		if err := r.jacobianBatch(sl, lo, min(b, lo+step)); err != nil {
			return nil, err
		}
	}
	ch := r.per / r.hw
	sl.chanJac = make([]float32, int64(r.classes*b)*ch)
	for k := range int64(r.classes * b) {
		row := sl.jac[k*r.per : (k+1)*r.per]
		for c := range ch {
			var acc float32
			for _, v := range row[c*r.hw : (c+1)*r.hw] {
				acc += v
			}
			sl.chanJac[k*ch+c] = acc
		}
	}
	return sl, nil
}

// jacobianBatch fills the slopes of images lo..hi-1.
func (r *runner) jacobianBatch(sl *slopes, lo, hi int) error {
	var sc torch.Scope
	defer sc.Drop()
	n := hi - lo
	imgs := make([]int64, n)
	for s := range imgs {
		imgs[s] = int64(lo + s)
	}
	it, err := sc.KeepErr(torch.FromInt64(imgs, []int64{int64(n)}, r.m.Device()))
	if err != nil {
		return err
	}
	y, err := sc.KeepErr(r.out.IndexSelect(0, it, false))
	if err != nil {
		return err
	}
	prev, err := torch.SetGradEnabled(true)
	if err != nil {
		return err
	}
	err = func() error {
		logits, err := r.logits(&sc, y, it, true)
		if err != nil {
			return err
		}
		lv, err := torch.Float32s(logits)
		if err != nil {
			return err
		}
		copy(sl.logits[lo*r.classes:hi*r.classes], lv)
		for j := range r.classes {
			col, err := sc.KeepErr(logits.Select(1, int64(j), false))
			if err != nil {
				return err
			}
			sum, err := sc.KeepErr(col.Sum(col.DType(), false))
			if err != nil {
				return err
			}
			if j < r.classes-1 {
				err = torch.BackwardKeepGraph(sum)
			} else {
				err = sum.Backward()
			}
			if err != nil {
				return err
			}
			g, err := sc.KeepErr(y.Grad(false))
			if err != nil {
				return err
			}
			gv, err := torch.Float32s(g)
			if err != nil {
				return err
			}
			off := (int64(j*sl.images) + int64(lo)) * r.per
			copy(sl.jac[off:off+int64(n)*r.per], gv)
			if err := g.Zero_(); err != nil {
				return err
			}
		}
		return nil
	}()
	if _, rerr := torch.SetGradEnabled(prev); err == nil {
		err = rerr
	}
	if err != nil {
		return err
	}
	r.imageForwards += int64(n)
	r.imageBackwards += int64(n * r.classes)
	return nil
}

// slope returns d(logit g - logit j)/d(delta) of image b for a delta added to
// target t (a neuron, or every position of a channel).
func (sl *slopes) slope(t *target, b, g, j int) float64 {
	if t.neuron >= 0 {
		at := func(k int) float64 { return float64(sl.jac[(int64(k*sl.images+b))*sl.per+t.neuron]) }
		return at(g) - at(j)
	}
	if t.pattern != nil {
		u := t.pattern[int64(b)*sl.hw : int64(b+1)*sl.hw]
		at := func(k int) float64 {
			row := sl.jac[int64(k*sl.images+b)*sl.per+int64(t.channel)*sl.hw:][:sl.hw]
			var acc float64
			for p, v := range row {
				acc += float64(v) * float64(u[p])
			}
			return acc
		}
		return at(g) - at(j)
	}
	ch := sl.per / sl.hw
	at := func(k int) float64 { return float64(sl.chanJac[int64(k*sl.images+b)*ch+int64(t.channel)]) }
	return at(g) - at(j)
}

// crossing is the magnitude of the delta on side (0 negative, 1 positive) at
// which image b's golden class g first loses, by the linear model of its
// logits at the golden point: the smallest m_j / |slope_j| over the classes j
// whose margin m_j = logit g - logit j that side's delta shrinks; +Inf when
// none does. flat reports that every slope is zero (the target does not reach
// the logits at the golden point, e.g. behind a ReLU it switches off), where
// the linear model predicts nothing.
func (sl *slopes) crossing(t *target, b, g, side int) (p float64, flat bool) {
	sgn := float64(sign(side))
	lg := sl.logits[b*sl.classes : (b+1)*sl.classes]
	p, flat = math.Inf(1), true
	for j := range sl.classes {
		if j == g {
			continue
		}
		d := sgn * sl.slope(t, b, g, j)
		if d != 0 {
			flat = false
		}
		if d >= 0 {
			continue
		}
		p = math.Min(p, math.Max(0, float64(lg[g])-float64(lg[j]))/-d)
	}
	return p, flat
}

// lossGrad sets dst (len hi-lo) to image b's gradient, at the golden point, of
// the per-image loss sum over classes j of sigmoid(logit g - logit j) with
// respect to the site's outputs lo..hi-1.
func (sl *slopes) lossGrad(b, g int, lo, hi int64, dst []float64) {
	clear(dst)
	lg := sl.logits[b*sl.classes : (b+1)*sl.classes]
	rg := sl.jac[int64(g*sl.images+b)*sl.per:][lo:hi]
	for j := range sl.classes {
		if j == g {
			continue
		}
		s := 1 / (1 + math.Exp(-(float64(lg[g]) - float64(lg[j]))))
		w := s * (1 - s)
		rj := sl.jac[int64(j*sl.images+b)*sl.per:][lo:hi]
		for k := range dst {
			dst[k] += w * (float64(rg[k]) - float64(rj[k]))
		}
	}
}

// positionWeights returns, per image, weights over channel c's positions
// ([B, hw], summing to 1 per image) under which a weight fault's errors at
// those positions average into one uniform delta: each position's share of
// the loss gradient's magnitude (lossGrad), or equal shares where the
// gradient is zero on the whole channel.
func (sl *slopes) positionWeights(c int, golden []int) []float32 {
	out := make([]float32, int64(sl.images)*sl.hw)
	grad := make([]float64, sl.hw)
	for b, g := range golden {
		sl.lossGrad(b, g, int64(c)*sl.hw, int64(c+1)*sl.hw, grad)
		var tot float64
		for _, v := range grad {
			tot += math.Abs(v)
		}
		row := out[int64(b)*sl.hw : int64(b+1)*sl.hw]
		for k, v := range grad {
			if tot > 0 {
				row[k] = float32(math.Abs(v) / tot)
			} else {
				row[k] = 1 / float32(sl.hw)
			}
		}
	}
	return out
}

// sensitivity returns, per output channel, the root mean square over images and
// positions of the gradient at the golden output of the per-image loss
// sum over classes j of sigmoid(logit g - logit j): the variable the sampling
// stratifies on (with the filter's mean absolute weight).
func (sl *slopes) sensitivity(golden []int) []float64 {
	ch := sl.per / sl.hw
	sum := make([]float64, ch)
	grad := make([]float64, sl.per)
	for b, g := range golden {
		sl.lossGrad(b, g, 0, sl.per, grad)
		for c := range ch {
			for _, v := range grad[c*sl.hw : (c+1)*sl.hw] {
				sum[c] += v * v
			}
		}
	}
	for c := range sum {
		sum[c] = math.Sqrt(sum[c] / float64(int64(len(golden))*sl.hw))
	}
	return sum
}
