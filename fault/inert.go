package fault

import (
	"fmt"
	"math"

	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model"
	"github.com/sugarme/gotch/ts"
)

// A weight fault w -> w' adds (w' - w) * x to the output
// neurons that read the weight. When every input x the weight meets in an image is
// zero (padding, or a ReLU-zeroed channel) and w' - w is finite, that delta is
// exactly zero: the image's outcome is the golden one and its forward pass can be
// skipped. In VGG-11 on 28x28 inputs the last two convolutions see 1x1 inputs, so 8
// of every 9 weights meet only padding; without this their faults cost a full
// suffix each.

// zeroReads is, for one site, which weight operands meet only
// zeros in an image: zero[img*per+j] for operand j (conv: input channel, kernel
// row and column; linear: input feature). It is nil when the shortcut does not
// apply (the golden input holds a NaN or Inf, so that 0 * dw is not 0 for finite
// dw on every read).
type zeroReads struct {
	per  int64
	zero []bool
}

// zeroReadsOf returns the table of site s in stage st, built once per
// evaluation set from the site's golden input: the stage's golden input at a
// lead layer, else captured from a golden pass of the stage.
func (inj *Injector) zeroReadsOf(ev *EvalSet, st int, s *model.Site) (*zeroReads, error) {
	if z, ok := ev.zero[s.Name]; ok {
		return z, nil
	}
	if ev.zero == nil {
		ev.zero = map[string]*zeroReads{}
	}
	if CheckSite(s) != nil {
		ev.zero[s.Name] = nil
		return nil, nil
	}
	x, err := inj.prefix(ev, st)
	if err != nil {
		return nil, err
	}
	var xs []float32
	if inj.m.Lead(st) == s.Name {
		if xs, err = torch.Float32s(x); err != nil {
			return nil, err
		}
	} else if xs, err = inj.siteInput(ev, x, st, s); err != nil {
		return nil, err
	}
	for _, v := range xs {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			ev.zero[s.Name] = nil
			return nil, nil
		}
	}
	z := buildZeroReads(s, xs, int64(ev.Len()))
	ev.zero[s.Name] = z
	return z, nil
}

// siteInput runs stage st on its golden input x for every evaluation image
// and returns site s's input (images x s.InShape).
func (inj *Injector) siteInput(ev *EvalSet, x *ts.Tensor, st int, s *model.Site) ([]float32, error) {
	per := model.Numel(s.InShape)
	out := make([]float32, 0, int64(ev.Len())*per)
	for i := 0; i < ev.Len(); i += inj.BatchSize {
		n := min(inj.BatchSize, ev.Len()-i)
		xb, err := x.Narrow(0, int64(i), int64(n), false)
		if err != nil {
			return nil, err
		}
		var got []float32
		hook := func(h *model.Site, in, _ *ts.Tensor) (*ts.Tensor, error) {
			if h.Name == s.Name {
				v, err := torch.Float32s(in)
				if err != nil {
					return nil, err
				}
				got = v
			}
			return nil, nil
		}
		y, err := inj.m.RunStages(xb, st, st+1, false, hook)
		xb.Drop()
		if err != nil {
			return nil, err
		}
		y.Drop()
		if int64(len(got)) != int64(n)*per {
			return nil, fmt.Errorf("fault: input of %s: %d values for %d images", s.Name, len(got), n)
		}
		out = append(out, got...)
	}
	return out, nil
}

// buildZeroReads computes the table from the layer's golden inputs xs (images x
// s.InShape, contiguous); nil (no shortcut) for a conv whose geometry the
// engine cannot describe.
func buildZeroReads(s *model.Site, xs []float32, images int64) *zeroReads {
	inPer := model.Numel(s.InShape)
	if s.Kind == model.Linear {
		z := &zeroReads{per: inPer, zero: make([]bool, images*inPer)}
		for i, v := range xs {
			z.zero[i] = v == 0
		}
		return z
	}
	g, err := GeometryOf(s)
	if err != nil {
		return nil
	}
	ci, h, w := g.Cin, g.H, g.W
	kh, kw := g.KH, g.KW
	oh, ow := g.OH, g.OW
	z := &zeroReads{per: ci * kh * kw, zero: make([]bool, images*ci*kh*kw)}
	for img := range images {
		for c := range ci {
			plane := xs[img*inPer+c*h*w : img*inPer+(c+1)*h*w]
			for ky := range kh {
				for kx := range kw {
					zero := true
					for oy := int64(0); oy < oh && zero; oy++ {
						for ox := range ow {
							y, x, ok := g.At(oy, ox, ky, kx)
							if ok && plane[y*w+x] != 0 {
								zero = false
								break
							}
						}
					}
					z.zero[img*z.per+(c*kh+ky)*kw+kx] = zero
				}
			}
		}
	}
	return z
}

// operand is the column of z that weight fault f (flat index into s's weights)
// reads, or -1 for a bias fault (which reaches every output of its channel).
func (z *zeroReads) operand(s *model.Site, f *Fault) int64 {
	if f.Param == "bias" {
		return -1
	}
	if s.Kind == model.Linear {
		return f.Index[0] % s.WeightShape[1]
	}
	k := unflat(f.Index[0], s.WeightShape)
	kh, kw := s.WeightShape[2], s.WeightShape[3]
	g := ConvGeometry{Cg: s.WeightShape[1], Og: s.WeightShape[0] / max(s.Groups, 1)}
	return (g.InChannel(k[0], k[1])*kh+k[2])*kw + k[3]
}

// inert reports whether weight fault f, changing its weight by dw, leaves image
// img's output exactly golden: dw is 0, or finite while every input the weight
// reads is 0.
func (z *zeroReads) inert(op int64, dw float32, img int64) bool {
	if dw == 0 {
		return true
	}
	if op < 0 || math.IsNaN(float64(dw)) || math.IsInf(float64(dw), 0) {
		return false
	}
	return z.zero[img*z.per+op]
}
