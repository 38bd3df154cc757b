package fault

import (
	"fmt"
	"sort"

	"github.com/faultline/faultline/model"
)

// Space is the set of faults a campaign draws from.
type Space struct {
	Target Target `json:"target"`
	Point  Point  `json:"point,omitempty"` // activation faults (default output)
	// Layers restricts the space to these sites (default: all).
	Layers []string `json:"layers,omitempty"`
	// Bits are the bit positions (default 0..31).
	Bits []int `json:"bits,omitempty"`
	Kind Kind  `json:"kind"`
	// Multi is the number of distinct bits per fault (default 1), drawn from
	// Bits: flipped by a bit flip, forced by a stuck-at fault.
	Multi int `json:"multi,omitempty"`
	// Bias adds the biases of conv and linear layers to a weight space.
	Bias bool `json:"bias,omitempty"`
	// Duration of weight faults (default transient).
	Duration Duration `json:"duration,omitempty"`
}

// Sampler names how a plan draws from its space.
type Sampler string

// Samplers.
const (
	Exhaustive Sampler = "exhaustive" // every fault of the space, in order
	Uniform    Sampler = "uniform"    // n faults uniformly, without replacement
	SFI        Sampler = "sfi"        // Leveugle et al. sample sizes per stratum
)

// Stratification is how SFI splits the space.
type Stratification string

// Stratifications (Ruospo et al.'s names in comments).
const (
	NetworkWise  Stratification = "network"   // one stratum (DATE09)
	LayerWise    Stratification = "layer"     // one per layer
	LayerBitWise Stratification = "layer-bit" // one per layer and bit (data-unaware)
)

// Stratum is one part of a plan: a population and the faults drawn from it.
type Stratum struct {
	Layer      string `json:"layer,omitempty"` // "" = all layers
	Bit        *int   `json:"bit,omitempty"`   // nil = all bits
	Population int64  `json:"population"`
	N          int64  `json:"n"`
	first      int64  // ID of its first fault
	elems      []layerElems
}

// layerElems is one layer's elements and their place in a stratum's enumeration.
type layerElems struct {
	site  model.Site
	n     int64 // elements (weights [+ biases], or activation positions)
	start int64 // first combination index in the stratum
}

// Plan is a campaign's list of faults, computed lazily: Fault(i) depends only on
// the plan and i.
type Plan struct {
	Space   Space          `json:"space"`
	Sampler Sampler        `json:"sampler"`
	Strata  []Stratum      `json:"strata"`
	Strat   Stratification `json:"stratification,omitempty"`
	// SFI parameters: error margin, confidence (with its quantile t) and expected
	// proportion of critical faults.
	E          float64 `json:"e,omitempty"`
	Confidence float64 `json:"confidence,omitempty"`
	T          float64 `json:"t,omitempty"`
	P          float64 `json:"p,omitempty"`
	Seed       int64   `json:"seed"`
	Total      int64   `json:"faults"`
	Population int64   `json:"population"`
	bits       []int
	perBit     bool
}

// PlanOptions are the choices of NewPlan.
type PlanOptions struct {
	Sampler    Sampler
	Faults     int64 // uniform: number of faults
	Strat      Stratification
	E          float64
	Confidence float64
	P          float64
	Seed       int64
}

