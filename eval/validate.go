package eval

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"sort"

	"github.com/faultline/faultline/eval/deepvigor"
	"github.com/faultline/faultline/fault"
	"github.com/faultline/faultline/model"
)

// Validation compares DeepVigor+'s VFs with fault injection on the same images.
type Validation struct {
	Fraction float64 `json:"fraction"`
	// NeuronsPerChannel is how many analysed neurons of a validated channel
	// activation FI covers, drawn at random positions (validationNeurons).
	NeuronsPerChannel int `json:"neurons_per_channel"`
	// MaxOperands, when not 0, caps the weights of a filter (operands of a
	// neuron) whose 32 bits FI flips: a seeded uniform sample of that many,
	// so FI is exhaustive only for units with fewer (Exhaustive says whether
	// every unit was).
	MaxOperands int  `json:"max_operands,omitempty"`
	Exhaustive  bool `json:"exhaustive"`
	// MAECVF, MaxCVF and SpearmanCVF repeat Weights' figures (the paper's
	// validation: filter CVFs against exhaustive weight FI).
	MAECVF      *float64 `json:"mae_cvf"`
	MaxCVF      *float64 `json:"max_cvf"`
	SpearmanCVF *float64 `json:"spearman_cvf"`
	// Weights: CVF of each validated filter against FI flipping every bit of
	// every weight of the filter.
	Weights *Agreement `json:"weights,omitempty"`
	// Activations: NVF of each validated neuron against FI flipping every bit of
	// every MAC input operand of the neuron (DeepVigor+'s fault model).
	Activations *Agreement `json:"activations,omitempty"`
	// ActivationsOutput: the same NVFs against FI flipping every bit of the
	// neuron's stored output (a different fault model, for reference).
	ActivationsOutput *Agreement `json:"activations_output,omitempty"`
	// Layers repeats the three agreements per layer: VF levels differ between
	// layers, so a pooled rank correlation can be high while the ranking within
	// a layer is poor.
	Layers []LayerAgreement `json:"layers"`
	Units  []Unit           `json:"units"`
	Faults int64            `json:"faults"`
}

// LayerAgreement is a Validation's agreement within one layer.
type LayerAgreement struct {
	Layer             string     `json:"layer"`
	Weights           *Agreement `json:"weights,omitempty"`
	Activations       *Agreement `json:"activations,omitempty"`
	ActivationsOutput *Agreement `json:"activations_output,omitempty"`
}

// Agreement summarises DeepVigor+ against FI over validated units.
type Agreement struct {
	N      int     `json:"n"`
	MAE    float64 `json:"mae"`
	Max    float64 `json:"max_error"`
	MeanDV float64 `json:"mean_dv"`
	MeanFI float64 `json:"mean_fi"`
	// MeanRelative is mean |dv - fi| / fi over units with fi > 0.
	MeanRelative *float64 `json:"mean_relative_error"`
	// Spearman is the rank correlation across units (absent for fewer than 3
	// units or constant values).
	Spearman *float64 `json:"spearman"`
}

// Unit is one validated filter or neuron.
type Unit struct {
	Target   string `json:"target"` // weights or activations
	Layer    string `json:"layer"`
	Channel  int    `json:"channel"`
	Position *int   `json:"position,omitempty"` // activations: y*W+x
	// Border marks a conv neuron some of whose operands lie in the zero
	// padding (activations only).
	Border   *bool    `json:"border,omitempty"`
	DV       float64  `json:"dv"`
	FI       float64  `json:"fi"`
	FIOutput *float64 `json:"fi_output,omitempty"` // activations: stored-output faults
	Faults   int64    `json:"faults"`
}

// validator runs the FI side of a validation.
type validator struct {
	inj    *fault.Injector
	ev     *fault.EvalSet
	sem    deepvigor.Semantics
	images int
	block  int
	nextID int64
	// maxOps caps the operands per unit (0: all), drawn with rng.
	maxOps   int
	rng      *rand.Rand
	sampled  bool
	progress func(done, total int64)
	replay   func(n int64) // faults of a unit taken from the journal
	done     int64
	total    int64
}

