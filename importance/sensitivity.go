package importance

import (
	"fmt"
	"math"

	"github.com/faultline/faultline/datasets"
	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// Score names an element sensitivity score.
type Score string

// Scores.
const (
	// Fisher is the root mean square over batches (weights) or images
	// (activations) of the cross-entropy gradient: sign-safe, our default.
	Fisher Score = "fisher"
	// ISimDL is the authors' score: for weights, |sum over batches of d(sum of
	// logits)/dw|; for activations, |mean over images of gradient x activation|
	// towards the true class's logit.
	ISimDL Score = "isimdl"
)

// ParseScore checks a score name.
func ParseScore(s string) (Score, error) {
	switch sc := Score(s); sc {
	case Fisher, ISimDL:
		return sc, nil
	}
	return "", fmt.Errorf("importance: unknown score %q (want fisher or isimdl)", s)
}

// Sensitivity is what the proposal is built from: per element of the space,
// both scores, and the capped effect of flipping each bit of the stored value
// (for activations, the mean over the first batch's images).
type Sensitivity struct {
	Fisher []float64
	ISimDL []float64
	Images int // images the scores were computed from
	sp     *space
	values []float32 // weights: the element values
	effect []float32 // activations: [element*Bits + bit] mean capped effect
	cap    float64
}

// beta returns the capped bit-effect function of the proposal.
func (s *Sensitivity) beta() func(e int64, b int) float64 {
	if s.values != nil {
		return func(e int64, b int) float64 { return bitEffect(s.values[e], b, s.cap) }
	}
	return func(e int64, b int) float64 { return float64(s.effect[e*Bits+int64(b)]) }
}

// score returns the per-element scores of one kind.
func (s *Sensitivity) score(sc Score) []float64 {
	if sc == ISimDL {
		return s.ISimDL
	}
	return s.Fisher
}

// sensitivity computes the scores of the space's elements on the batches of
// set (normalised with stats): batches of batchSize images from the start of
// set. It runs on the torch thread and leaves the parameters untouched.
func sensitivity(m *model.Model, sp *space, set *datasets.Set, stats datasets.Stats, batches, batchSize int, cap float64) (*Sensitivity, error) {
	n := min(set.Len(), batches*batchSize)
	if n == 0 {
		return nil, fmt.Errorf("importance: no images for the sensitivity")
	}
	head, err := set.Head(n)
	if err != nil {
		return nil, err
	}
	ld, err := datasets.NewLoader(head, datasets.LoaderOptions{BatchSize: batchSize, Stats: stats})
	if err != nil {
		return nil, err
	}
	s := &Sensitivity{Fisher: make([]float64, sp.elems), ISimDL: make([]float64, sp.elems), sp: sp, cap: cap}
	if sp.target == Weights {
		for _, l := range sp.layers {
			w, err := m.Param(l.site.Weight())
			if err != nil {
				return nil, err
			}
			v, err := torch.Float32s(w)
			if err != nil {
				return nil, err
			}
			s.values = append(s.values, v...)
		}
	}
	restore, err := m.SetRequiresGrad(sp.target == Weights)
	if err != nil {
		return nil, err
	}
	defer func() { _ = restore() }()
	if sp.target == Weights {
		if err := clearWeightGrads(m, sp); err != nil {
			return nil, fmt.Errorf("importance: sensitivity: %w", err)
		}
	}
	prev, err := torch.SetGradEnabled(true)
	if err != nil {
		return nil, err
	}
	it := ld.Epoch(0)
	nb := 0
	for b, ok := it.Next(); ok; b, ok = it.Next() {
		if err = s.batch(m, b, nb == 0); err != nil {
			break
		}
		nb++
		s.Images += b.N
	}
	if _, rerr := torch.SetGradEnabled(prev); err == nil {
		err = rerr
	}
	if err != nil {
		return nil, fmt.Errorf("importance: sensitivity: %w", err)
	}
	div := float64(nb) // weights: batches; activations: images
	if sp.target == Activations {
		div = float64(s.Images)
	}
	for e := range s.Fisher {
		s.Fisher[e] = math.Sqrt(s.Fisher[e] / div)
		s.ISimDL[e] = math.Abs(s.ISimDL[e])
		if sp.target == Activations {
			s.ISimDL[e] /= float64(s.Images)
		}
	}
	return s, nil
}

// clearWeightGrads zeroes the gradients that the space's weights hold, if any:
// pass reads them after its backward pass, so gradients a caller left there (a
// model fresh from a training step) would add to the first batch's.
func clearWeightGrads(m *model.Model, sp *space) error {
	for _, l := range sp.layers {
		w, err := m.Param(l.site.Weight())
		if err != nil {
			return err
		}
		g, err := w.Grad(false)
		if err != nil {
			return fmt.Errorf("gradient of %s: %w", l.site.Weight(), err)
		}
		def, err := g.Defined()
		if err == nil && def {
			err = g.Zero_()
		}
		_ = g.Drop()
		if err != nil {
			return fmt.Errorf("gradient of %s: %w", l.site.Weight(), err)
		}
	}
	return nil
}

// batch adds one batch's contributions: squared loss gradients to Fisher and
// signed ISimDL terms to ISimDL; first also fills the activation bit effects.
func (s *Sensitivity) batch(m *model.Model, b *datasets.Batch, first bool) error {
	var sc torch.Scope
	defer sc.Drop()
	x, y, err := b.Tensors(m.Device())
	if err != nil {
		return err
	}
	sc.Keep(x)
	sc.Keep(y)
	acts := s.sp.target == Activations
	red := int64(1) // weights: the mean loss of the batch; activations: the sum
	if acts {
		red = 2
	}
	gl, outs, err := s.pass(&sc, m, x, func(logits *ts.Tensor) (*ts.Tensor, error) {
		return sc.KeepErr(logits.CrossEntropyLoss(y, ts.NewTensor(), red, -100, 0, false))
	})
	if err != nil {
		return err
	}
	// ISimDL's objective: the sum of all logits (weights) or of the true
	// class's logits (activations).
	gi, _, err := s.pass(&sc, m, x, func(logits *ts.Tensor) (*ts.Tensor, error) {
		if !acts {
			return sc.KeepErr(logits.Sum(gotch.Float, false))
		}
		yy, err := sc.KeepErr(y.Unsqueeze(1, false))
		if err != nil {
			return nil, err
		}
		g, err := sc.KeepErr(logits.Gather(1, yy, false, false))
		if err != nil {
			return nil, err
		}
		return sc.KeepErr(g.Sum(gotch.Float, false))
	})
	if err != nil {
		return err
	}
	if first && acts {
		s.effect = make([]float32, s.sp.elems*Bits)
	}
	for i, l := range s.sp.layers {
		fl, fi := gl[i], gi[i]
		if !acts {
			for k, g := range fl {
				s.Fisher[l.start+int64(k)] += float64(g) * float64(g)
				s.ISimDL[l.start+int64(k)] += float64(fi[k])
			}
			continue
		}
		ov := outs[i]
		for k, g := range fl {
			e := l.start + int64(k)%l.n
			s.Fisher[e] += float64(g) * float64(g)
			s.ISimDL[e] += float64(fi[k]) * float64(ov[k])
			if first {
				for bit := range Bits {
					s.effect[e*Bits+int64(bit)] += float32(bitEffect(ov[k], bit, s.cap) / float64(b.N))
				}
			}
		}
	}
	return nil
}

// pass runs one forward and backward pass of objective and returns, per
// layer, the gradient at the weights (Weights) or at the layer's outputs
// (Activations, with the outputs). Weight gradients are zeroed after reading.
// (gotch's RunBackward, which would return gradients directly, crashes with
// more than one input in v0.8.0.)
func (s *Sensitivity) pass(sc *torch.Scope, m *model.Model, x *ts.Tensor, objective func(*ts.Tensor) (*ts.Tensor, error)) (grads, outs [][]float32, err error) {
	acts := s.sp.target == Activations
	n := len(s.sp.layers)
	// Activations: a zero leaf z added to each layer output, so dL/dz = dL/dout
	// while the rest of the graph stays intact.
	zs := make([]*ts.Tensor, n)
	outT := make([]*ts.Tensor, n)
	pos := map[string]int{}
	for i, l := range s.sp.layers {
		pos[l.site.Name] = i
	}
	hook := func(site *model.Site, _, out *ts.Tensor) (*ts.Tensor, error) {
		i, ok := pos[site.Name]
		if !acts || !ok {
			return nil, nil // a non-nil hook also keeps activations out of place
		}
		var err error
		if outT[i], err = sc.KeepErr(out.DetachCopy(false)); err != nil {
			return nil, err
		}
		shape, err := out.Size()
		if err != nil {
			return nil, err
		}
		z, err := sc.KeepErr(ts.Zeros(shape, gotch.Float, m.Device()))
		if err != nil {
			return nil, err
		}
		if err := z.RequiresGrad_(true); err != nil {
			return nil, err
		}
		zs[i] = z
		return out.Add(z, false)
	}
	logits, err := sc.KeepErr(m.Forward(x, false, hook))
	if err != nil {
		return nil, nil, err
	}
	obj, err := objective(logits)
	if err != nil {
		return nil, nil, err
	}
	if err := obj.Backward(); err != nil {
		return nil, nil, err
	}
	grads = make([][]float32, n)
	outs = make([][]float32, n)
	for i, l := range s.sp.layers {
		t := zs[i]
		if !acts {
			if t, err = m.Param(l.site.Weight()); err != nil {
				return nil, nil, err
			}
		}
		if t == nil {
			return nil, nil, fmt.Errorf("the forward pass did not reach layer %s", l.site.Name)
		}
		g, err := sc.KeepErr(t.Grad(false))
		if err != nil {
			return nil, nil, err
		}
		if grads[i], err = torch.Float32s(g); err != nil {
			return nil, nil, fmt.Errorf("layer %s: no gradient: %w", l.site.Name, err)
		}
		if !acts {
			if err := g.Zero_(); err != nil {
				return nil, nil, err
			}
			continue
		}
		if outs[i], err = torch.Float32s(outT[i]); err != nil {
			return nil, nil, err
		}
	}
	return grads, outs, nil
}