// NewPlan builds a plan over the model's fault space.
func NewPlan(m *model.Model, sp Space, o PlanOptions) (*Plan, error) {
	if sp.Kind == "" {
		sp.Kind = BitFlip
	}
	if sp.Target == Activation && sp.Point == "" {
		sp.Point = Output
	}
	if sp.Multi == 0 {
		sp.Multi = 1
	}
	if sp.Duration == "" {
		sp.Duration = Transient
	}
	bits := sp.Bits
	if len(bits) == 0 {
		for b := 0; b < Float32Bits; b++ {
			bits = append(bits, b)
		}
	}
	seenBit := map[int]bool{}
	for _, b := range bits {
		if b < 0 || b >= Float32Bits {
			return nil, fmt.Errorf("fault: bit %d outside 0..31", b)
		}
		if seenBit[b] {
			return nil, fmt.Errorf("fault: bit %d given twice", b)
		}
		seenBit[b] = true
	}
	switch sp.Kind {
	case BitFlip, StuckAt0, StuckAt1, Zero, RandomValue:
	default:
		return nil, fmt.Errorf("fault: kind %q: want bitflip, stuck0, stuck1, random or zero", sp.Kind)
	}
	if sp.Multi < 1 {
		return nil, fmt.Errorf("fault: multi %d: want at least 1 bit per fault", sp.Multi)
	}
	if sp.Multi > 1 && (sp.Kind == Zero || sp.Kind == RandomValue) {
		return nil, fmt.Errorf("fault: multi %d: several bits per fault are for bitflip, stuck0 and stuck1, not %s", sp.Multi, sp.Kind)
	}
	if sp.Multi > len(bits) {
		return nil, fmt.Errorf("fault: multi %d: more distinct bits per fault than the %d bit positions to draw them from", sp.Multi, len(bits))
	}
	switch sp.Target {
	case Weight:
		if sp.Point != "" {
			return nil, fmt.Errorf("fault: --site is for activation faults")
		}
	case Activation:
		if sp.Point != Output && sp.Point != Input && sp.Point != MAC {
			return nil, fmt.Errorf("fault: site %q: want output, input or mac", sp.Point)
		}
		if sp.Duration == Permanent {
			return nil, fmt.Errorf("fault: activation faults are transient")
		}
	default:
		return nil, fmt.Errorf("fault: target %q: want weights or activations", sp.Target)
	}
	sites := m.Sites()
	byName := map[string]model.Site{}
	for _, s := range sites {
		byName[s.Name] = s
	}
	var chosen []model.Site
	if len(sp.Layers) == 0 {
		chosen = sites
	} else {
		seen := map[string]bool{}
		for _, l := range sp.Layers {
			s, ok := byName[l]
			if !ok {
				return nil, fmt.Errorf("fault: unknown layer %q (layers: %v)", l, m.SiteNames())
			}
			if seen[l] {
				return nil, fmt.Errorf("fault: layer %q given twice", l)
			}
			seen[l] = true
			chosen = append(chosen, s)
		}
	}
	p := &Plan{Space: sp, Sampler: o.Sampler, Seed: o.Seed, bits: bits}
	// single-bit kinds enumerate (element, bit) pairs; the others draw bits per fault
	p.perBit = sp.Multi == 1 && (sp.Kind == BitFlip || sp.Kind == StuckAt0 || sp.Kind == StuckAt1)
	nb := int64(1)
	if p.perBit {
		nb = int64(len(bits))
	}
	stratum := func(layers []model.Site, bit *int) Stratum {
		st := Stratum{Bit: bit}
		if len(layers) == 1 {
			st.Layer = layers[0].Name
		}
		for _, s := range layers {
			n := p.elements(s)
			st.elems = append(st.elems, layerElems{site: s, n: n, start: st.Population})
			mult := nb
			if bit != nil {
				mult = 1
			}
			st.Population += n * mult
		}
		return st
	}
	switch o.Sampler {
	case Exhaustive, Uniform:
		st := stratum(chosen, nil)
		st.N = st.Population
		if o.Sampler == Uniform {
			if o.Faults < 1 {
				return nil, fmt.Errorf("fault: uniform sampling needs --faults >= 1")
			}
			st.N = min(o.Faults, st.Population)
		}
		p.Strata = []Stratum{st}
	case SFI:
		p.Strat, p.E, p.Confidence, p.P = o.Strat, o.E, o.Confidence, o.P
		if p.Strat == "" {
			p.Strat = LayerWise
		}
		if p.P == 0 {
			p.P = 0.5
		}
		p.T = Quantile(p.Confidence)
		switch p.Strat {
		case NetworkWise:
			p.Strata = []Stratum{stratum(chosen, nil)}
		case LayerWise:
			for _, s := range chosen {
				p.Strata = append(p.Strata, stratum([]model.Site{s}, nil))
			}
		case LayerBitWise:
			if !p.perBit {
				return nil, fmt.Errorf("fault: layer-bit strata need single-bit faults")
			}
			for _, s := range chosen {
				for _, b := range bits {
					b := b
					p.Strata = append(p.Strata, stratum([]model.Site{s}, &b))
				}
			}
		default:
			return nil, fmt.Errorf("fault: stratification %q: want network, layer or layer-bit", p.Strat)
		}
		for i := range p.Strata {
			n, err := SampleSize(p.Strata[i].Population, p.E, p.Confidence, p.P)
			if err != nil {
				return nil, err
			}
			p.Strata[i].N = n
		}
	default:
		return nil, fmt.Errorf("fault: sampler %q: want exhaustive, uniform or sfi", o.Sampler)
	}
	for i := range p.Strata {
		p.Strata[i].first = p.Total
		p.Total += p.Strata[i].N
		p.Population += p.Strata[i].Population
	}
	return p, nil
}

