package eval

import (
	"math"
	"testing"

	"github.com/faultline/faultline/eval/deepvigor"
)

func TestMVFIntervals(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	ci := func(lo, hi float64) *[2]float64 { return &[2]float64{lo, hi} }
	// acts builds an activations-only layer, both a layer with both targets.
	acts := func(name string, v float64, c *[2]float64) deepvigor.Layer {
		return deepvigor.Layer{Name: name, Kind: "conv", LVFActivations: f(v), LVFActivationsCI: c}
	}
	both := func(name string, n, w int64, a float64, ac *[2]float64, wv float64, wc *[2]float64) deepvigor.Layer {
		return deepvigor.Layer{Name: name, Kind: "conv", Neurons: n, Weights: w, LVFActivations: f(a), LVFActivationsCI: ac,
			LVFWeights: f(wv), LVFWeightsCI: wc}
	}
	for _, tc := range []struct {
		name   string
		layers []deepvigor.Layer
		pick   func(MVF) (*float64, *[2]float64)
		value  float64
		want   *[2]float64 // nil: no interval
	}{
		{"one complete layer has zero width",
			[]deepvigor.Layer{acts("a", 0.02, ci(0.02, 0.02))},
			func(m MVF) (*float64, *[2]float64) { return m.Activations, m.ActivationsCI }, 0.02, ci(0.02, 0.02)},
		// (0.02 + 0.04)/2 = 0.03; half-width sqrt(0^2 + 0.01^2)/2 = 0.005.
		{"a complete and a sampled layer",
			[]deepvigor.Layer{acts("a", 0.02, ci(0.02, 0.02)), acts("b", 0.04, ci(0.03, 0.05))},
			func(m MVF) (*float64, *[2]float64) { return m.Activations, m.ActivationsCI }, 0.03, ci(0.025, 0.035)},
		// Half-widths 0.006 and 0.008 in quadrature: 0.01, over 2 layers 0.005.
		{"two sampled layers in quadrature",
			[]deepvigor.Layer{acts("a", 0.02, ci(0.014, 0.026)), acts("b", 0.04, ci(0.032, 0.048))},
			func(m MVF) (*float64, *[2]float64) { return m.Activations, m.ActivationsCI }, 0.03, ci(0.025, 0.035)},
		// An interval clipped at 0 counts with its wider side (0.02).
		{"clipped interval: the wider side",
			[]deepvigor.Layer{acts("a", 0.01, ci(0, 0.03)), acts("b", 0.05, ci(0.05, 0.05))},
			func(m MVF) (*float64, *[2]float64) { return m.Activations, m.ActivationsCI }, 0.03, ci(0.02, 0.04)},
		{"a layer without an interval leaves none",
			[]deepvigor.Layer{acts("a", 0.02, nil), acts("b", 0.04, ci(0.03, 0.05))},
			func(m MVF) (*float64, *[2]float64) { return m.Activations, m.ActivationsCI }, 0.03, nil},
		{"the lower end is clipped at 0",
			[]deepvigor.Layer{acts("a", 0.001, ci(0, 0.011))},
			func(m MVF) (*float64, *[2]float64) { return m.Activations, m.ActivationsCI }, 0.001, ci(0, 0.011)},
		// Weights 0.25, activations 0.75: term 0.75*0.02 + 0.25*0.04 = 0.025,
		// half-width 0.75*0.004 + 0.25*0.008 = 0.005 (linear within the layer).
		{"total: one layer, its targets add linearly",
			[]deepvigor.Layer{both("a", 300, 100, 0.02, ci(0.016, 0.024), 0.04, ci(0.032, 0.048))},
			func(m MVF) (*float64, *[2]float64) { return m.Total, m.TotalCI }, 0.025, ci(0.02, 0.03)},
		// Second layer complete: term 0.5*0.01 + 0.5*0.03 = 0.02; mean 0.0225,
		// half-width sqrt(0.005^2 + 0)/2 = 0.0025.
		{"total: a sampled and a complete layer",
			[]deepvigor.Layer{both("a", 300, 100, 0.02, ci(0.016, 0.024), 0.04, ci(0.032, 0.048)),
				both("b", 100, 100, 0.01, ci(0.01, 0.01), 0.03, ci(0.03, 0.03))},
			func(m MVF) (*float64, *[2]float64) { return m.Total, m.TotalCI }, 0.0225, ci(0.02, 0.025)},
		{"total: a target without an interval leaves none",
			[]deepvigor.Layer{both("a", 300, 100, 0.02, ci(0.016, 0.024), 0.04, nil)},
			func(m MVF) (*float64, *[2]float64) { return m.Total, m.TotalCI }, 0.025, nil},
		{"weights: the weight intervals only",
			[]deepvigor.Layer{both("a", 300, 100, 0.02, nil, 0.04, ci(0.032, 0.048)),
				both("b", 100, 100, 0.01, nil, 0.03, ci(0.024, 0.036))},
			func(m MVF) (*float64, *[2]float64) { return m.Weights, m.WeightsCI }, 0.035, ci(0.03, 0.04)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := mvf(tc.layers, false)
			v, got := tc.pick(m)
			if v == nil || math.Abs(*v-tc.value) > 1e-12 {
				t.Fatalf("value %v, want %g", v, tc.value)
			}
			switch {
			case tc.want == nil && got != nil:
				t.Errorf("interval %v, want none", *got)
			case tc.want != nil && got == nil:
				t.Errorf("no interval, want %v", *tc.want)
			case tc.want != nil && (math.Abs(got[0]-tc.want[0]) > 1e-12 || math.Abs(got[1]-tc.want[1]) > 1e-12):
				t.Errorf("interval %v, want %v", *got, *tc.want)
			}
		})
	}
}

// The paper's MVF (conv layers only) leaves the linear layers' intervals out,
// and no layers give neither a value nor an interval.
func TestMVFIntervalsConvOnlyAndEmpty(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	layers := []deepvigor.Layer{
		{Name: "conv1", Kind: "conv", LVFWeights: f(0.02), LVFWeightsCI: &[2]float64{0.01, 0.03}},
		{Name: "fc1", Kind: "linear", LVFWeights: f(0.04), LVFWeightsCI: nil},
	}
	if m := mvf(layers, true); m.WeightsCI == nil || m.WeightsCI[0] != 0.01 || m.WeightsCI[1] != 0.03 {
		t.Errorf("conv only: %+v", m)
	}
	if m := mvf(layers, false); m.Weights == nil || m.WeightsCI != nil {
		t.Errorf("all layers, fc1 without an interval: %+v", m)
	}
	if m := mvf(nil, false); m.Activations != nil || m.ActivationsCI != nil || m.Total != nil || m.TotalCI != nil {
		t.Errorf("no layers: %+v", m)
	}
}
