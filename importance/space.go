package importance

import (
	"fmt"
	"sort"

	"github.com/faultline/faultline/fault"
	"github.com/faultline/faultline/model"
)

// Bits is the number of bit positions of a float32 fault site.
const Bits = 32

// Target is what the faults of a campaign corrupt.
type Target string

// Targets.
const (
	Weights     Target = "weights"     // one bit of one weight (conv and linear, no bias)
	Activations Target = "activations" // one bit of one layer output, on every image
)

// ParseTarget checks a target name.
func ParseTarget(s string) (Target, error) {
	switch t := Target(s); t {
	case Weights, Activations:
		return t, nil
	}
	return "", fmt.Errorf("importance: unknown target %q (want weights or activations)", s)
}

// layerSpace is one layer's elements in the space's global element numbering.
type layerSpace struct {
	site  model.Site
	n     int64 // elements: weights, or output activations per image
	start int64 // global index of its first element
	unit  int64 // elements per unit (a filter's weights, an output channel's positions)
}

// space is the single-bit fault space of a target over a model's conv and
// linear layers: Elems elements with Bits bits each. A fault's key is
// element*Bits + bit, with elements numbered layer after layer.
type space struct {
	target Target
	layers []layerSpace
	elems  int64
}

func newSpace(m *model.Model, t Target) (*space, error) {
	s := &space{target: t}
	for _, site := range m.Sites() {
		l := layerSpace{site: site, start: s.elems}
		if t == Weights {
			l.n = model.Numel(site.WeightShape)
			l.unit = model.Numel(site.WeightShape[1:])
		} else {
			l.n = model.Numel(site.OutShape)
			l.unit = model.Numel(site.OutShape[1:])
		}
		s.layers = append(s.layers, l)
		s.elems += l.n
	}
	if s.elems == 0 {
		return nil, fmt.Errorf("importance: the model has no conv or linear layer")
	}
	return s, nil
}

// faults is the number of faults in the space.
func (s *space) faults() int64 { return s.elems * Bits }

// layerOf returns the index of the layer holding global element e.
func (s *space) layerOf(e int64) int {
	return sort.Search(len(s.layers), func(i int) bool { return s.layers[i].start+s.layers[i].n > e })
}

// unitOf returns the layer and the unit (output channel) of element e.
func (s *space) unitOf(e int64) (layer int, unit int64) {
	l := s.layerOf(e)
	return l, (e - s.layers[l].start) / s.layers[l].unit
}

// fault builds the engine's fault for key k; id numbers it in its list.
func (s *space) fault(k int64, id int64) fault.Fault {
	e, b := k/Bits, int(k%Bits)
	l := &s.layers[s.layerOf(e)]
	rel := e - l.start
	f := fault.Fault{ID: id, Layer: l.site.Name, Kind: fault.BitFlip, Bits: []int{b}, DType: fault.Float32,
		Duration: fault.Transient}
	if s.target == Weights {
		f.Target, f.Param, f.Index = fault.Weight, "weight", []int64{rel}
		return f
	}
	f.Target, f.Point = fault.Activation, fault.Output
	f.Index = unflat(rel, l.site.OutShape)
	return f
}

// unflat turns a row-major flat index into coordinates of shape.
func unflat(i int64, shape []int64) []int64 {
	out := make([]int64, len(shape))
	for d := len(shape) - 1; d >= 0; d-- {
		out[d] = i % shape[d]
		i /= shape[d]
	}
	return out
}

// bitClass names the four bit classes of a float32 (the strata of per-class
// estimates): sign, the exponent's MSB, the other exponent bits, the mantissa.
func bitClass(b int) string {
	switch {
	case b == 31:
		return "sign"
	case b == 30:
		return "exp_msb"
	case b >= 23:
		return "exponent"
	}
	return "mantissa"
}

// bitClasses lists the classes in report order with their bit counts.
var bitClasses = []struct {
	name string
	bits int
}{{"sign", 1}, {"exp_msb", 1}, {"exponent", 7}, {"mantissa", 23}}
