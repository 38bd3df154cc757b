package eval

import (
	"math"
	"slices"
	"testing"

	"github.com/faultline/faultline/eval/deepvigor"
	"github.com/faultline/faultline/model"
)

// lenetConv1 is LeNet-5's first layer on 28x28 inputs: 5x5 kernels, padding 2.
var lenetConv1 = model.Site{Name: "conv1", Kind: model.Conv, Index: 0, WeightShape: []int64{6, 1, 5, 5},
	InShape: []int64{1, 28, 28}, OutShape: []int64{6, 28, 28}, Stride: 1, Padding: 2}

func TestBorderNeurons(t *testing.T) {
	unpadded := lenetConv1
	unpadded.Padding, unpadded.InShape, unpadded.OutShape = 0, []int64{1, 32, 32}, []int64{6, 28, 28}
	for _, c := range []struct {
		name string
		s    model.Site
		y, x int
		want bool
	}{
		{"top-left corner", lenetConv1, 0, 0, true},
		{"one row in", lenetConv1, 1, 14, true},
		{"first interior row", lenetConv1, 2, 14, false},
		{"centre", lenetConv1, 14, 14, false},
		{"last interior column", lenetConv1, 14, 25, false},
		{"right edge", lenetConv1, 14, 26, true},
		{"bottom-right corner", lenetConv1, 27, 27, true},
		{"no padding", unpadded, 0, 0, false},
		{"linear", model.Site{Kind: model.Linear, OutShape: []int64{10}}, 0, 0, false},
	} {
		w := 1
		if len(c.s.OutShape) == 3 {
			w = int(c.s.OutShape[2])
		}
		if got := border(c.s, c.y*w+c.x); got != c.want {
			t.Errorf("%s (%d, %d): border %v, want %v", c.name, c.y, c.x, got, c.want)
		}
	}
}

// Validation neurons are drawn at random, border and interior both from two on,
// reproducibly per (seed, site, channel), and all of them when asked for more.
func TestValidationNeuronsDrawBorderAndInterior(t *testing.T) {
	all := make([]int, 28*28)
	for i := range all {
		all[i] = i
	}
	ch := deepvigor.Channel{Index: 3, Positions: all}
	corners := 0
	for seed := range int64(50) {
		got := validationNeurons(lenetConv1, ch, 4, seed)
		if len(got) != 4 || !slices.IsSorted(got) {
			t.Fatalf("seed %d: %v, want 4 sorted indices", seed, got)
		}
		nb := 0
		for _, k := range got {
			if border(lenetConv1, ch.Positions[k]) {
				nb++
			}
			if k == 0 {
				corners++
			}
		}
		if nb == 0 || nb == 4 {
			t.Errorf("seed %d: %d of 4 drawn neurons on the border, want both kinds", seed, nb)
		}
		if again := validationNeurons(lenetConv1, ch, 4, seed); !slices.Equal(got, again) {
			t.Errorf("seed %d: %v then %v", seed, got, again)
		}
	}
	if corners > 5 {
		t.Errorf("the top-left corner was drawn in %d of 50 seeds", corners)
	}
	other := ch
	other.Index = 4
	if slices.Equal(validationNeurons(lenetConv1, ch, 4, 1), validationNeurons(lenetConv1, other, 4, 1)) {
		t.Error("two channels drew the same positions")
	}
	few := deepvigor.Channel{Index: 0, Positions: []int{5, 400, 700}}
	if got := validationNeurons(lenetConv1, few, 4, 1); !slices.Equal(got, []int{0, 1, 2}) {
		t.Errorf("3 analysed positions, 4 asked: %v, want all", got)
	}
	if got := validationNeurons(lenetConv1, ch, 1, 1); len(got) != 1 {
		t.Errorf("one neuron asked: %v", got)
	}
}

func TestLayerAgreementsSplitByLayer(t *testing.T) {
	out := 0.5
	units := []Unit{
		{Target: "weights", Layer: "conv1", DV: 0.02, FI: 0.01},
		{Target: "weights", Layer: "conv1", DV: 0.03, FI: 0.03},
		{Target: "weights", Layer: "fc1", DV: 0.01, FI: 0.02},
		{Target: "activations", Layer: "fc1", DV: 0.04, FI: 0.01, FIOutput: &out},
	}
	got := layerAgreements([]string{"conv1", "conv2", "fc1"}, units)
	if len(got) != 2 || got[0].Layer != "conv1" || got[1].Layer != "fc1" {
		t.Fatalf("layers %+v, want conv1 and fc1 (conv2 has no units)", got)
	}
	if w := got[0].Weights; w == nil || w.N != 2 || math.Abs(w.MAE-0.005) > 1e-12 || got[0].Activations != nil {
		t.Errorf("conv1: %+v", got[0])
	}
	if a := got[1].Activations; a == nil || a.N != 1 || math.Abs(a.MAE-0.03) > 1e-12 || got[1].ActivationsOutput == nil {
		t.Errorf("fc1 activations: %+v", got[1])
	}
}
