package deepvigor

import (
	"math"
	"testing"

	"github.com/faultline/faultline/datasets"
	"github.com/faultline/faultline/internal/testgraph"
	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model"
	"github.com/faultline/faultline/model/onnx"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// The MAC operands the analysis unfolds (newOperands: windows through each
// conv's per-axis strides, asymmetric pads, dilations and groups; a linear
// layer's [in, out] weight read as [out, in]) times the filter's weights sum
// with the bias to the layer's output, at every site of smallnet and of a
// graph of irregular geometries, under both semantics.
func TestOperandsSumToOutput(t *testing.T) {
	odd, err := model.FromGraph(testgraph.Odd(t), gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	g, err := onnx.ReadFile("../../model/testdata/onnx/smallnet-opset13-eval.onnx")
	if err != nil {
		t.Fatal(err)
	}
	small, err := model.FromGraph(g, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	set := datasets.Synthetic(datasets.SyntheticConfig{N: 3, C: 1, H: 28, W: 28, Classes: 10, Seed: 3, Split: datasets.Test})
	xs := make([]float32, len(set.Pixels))
	for i, v := range set.Pixels {
		xs[i] = float32(v)/255 - 0.5
	}
	for _, m := range []*model.Model{small, odd} {
		for _, sem := range []Semantics{Exact, Reference} {
			do(t, func() error {
				return torch.NoGrad(func() error {
					x, err := torch.FromFloat32(xs, []int64{3, 1, 28, 28}, gotch.CPU)
					if err != nil {
						return err
					}
					defer x.Drop()
					hook := func(s *model.Site, in, out *ts.Tensor) (*ts.Tensor, error) {
						return nil, checkOperands(t, m, *s, in, out, sem)
					}
					y, err := m.Forward(x, false, hook)
					if err != nil {
						return err
					}
					y.Drop()
					return nil
				})
			})
		}
	}
}

// checkOperands compares, for every channel of site s, the operands' dot
// product with the filter (plus the bias) with the layer's output out.
func checkOperands(t *testing.T, m *model.Model, s model.Site, in, out *ts.Tensor, sem Semantics) error {
	var sc torch.Scope
	defer sc.Drop()
	o, err := newOperands(&sc, s, in, sem)
	if err != nil {
		return err
	}
	w, err := analysisWeight(&sc, m, s)
	if err != nil {
		return err
	}
	wv, err := torch.Float32s(w)
	if err != nil {
		return err
	}
	var bias []float32
	if s.HasBias {
		b, err := m.Param(s.Bias())
		if err != nil {
			return err
		}
		if bias, err = torch.Float32s(b); err != nil {
			return err
		}
	}
	ov, err := torch.Float32s(out)
	if err != nil {
		return err
	}
	hw := int64(positions(s))
	all := make([]int, hw)
	for i := range all {
		all[i] = i
	}
	for c := range s.OutShape[0] {
		x, _, err := o.slice(&sc, int(c), all)
		if err != nil {
			return err
		}
		v, err := torch.Float32s(x) // [P, B, f]
		if err != nil {
			return err
		}
		filter := wv[c*o.f : (c+1)*o.f]
		for p := range hw {
			for b := range o.images {
				var sum, mag float64
				for f := range o.f {
					e := float64(v[(p*o.images+b)*o.f+f]) * float64(filter[f])
					sum, mag = sum+e, mag+math.Abs(e)
				}
				if bias != nil {
					sum += float64(bias[c])
				}
				got := float64(ov[b*model.Numel(s.OutShape)+c*hw+p])
				if math.Abs(sum-got) > 1e-4*(1+mag) {
					t.Errorf("%s (%s) channel %d position %d image %d: operands give %v, output %v", s.Name, sem, c, p, b, sum, got)
					return nil
				}
			}
		}
	}
	return nil
}
