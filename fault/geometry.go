package fault

import (
	"fmt"

	"github.com/faultline/faultline/model"
)

// The fault engine's arithmetic on conv windows and weight indices follows each
// site's own geometry (model.Site): per-axis strides, asymmetric pads,
// dilations and groups of a conv, and the layout of a linear layer's weight
// parameter ([out, in], or [in, out] for an imported MatMul or Gemm without
// transB). Sites it cannot describe (a conv that is not 2-D, a linear layer
// whose input is not a vector) are refused by name when a fault targets them.

// ConvGeometry is a 2-D conv site's window arithmetic, from its Site fields.
type ConvGeometry struct {
	Cin, H, W      int64 // input channels, height, width
	Cout, OH, OW   int64 // output channels, height, width
	Cg, Og         int64 // input and output channels per group
	KH, KW         int64 // kernel
	SH, SW         int64 // strides
	DH, DW         int64 // dilations
	PT, PL, PB, PR int64 // pads: top, left, bottom, right
}

// GeometryOf returns conv site s's geometry, or an error naming the site when
// it is not a 2-D convolution whose shapes agree with its attributes.
func GeometryOf(s *model.Site) (ConvGeometry, error) {
	if s.Kind != model.Conv {
		return ConvGeometry{}, fmt.Errorf("fault: layer %s is a %s layer, not a conv", s.Name, s.Kind)
	}
	if len(s.WeightShape) != 4 || len(s.InShape) != 3 || len(s.OutShape) != 3 {
		return ConvGeometry{}, fmt.Errorf("fault: layer %s: weight %v, input %v, output %v: only 2-D convolutions are supported", s.Name, s.WeightShape, s.InShape, s.OutShape)
	}
	g := ConvGeometry{
		Cin: s.InShape[0], H: s.InShape[1], W: s.InShape[2],
		Cout: s.OutShape[0], OH: s.OutShape[1], OW: s.OutShape[2],
		Cg: s.WeightShape[1], KH: s.WeightShape[2], KW: s.WeightShape[3],
	}
	g.SH, g.SW = axis(s.Strides, 0, 2, max(s.Stride, 1)), axis(s.Strides, 1, 2, max(s.Stride, 1))
	g.DH, g.DW = axis(s.Dilations, 0, 2, 1), axis(s.Dilations, 1, 2, 1)
	g.PT, g.PL = axis(s.Pads, 0, 4, s.Padding), axis(s.Pads, 1, 4, s.Padding)
	g.PB, g.PR = axis(s.Pads, 2, 4, s.Padding), axis(s.Pads, 3, 4, s.Padding)
	groups := max(s.Groups, 1)
	switch {
	case s.WeightShape[0] != g.Cout:
		return g, fmt.Errorf("fault: layer %s: weight %v for %d output channels", s.Name, s.WeightShape, g.Cout)
	case g.Cg*groups != g.Cin || g.Cout%groups != 0:
		return g, fmt.Errorf("fault: layer %s: weight %v, %d groups and %d input channels do not agree", s.Name, s.WeightShape, groups, g.Cin)
	case g.SH < 1 || g.SW < 1 || g.DH < 1 || g.DW < 1:
		return g, fmt.Errorf("fault: layer %s: strides %v, dilations %v", s.Name, s.Strides, s.Dilations)
	case (g.H+g.PT+g.PB-g.DH*(g.KH-1)-1)/g.SH+1 != g.OH || (g.W+g.PL+g.PR-g.DW*(g.KW-1)-1)/g.SW+1 != g.OW:
		return g, fmt.Errorf("fault: layer %s: output %v does not follow from input %v, kernel %v, strides [%d %d], pads [%d %d %d %d], dilations [%d %d]",
			s.Name, s.OutShape, s.InShape, s.WeightShape[2:], g.SH, g.SW, g.PT, g.PL, g.PB, g.PR, g.DH, g.DW)
	}
	g.Og = g.Cout / groups
	return g, nil
}

// axis returns v[i] when v has n elements, else def (a zoo site without
// per-axis fields).
func axis(v []int64, i, n int, def int64) int64 {
	if len(v) == n {
		return v[i]
	}
	return def
}

// At maps output position (oy, ox) and kernel tap (ky, kx) to the input
// position they read; ok is false in the zero padding.
func (g ConvGeometry) At(oy, ox, ky, kx int64) (y, x int64, ok bool) {
	y = oy*g.SH + ky*g.DH - g.PT
	x = ox*g.SW + kx*g.DW - g.PL
	return y, x, y >= 0 && x >= 0 && y < g.H && x < g.W
}

// InChannel maps output channel c and kernel channel ci (group-relative, the
// weight's second index) to the input channel it reads.
func (g ConvGeometry) InChannel(c, ci int64) int64 { return (c/g.Og)*g.Cg + ci }

// Outputs returns, along one axis, the output positions o whose tap k reads
// input position i (o*stride + k*dilation - pad = i), appended to dst.
func outputs(dst []int64, i, k, stride, dil, pad, n int64) []int64 {
	v := i + pad - k*dil
	if v < 0 || v%stride != 0 || v/stride >= n {
		return dst
	}
	return append(dst, v/stride)
}

// CheckSite reports whether the engine (and DeepVigor+) can address faults in
// site s exactly: a 2-D conv with a consistent geometry, or a linear layer on a
// vector computing x W^T + b; otherwise the error names the layer and why.
func CheckSite(s *model.Site) error {
	if s.Unsupported != "" {
		return fmt.Errorf("fault: layer %s: %s; faults are injected only where the layer computes x W^T + b", s.Name, s.Unsupported)
	}
	if s.Kind == model.Conv {
		_, err := GeometryOf(s)
		return err
	}
	if len(s.WeightShape) != 2 || len(s.InShape) != 1 || len(s.OutShape) != 1 ||
		s.InShape[0] != s.WeightShape[1] || s.OutShape[0] != s.WeightShape[0] {
		return fmt.Errorf("fault: layer %s: weight %v, input %v, output %v: only a linear layer on a vector is supported", s.Name, s.WeightShape, s.InShape, s.OutShape)
	}
	return nil
}

// storeIndex maps weight fault index i (row-major in WeightShape, [out, in] for
// a linear layer) to the element of the weight parameter as stored ([in, out]
// when s.TransposedWeight).
func storeIndex(s *model.Site, i int64) int64 {
	if s.Kind != model.Linear || !s.TransposedWeight {
		return i
	}
	out, in := s.WeightShape[0], s.WeightShape[1]
	return (i%in)*out + i/in
}

// paramOf is the state_dict name of weight fault f's parameter in site s.
func paramOf(s *model.Site, f *Fault) string {
	if f.Param == "bias" {
		return s.Bias()
	}
	return s.Weight()
}

// sitePtr returns a copy of the named site.
func (inj *Injector) sitePtr(name string) *model.Site {
	s := inj.sites[name]
	return &s
}
