package deepvigor

import (
	"math"

	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model"
	"github.com/sugarme/gotch/ts"
)

// target is what a delta is added to: one output neuron (flat index into the
// per-sample output) or, when neuron < 0, every position of an output channel.
type target struct {
	channel int
	neuron  int64
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

// run evaluates queries in batches and returns their results; with grad it also
// reports whether d(loss)/d(output at the target) is zero, the loss being the
// reference's sum over classes of sigmoid(golden logit - logit).
func (r *runner) run(qs []query, grad bool) ([]result, error) {
	res := make([]result, len(qs))
	for lo := 0; lo < len(qs); lo += r.maxBatch {
		hi := min(len(qs), lo+r.maxBatch)
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
			vals = append(vals, q.d)
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

// backward back-propagates the reference's loss, the sum over samples and
// classes of sigmoid(golden logit - logit), and returns its gradient at y.
func (r *runner) backward(sc *torch.Scope, qs []query, y, logits *ts.Tensor) (*ts.Tensor, error) {
	n := int64(len(qs))
	g := make([]int64, n)
	for s, q := range qs {
		g[s] = int64(r.golden[q.img])
	}
	gt, err := sc.KeepErr(torch.FromInt64(g, []int64{n, 1}, r.m.Device()))
	if err != nil {
		return nil, err
	}
	eg, err := sc.KeepErr(logits.Gather(1, gt, false, false))
	if err != nil {
		return nil, err
	}
	diff, err := sc.KeepErr(eg.Sub(logits, false))
	if err != nil {
		return nil, err
	}
	sig, err := sc.KeepErr(diff.Sigmoid(false))
	if err != nil {
		return nil, err
	}
	loss, err := sc.KeepErr(sig.Sum(sig.DType(), false))
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

// sensitivity returns, per output channel of the site, the root mean square over
// images and positions of the loss gradient (backward's loss) at the golden
// output: one forward and one backward of every image.
func (r *runner) sensitivity() ([]float64, error) {
	b := len(r.golden)
	c := int(r.per / r.hw)
	sum := make([]float64, c)
	step := max(1, min(b, r.maxBatch))
	for lo := 0; lo < b; lo += step {
		hi := min(b, lo+step)
		if err := r.sensitivityBatch(lo, hi, sum); err != nil {
			return nil, err
		}
	}
	for ch := range sum {
		sum[ch] = math.Sqrt(sum[ch] / float64(int64(b)*r.hw))
	}
	return sum, nil
}

// sensitivityBatch adds the squared gradients of images lo..hi-1 to sum.
func (r *runner) sensitivityBatch(lo, hi int, sum []float64) error {
	var sc torch.Scope
	defer sc.Drop()
	n := hi - lo
	qs := make([]query, n)
	imgs := make([]int64, n)
	for s := range qs {
		qs[s].img = lo + s
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
	logits, err := r.logits(&sc, y, it, true)
	var gy *ts.Tensor
	if err == nil {
		gy, err = r.backward(&sc, qs, y, logits)
	}
	if _, rerr := torch.SetGradEnabled(prev); err == nil {
		err = rerr
	}
	if err != nil {
		return err
	}
	r.imageForwards += int64(n)
	r.imageBackwards += int64(n)
	gv, err := torch.Float32s(gy)
	if err != nil {
		return err
	}
	for s := range n {
		row := gv[int64(s)*r.per : int64(s+1)*r.per]
		for ch := range sum {
			for _, g := range row[int64(ch)*r.hw : int64(ch+1)*r.hw] {
				sum[ch] += float64(g) * float64(g)
			}
		}
	}
	return nil
}