// elements counts a site's fault positions for the plan's space.
func (p *Plan) elements(s model.Site) int64 {
	switch {
	case p.Space.Target == Weight:
		n := model.Numel(s.WeightShape)
		if p.Space.Bias && s.HasBias {
			n += s.WeightShape[0]
		}
		return n
	case p.Space.Point == Input:
		return model.Numel(s.InShape)
	case p.Space.Point == MAC:
		return model.Numel(s.OutShape) * model.Numel(s.WeightShape[1:])
	}
	return model.Numel(s.OutShape)
}

// Fault returns fault i (0 <= i < Total) of the plan.
func (p *Plan) Fault(i int64) Fault {
	k := sort.Search(len(p.Strata), func(k int) bool { return p.Strata[k].first+p.Strata[k].N > i })
	st := &p.Strata[k]
	j := i - st.first
	combo := j
	if p.Sampler != Exhaustive {
		combo = newPermutation(st.Population, p.Seed, uint64(k)+1).at(j)
	}
	nb := int64(1)
	if p.perBit && st.Bit == nil {
		nb = int64(len(p.bits))
	}
	e := sort.Search(len(st.elems), func(e int) bool { return st.elems[e].start+st.elems[e].n*nb > combo })
	le := st.elems[e]
	rel := combo - le.start
	elem, bitIdx := rel/nb, rel%nb
	f := Fault{ID: i, Target: p.Space.Target, Layer: le.site.Name, Kind: p.Space.Kind, DType: Float32, Duration: p.Space.Duration}
	switch {
	case p.Space.Target == Weight:
		wn := model.Numel(le.site.WeightShape)
		f.Param, f.Index = "weight", []int64{elem}
		if elem >= wn {
			f.Param, f.Index = "bias", []int64{elem - wn}
		}
	case p.Space.Point == MAC:
		opn := model.Numel(le.site.WeightShape[1:])
		f.Point = MAC
		f.Index = unflat(elem/opn, le.site.OutShape)
		f.Operand = unflat(elem%opn, le.site.WeightShape[1:])
	case p.Space.Point == Input:
		f.Point, f.Index = Input, unflat(elem, le.site.InShape)
	default:
		f.Point, f.Index = Output, unflat(elem, le.site.OutShape)
	}
	r := newStream(p.Seed, 0xb175, i)
	switch {
	case st.Bit != nil:
		f.Bits = []int{*st.Bit}
	case p.perBit:
		f.Bits = []int{p.bits[bitIdx]}
	case p.Space.Kind == BitFlip, p.Space.Kind == StuckAt0, p.Space.Kind == StuckAt1:
		f.Bits = drawBits(r, p.bits, p.Space.Multi)
	case p.Space.Kind == RandomValue:
		v := Value(Bits(uint32(r.next())).Float())
		f.Value = &v
	}
	return f
}

// drawBits draws k distinct bits from bits, sorted.
func drawBits(r *stream, bits []int, k int) []int {
	pool := append([]int(nil), bits...)
	out := make([]int, 0, k)
	for j := 0; j < k; j++ {
		x := j + int(r.intn(int64(len(pool)-j)))
		pool[j], pool[x] = pool[x], pool[j]
		out = append(out, pool[j])
	}
	sort.Ints(out)
	return out
}