// validationPlan draws, per layer, max(ceil(fraction * C), 1) of the analysed
// channels (all of them when fewer), seeded by (seed, layer).
func validationPlan(r *deepvigor.Result, fraction float64, seed int64) [][]deepvigor.Channel {
	out := make([][]deepvigor.Channel, len(r.Layers))
	for i, l := range r.Layers {
		n := min(max(int(math.Ceil(fraction*float64(l.Channels))), 1), len(l.ChannelVFs))
		rng := rand.New(rand.NewPCG(uint64(seed), 0x7a11d+uint64(i)))
		pick := rng.Perm(len(l.ChannelVFs))[:n]
		slices.Sort(pick)
		for _, k := range pick {
			out[i] = append(out[i], l.ChannelVFs[k])
		}
	}
	return out
}

// faultsOf counts the FI faults of a plan (for progress).
func faultsOf(r *deepvigor.Result, sites map[string]model.Site, plan [][]deepvigor.Channel, o VFOptions, acts, weights bool) int64 {
	capped := func(n int64) int64 {
		if o.ValidateOperands > 0 {
			return min(n, int64(o.ValidateOperands))
		}
		return n
	}
	var n int64
	for i, l := range r.Layers {
		s := sites[l.Name]
		for _, ch := range plan[i] {
			if weights {
				n += 32 * capped(model.Numel(s.WeightShape[1:]))
			}
			if acts {
				for _, k := range validationNeurons(s, ch, o.ValidateNeurons, o.Seed) {
					n += 32 * (capped(int64(len(macOperands(s, ch.Index, ch.Positions[k], r.Semantics)))) + 1)
				}
			}
		}
	}
	return n
}

// onRun, when set, hears of every list of faults validation injects; for tests.
var onRun func(n int)

// run injects faults in blocks and returns the fraction of fault x image pairs
// that were SDC or DUE.
func (v *validator) run(ctx context.Context, faults []fault.Fault) (float64, error) {
	if onRun != nil {
		onRun(len(faults))
	}
	var bad, pairs int64
	for lo := 0; lo < len(faults); lo += v.block {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		blk := faults[lo:min(len(faults), lo+v.block)]
		ptrs := make([]*fault.Fault, len(blk))
		for i := range blk {
			if err := v.inj.Check(&blk[i], v.images); err != nil {
				return 0, err
			}
			ptrs[i] = &blk[i]
		}
		if err := v.inj.RunBatched(v.ev, ptrs); err != nil {
			return 0, err
		}
		for _, f := range blk {
			bad += int64(f.Outcome.SDC + f.Outcome.DUE)
			pairs += int64(f.Outcome.Images)
		}
		v.done += int64(len(blk))
		if v.progress != nil {
			v.progress(v.done, v.total)
		}
	}
	if pairs == 0 {
		return 0, nil
	}
	return float64(bad) / float64(pairs), nil
}

// skip counts n faults as done without running them (a unit taken from the
// journal).
func (v *validator) skip(n int) {
	if v.replay != nil {
		v.replay(int64(n))
	}
	v.done += int64(n)
	if v.progress != nil {
		v.progress(v.done, v.total)
	}
}

func (v *validator) fault(f fault.Fault) fault.Fault {
	f.ID = v.nextID
	v.nextID++
	f.Kind, f.DType, f.Duration = fault.BitFlip, fault.Float32, fault.Transient
	return f
}

// weightFaults flips every bit of every weight of filter c.
func (v *validator) weightFaults(s model.Site, c int) []fault.Fault {
	f := model.Numel(s.WeightShape[1:])
	var out []fault.Fault
	for _, j := range v.pick(int(f)) {
		for b := range fault.Float32Bits {
			out = append(out, v.fault(fault.Fault{Target: fault.Weight, Layer: s.Name, Param: "weight",
				Index: []int64{int64(c)*f + int64(j)}, Bits: []int{b}}))
		}
	}
	return out
}

