package fault

import (
	"math"
	"slices"
	"testing"

	"github.com/faultline/faultline/model"
)

func TestBuildZeroReads(t *testing.T) {
	conv := model.Site{Name: "c", Kind: model.Conv, InShape: []int64{1, 3, 3}, OutShape: []int64{1, 3, 3},
		WeightShape: []int64{1, 1, 3, 3}, Stride: 1, Padding: 1}
	one := model.Site{Name: "c1", Kind: model.Conv, InShape: []int64{2, 1, 1}, OutShape: []int64{1, 1, 1},
		WeightShape: []int64{1, 2, 3, 3}, Stride: 1, Padding: 1}
	lin := model.Site{Name: "fc", Kind: model.Linear, InShape: []int64{3}, OutShape: []int64{2}, WeightShape: []int64{2, 3}}
	for _, c := range []struct {
		name string
		site model.Site
		xs   []float32
		want []bool
	}{
		// Only the right column is non-zero: kernel column 0 reads input
		// columns -1..1 (padding and zeros), so it reads only zeros.
		{"conv right column", conv, []float32{0, 0, 1, 0, 0, 1, 0, 0, 1},
			[]bool{true, false, false, true, false, false, true, false, false}},
		// A single centre value is read by every kernel position.
		{"conv centre", conv, []float32{0, 0, 0, 0, 2, 0, 0, 0, 0},
			[]bool{false, false, false, false, false, false, false, false, false}},
		// A 1x1 input: only the kernel centre reads it, and channel 1 is zero.
		{"1x1 input", one, []float32{3, 0},
			[]bool{true, true, true, true, false, true, true, true, true,
				true, true, true, true, true, true, true, true, true}},
		// Two images: -0 is zero too.
		{"linear", lin, []float32{0, 1, float32(math.Copysign(0, -1)), 5, 0, 0},
			[]bool{true, false, true, false, true, true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			n := int64(len(c.xs)) / model.Numel(c.site.InShape)
			z := buildZeroReads(&c.site, c.xs, n)
			if !slices.Equal(z.zero, c.want) {
				t.Errorf("zero reads %v, want %v", z.zero, c.want)
			}
		})
	}
}

func TestInert(t *testing.T) {
	s := model.Site{Name: "c1", Kind: model.Conv, InShape: []int64{2, 1, 1}, OutShape: []int64{2, 1, 1},
		WeightShape: []int64{2, 2, 3, 3}, Stride: 1, Padding: 1}
	z := buildZeroReads(&s, []float32{3, 0}, 1)
	inf := float32(math.Inf(1))
	for _, c := range []struct {
		name string
		f    Fault
		dw   float32
		want bool
	}{
		{"padding weight", Fault{Param: "weight", Index: []int64{0}}, 0.5, true},
		{"padding weight of filter 1", Fault{Param: "weight", Index: []int64{18}}, 0.5, true},
		{"centre weight", Fault{Param: "weight", Index: []int64{4}}, 0.5, false},
		{"centre weight, zero channel", Fault{Param: "weight", Index: []int64{13}}, 0.5, true},
		{"padding weight turned Inf (0 * Inf is NaN)", Fault{Param: "weight", Index: []int64{0}}, inf, false},
		{"bias", Fault{Param: "bias", Index: []int64{0}}, 0.5, false},
		{"no change", Fault{Param: "bias", Index: []int64{0}}, 0, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := z.inert(z.operand(&s, &c.f), c.dw, 0); got != c.want {
				t.Errorf("inert = %v, want %v", got, c.want)
			}
		})
	}
}
