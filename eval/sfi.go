package eval

import (
	"math"

	"github.com/faultline/faultline/eval/deepvigor"
	"github.com/faultline/faultline/fault"
)

// SFIBaseline is what statistical fault injection would need for the analysed
// layers (spec importance-fat-sfi section 2): Leveugle's sample size with error
// margin E, expected proportion P and the normal quantile of each confidence,
// summed over strata. One injection evaluates one fault on one image, the unit
// of image_forwards; a fault evaluated on all the analysis images costs Images
// of them.
type SFIBaseline struct {
	E      float64 `json:"e"`
	P      float64 `json:"p"`
	Images int     `json:"images"`
	// Strata: layer_wise = one stratum per layer of 32 * W_l faults;
	// data_unaware = one per (layer, bit) of W_l faults; data_aware = one per
	// layer of W_l faults, i.e. one live bit per layer, the approximation that
	// reproduces DeepVigor+'s Table VI. Activation populations use N_l = C*H*W
	// output neurons per image in place of W_l.
	Note        string       `json:"note"`
	Confidences []SFISetting `json:"confidences"`
}

// SFISetting is the baseline at one confidence.
type SFISetting struct {
	Confidence  float64   `json:"confidence"`
	T           float64   `json:"t"`
	Weights     SFICounts `json:"weights"`
	Activations SFICounts `json:"activations"`
	// DataAwareImageForwards is the data-aware count for the analysed targets
	// with every fault evaluated on all the analysis images; Reduction is it
	// divided by the analysis's image_forwards.
	DataAwareImageForwards int64   `json:"data_aware_image_forwards"`
	Reduction              float64 `json:"reduction_vs_data_aware"`
}

// SFICounts are injections (faults) per stratification.
type SFICounts struct {
	LayerWise   int64 `json:"layer_wise"`
	DataUnaware int64 `json:"data_unaware"`
	DataAware   int64 `json:"data_aware"`
}

// sfiBaseline counts the SFI injections for the layers of r, at 95% (t = 1.96)
// and 99% (t = 2.58) confidence, e = 1%, p = 0.5.
func sfiBaseline(r *deepvigor.Result, activations, weights bool) SFIBaseline {
	const e, p = 0.01, 0.5
	b := SFIBaseline{E: e, P: p, Images: r.Images,
		Note: "layer_wise: one stratum of 32*W_l faults per layer; data_unaware: 32 strata of W_l per layer; data_aware: one stratum of W_l per layer (one live bit, as DeepVigor+ Table VI implies); activations use N_l = C*H*W neurons in place of W_l"}
	for _, c := range []struct{ conf, t float64 }{{0.95, 1.96}, {0.99, 2.58}} {
		s := SFISetting{Confidence: c.conf, T: c.t}
		n := func(pop int64) int64 { return int64(math.Ceil(fault.LeveugleN(pop, e, c.t, p) - 1e-9)) }
		for _, l := range r.Layers {
			s.Weights.LayerWise += n(32 * l.Weights)
			s.Weights.DataUnaware += 32 * n(l.Weights)
			s.Weights.DataAware += n(l.Weights)
			s.Activations.LayerWise += n(32 * l.Neurons)
			s.Activations.DataUnaware += 32 * n(l.Neurons)
			s.Activations.DataAware += n(l.Neurons)
		}
		if weights {
			s.DataAwareImageForwards += s.Weights.DataAware * int64(r.Images)
		}
		if activations {
			s.DataAwareImageForwards += s.Activations.DataAware * int64(r.Images)
		}
		if r.ImageForwards > 0 {
			s.Reduction = float64(s.DataAwareImageForwards) / float64(r.ImageForwards)
		}
		b.Confidences = append(b.Confidences, s)
	}
	return b
}