// neuronIndex is the per-sample coordinates of neuron (c, position).
func neuronIndex(s model.Site, c, pos int) []int64 {
	if s.Kind == model.Linear {
		return []int64{int64(c)}
	}
	w := int(s.OutShape[2])
	return []int64{int64(c), int64(pos / w), int64(pos % w)}
}

// macOperands lists the MAC input operands of neuron (c, pos) as indices into
// the site's per-sample input ([in] for linear, [ci, ky, kx] for conv);
// zero-padding operands are fault sites only under Reference semantics.
func macOperands(s model.Site, c, pos int, sem deepvigor.Semantics) [][]int64 {
	var ops [][]int64
	if s.Kind == model.Linear {
		for j := range s.WeightShape[1] {
			ops = append(ops, []int64{j})
		}
		return ops
	}
	idx := neuronIndex(s, c, pos)
	g, err := fault.GeometryOf(&s)
	if err != nil { // Analyze refuses such a site before validation
		return nil
	}
	for ci := range g.Cg {
		for ky := range g.KH {
			for kx := range g.KW {
				if _, _, ok := g.At(idx[1], idx[2], ky, kx); !ok && sem == deepvigor.Exact {
					continue
				}
				ops = append(ops, []int64{ci, ky, kx})
			}
		}
	}
	return ops
}

// macFaults flips every bit of every MAC input operand of neuron (c, pos)
// (macOperands), or of a sample of them (pick).
func (v *validator) macFaults(s model.Site, c, pos int) []fault.Fault {
	idx := neuronIndex(s, c, pos)
	ops := macOperands(s, c, pos, v.sem)
	var out []fault.Fault
	for _, k := range v.pick(len(ops)) {
		op := ops[k]
		for b := range fault.Float32Bits {
			out = append(out, v.fault(fault.Fault{Target: fault.Activation, Layer: s.Name, Point: fault.MAC,
				Index: idx, Operand: op, Bits: []int{b}}))
		}
	}
	return out
}

// pick returns the operand indices of a unit with n operands: all of them, or a
// sorted seeded sample of maxOps.
func (v *validator) pick(n int) []int {
	if v.maxOps <= 0 || n <= v.maxOps {
		return iota(n)
	}
	v.sampled = true
	p := v.rng.Perm(n)[:v.maxOps]
	slices.Sort(p)
	return p
}

func iota(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// outputFaults flips every bit of neuron (c, pos)'s stored output.
func (v *validator) outputFaults(s model.Site, c, pos int) []fault.Fault {
	var out []fault.Fault
	for b := range fault.Float32Bits {
		out = append(out, v.fault(fault.Fault{Target: fault.Activation, Layer: s.Name, Point: fault.Output,
			Index: neuronIndex(s, c, pos), Bits: []int{b}}))
	}
	return out
}

// agreement compares paired values.
func agreement(dv, fi []float64) *Agreement {
	if len(dv) == 0 {
		return nil
	}
	a := &Agreement{N: len(dv)}
	var rel float64
	nrel := 0
	for i := range dv {
		e := math.Abs(dv[i] - fi[i])
		a.MAE += e
		a.Max = math.Max(a.Max, e)
		a.MeanDV += dv[i]
		a.MeanFI += fi[i]
		if fi[i] > 0 {
			rel += e / fi[i]
			nrel++
		}
	}
	n := float64(len(dv))
	a.MAE /= n
	a.MeanDV /= n
	a.MeanFI /= n
	if nrel > 0 {
		r := rel / float64(nrel)
		a.MeanRelative = &r
	}
	a.Spearman = spearman(dv, fi)
	return a
}

// spearman is Spearman's rank correlation (average ranks for ties): nil for
// fewer than 3 pairs or when either side is constant.
func spearman(x, y []float64) *float64 {
	if len(x) < 3 {
		return nil
	}
	rx, ry := ranks(x), ranks(y)
	var mx, my float64
	for i := range rx {
		mx += rx[i]
		my += ry[i]
	}
	mx /= float64(len(rx))
	my /= float64(len(ry))
	var sxy, sxx, syy float64
	for i := range rx {
		sxy += (rx[i] - mx) * (ry[i] - my)
		sxx += (rx[i] - mx) * (rx[i] - mx)
		syy += (ry[i] - my) * (ry[i] - my)
	}
	if sxx == 0 || syy == 0 {
		return nil
	}
	r := sxy / math.Sqrt(sxx*syy)
	return &r
}

// ranks returns 1-based ranks with ties averaged.
func ranks(v []float64) []float64 {
	idx := make([]int, len(v))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return v[idx[a]] < v[idx[b]] })
	r := make([]float64, len(v))
	for i := 0; i < len(idx); {
		j := i
		for j+1 < len(idx) && v[idx[j+1]] == v[idx[i]] {
			j++
		}
		avg := float64(i+j)/2 + 1
		for k := i; k <= j; k++ {
			r[idx[k]] = avg
		}
		i = j + 1
	}
	return r
}

// border reports whether neuron pos of a conv site reads any zero-padding
// operand (false for linear sites and unpadded convolutions).
func border(s model.Site, pos int) bool {
	if s.Kind != model.Conv {
		return false
	}
	g, err := fault.GeometryOf(&s)
	if err != nil || g.PT == 0 && g.PL == 0 && g.PB == 0 && g.PR == 0 {
		return false
	}
	w := int(s.OutShape[2])
	y, x := int64(pos/w), int64(pos%w)
	for ky := range g.KH {
		for kx := range g.KW {
			if _, _, ok := g.At(y, x, ky, kx); !ok {
				return true
			}
		}
	}
	return false
}

// validationNeurons returns the indices (into ch.Positions) of the k analysed
// neurons of channel ch of site s that activation FI validates (all when
// fewer), drawn at random with a generator seeded by (seed, site, channel), so
// a unit's draw depends on nothing else (not on the other layers analysed). When k >= 2 and the analysed positions hold
// both border neurons (reading zero padding) and interior ones, the first two
// drawn are one of each; the rest are drawn from the remaining positions. The
// indices come back sorted.
func validationNeurons(s model.Site, ch deepvigor.Channel, k int, seed int64) []int {
	n := len(ch.Positions)
	if k >= n {
		return iota(n)
	}
	rng := rand.New(rand.NewPCG(uint64(seed), 0x9e1a<<32|uint64(s.Index)<<20|uint64(ch.Index)))
	perm := rng.Perm(n)
	var picked []int
	if k >= 2 {
		var bi, ii = -1, -1
		for _, i := range perm {
			if border(s, ch.Positions[i]) {
				if bi < 0 {
					bi = i
				}
			} else if ii < 0 {
				ii = i
			}
		}
		if bi >= 0 && ii >= 0 {
			picked = append(picked, bi, ii)
		}
	}
	for _, i := range perm {
		if len(picked) == k {
			break
		}
		if !slices.Contains(picked, i) {
			picked = append(picked, i)
		}
	}
	slices.Sort(picked)
	return picked
}

// layerAgreements computes the per-layer agreements of units, in the order
// of layers.
func layerAgreements(layers []string, units []Unit) []LayerAgreement {
	out := make([]LayerAgreement, 0, len(layers))
	for _, name := range layers {
		var wdv, wfi, adv, afi, ofi []float64
		for _, u := range units {
			if u.Layer != name {
				continue
			}
			if u.Target == "weights" {
				wdv, wfi = append(wdv, u.DV), append(wfi, u.FI)
				continue
			}
			adv, afi = append(adv, u.DV), append(afi, u.FI)
			if u.FIOutput != nil {
				ofi = append(ofi, *u.FIOutput)
			}
		}
		la := LayerAgreement{Layer: name, Weights: agreement(wdv, wfi), Activations: agreement(adv, afi)}
		if len(ofi) == len(adv) {
			la.ActivationsOutput = agreement(adv, ofi)
		}
		if la.Weights != nil || la.Activations != nil {
			out = append(out, la)
		}
	}
	return out
}
