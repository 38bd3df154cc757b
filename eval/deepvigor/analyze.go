package deepvigor

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/faultline/faultline/fault"
	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model"
	"github.com/sugarme/gotch/ts"
)

// Semantics selects how bit flips and the search behave (spec section 0).
type Semantics string

// Semantics.
const (
	// Exact: IEEE-754 flips, no padding fault sites, eval-mode BatchNorm, per-group
	// slicing, bisection over a grid with PerOctave thresholds per factor of two.
	Exact Semantics = "exact"
	// Reference: the reference implementation's behaviour, quirks included.
	Reference Semantics = "reference"
)

// ParseSemantics checks a semantics name.
func ParseSemantics(s string) (Semantics, error) {
	switch Semantics(s) {
	case Exact, Reference:
		return Semantics(s), nil
	}
	return "", fmt.Errorf("deepvigor: semantics %q: want exact or reference", s)
}

// WeightErrors is how a weight fault's errors enter the distribution.
type WeightErrors string

// Weight error models.
const (
	// PerPosition: one error per output position (flipped weight times the
	// position's operand), pooled over positions: the paper's model.
	PerPosition WeightErrors = "position"
	// PerFault: one error per (weight, bit, image): the largest in magnitude over
	// the channel's output positions, since one weight fault hits them all.
	PerFault WeightErrors = "fault"
	// Averaged: one error per (weight, bit, image): its errors at the channel's
	// positions averaged into the one uniform delta they amount to, each
	// position weighted by its share of the magnitude of the loss gradient at
	// the golden point (equal shares where the gradient is zero), in layers
	// whose inputs are non-negative. In conv layers whose inputs take both
	// signs (the errors would cancel), Pattern when a filter has at most
	// MaxPatternOperands weights, else PerFault. Exact's default.
	Averaged WeightErrors = "mean"
	// Pattern: no single delta stands for a fault: the search runs per weight
	// along the fault's own error pattern (the weight's operand at each of the
	// channel's positions, times the weight's change), with the weight's 32
	// bit-flip changes themselves as candidates, so each fault is decided as
	// fault injection would decide it (given monotonicity along the pattern).
	// About three forward passes per weight and image: only where Averaged
	// chooses it.
	Pattern WeightErrors = "pattern"
)

// MaxPatternOperands bounds the weights per filter of a layer whose weights
// Averaged analyses by Pattern (first layers: 25 in LeNet-5, 9 in VGG-11).
const MaxPatternOperands = 32

// sampledOperands is how many of a filter's weights a sampled Pattern analysis
// draws per filter (all of them when it has fewer).
const sampledOperands = 8

// Options configure Analyze.
type Options struct {
	Activations bool // analyse activations (neurons, MAC operand faults)
	Weights     bool // analyse weights (filters)
	Semantics   Semantics
	// TailCheck lets the network decide errors of magnitude 2^10 and more
	// (Exact only): the candidate errors go on beyond 2^10 up to the largest
	// finite float32, and infinite errors are tested as infinite deltas.
	// Otherwise they are always critical, as in the paper.
	TailCheck bool
	// SamplingRatio is the share of output channels analysed per layer, in (0, 1];
	// 1 is the complete analysis.
	SamplingRatio float64
	Seed          int64
	// Precision, when > 0, bounds a sampled layer's 95% interval: a layer whose
	// LVF interval (of either target) is wider than +-Precision is drawn again
	// with more channels (nextSize: as many as the current draw's variance
	// predicts, at least two more) until it is narrower or the layer is
	// complete. A channel drawn again keeps its positions and is not analysed
	// again; the work on channels a later draw does not keep still counts in
	// the image-forwards.
	Precision float64
	// Layers restricts the analysis (default: every conv and linear layer).
	Layers []string
	// WeightErrors selects the weight analysis's error distribution: Averaged
	// (Exact's default), PerFault or PerPosition (the paper's, Reference's only
	// choice).
	WeightErrors WeightErrors
	// PerOctave is the Exact grid's thresholds per factor of two (default 1).
	PerOctave int
	// MaxBatch caps the samples of one forward pass (default: by memory).
	MaxBatch int
	// OnProgress is called after each group of targets with targets done and total.
	OnProgress func(done, total int)
	// OnReplay, when set, is told of the targets of a channel taken from Resume,
	// before the OnProgress that counts them.
	OnReplay func(targets int)
	// Resume, when set, lets an interrupted analysis go on where it stopped:
	// channels it holds are taken from it instead of being analysed again, and
	// every channel analysed is recorded in it.
	Resume ChannelLog
}

// ChannelLog keeps analysed channels across runs (see Options.Resume).
type ChannelLog interface {
	// Lookup returns the recorded result of a layer's channel analysed at
	// these positions, if any.
	Lookup(layer string, channel int, positions []int) (ChannelResult, bool)
	// Record keeps a finished channel's result.
	Record(layer string, r ChannelResult) error
}

// ChannelResult is one analysed channel and the work it took: what an
// analysis needs to take the channel over without analysing it again.
type ChannelResult struct {
	Channel        int       `json:"channel"`
	Positions      []int     `json:"positions"`
	NVF            []float64 `json:"nvf,omitempty"`
	CVFWeights     *float64  `json:"cvf_weights,omitempty"`
	WeightOperands []int     `json:"weight_operands,omitempty"`
	OperandVF      []float64 `json:"operand_vf,omitempty"`
	ImageForwards  int64     `json:"image_forwards"`
	ImageBackwards int64     `json:"image_backwards"`
}

// DefaultPerOctave is Exact semantics' grid resolution.
const DefaultPerOctave = 1

// Result is the analysis of a model on a batch of images. VFs are fractions.
type Result struct {
	Semantics     Semantics    `json:"semantics"`
	TailCheck     bool         `json:"tail_check"`
	SamplingRatio float64      `json:"sampling_ratio"`
	Seed          int64        `json:"seed"`
	PerOctave     int          `json:"thresholds_per_octave"`
	WeightErrors  WeightErrors `json:"weight_errors"`
	Images        int          `json:"images"`
	Layers        []Layer      `json:"layers"`
	// ImageForwards counts images run through the network (from the analysed
	// layer on): a batch of 100 counts 100. BatchForwards counts the reference's
	// unit, one forward of the whole image batch per target and step.
	ImageForwards  int64 `json:"image_forwards"`
	ImageBackwards int64 `json:"image_backwards"`
	BatchForwards  int64 `json:"batch_forwards"`
}

// Layer is one analysed layer.
type Layer struct {
	Name string `json:"name"`
	Kind string `json:"kind"` // conv or linear
	// Neurons is the layer's output activations per image (C*H*W); Weights its
	// weights without bias.
	Neurons  int64 `json:"neurons"`
	Weights  int64 `json:"weights"`
	Channels int   `json:"out_channels"`
	// WeightErrors is the weight error model used in this layer: the run's,
	// except that mean becomes pattern in a conv layer with inputs of both
	// signs and at most MaxPatternOperands weights per filter, and fault in one
	// with more.
	WeightErrors WeightErrors `json:"weight_errors,omitempty"`
	Positions    int          `json:"positions"` // per channel (H*W, 1 for linear)
	// LVFs are means of the analysed channels' CVFs; their intervals are the 95%
	// sampling intervals (two-stage for activations), equal to the LVF when the
	// analysis is complete and absent when one channel cannot give one.
	LVFActivations   *float64    `json:"lvf_activations"`
	LVFActivationsCI *[2]float64 `json:"lvf_activations_ci95,omitempty"`
	LVFWeights       *float64    `json:"lvf_weights"`
	LVFWeightsCI     *[2]float64 `json:"lvf_weights_ci95,omitempty"`
	ImageForwards    int64       `json:"image_forwards"`
	// ChannelSensitivity is, per output channel (all of them), the variable
	// Exact's sampling stratifies on: the root mean square of the loss gradient
	// at the channel's outputs over images and positions, times the mean
	// absolute weight of its filter. Absent for complete and Reference runs.
	ChannelSensitivity []float64 `json:"channel_sensitivity,omitempty"`
	// Strata are the sizes (in channels) of the strata the channels were drawn
	// from, in order of decreasing sensitivity; one stratum is simple random
	// sampling.
	Strata     []int     `json:"strata"`
	ChannelVFs []Channel `json:"channels"`
	// Draws is how many times the channels were drawn under Options.Precision
	// (1: the first draw was precise enough); absent without it.
	Draws int `json:"draws,omitempty"`
}

// Channel is one analysed output channel (filter).
type Channel struct {
	Index int `json:"index"`
	// Positions are the output positions (y*W+x) drawn for this channel: the
	// neurons of the activation analysis and the positions of the weight
	// analysis's error distribution.
	Positions      []int     `json:"positions"`
	Stratum        int       `json:"stratum"` // index into the layer's Strata
	CVFActivations *float64  `json:"cvf_activations,omitempty"`
	NVF            []float64 `json:"nvf,omitempty"` // per position, activations
	CVFWeights     *float64  `json:"cvf_weights,omitempty"`
	// WeightOperands are the filter's weights (flat indices within the
	// filter) whose faults a pattern search analysed (see Layer.WeightErrors)
	// and OperandVF their VFs; CVFWeights is their mean. All of the filter's
	// weights in a complete analysis, a seeded sample in a sampled one.
	WeightOperands []int     `json:"weight_operands,omitempty"`
	OperandVF      []float64 `json:"operand_vf,omitempty"`
}

// Analyze runs DeepVigor+ on m with images x ([B, C, H, W], normalised) whose
// golden predictions are golden. It must run on the torch thread; it leaves the
// model's parameters untouched.
func Analyze(ctx context.Context, m *model.Model, x *ts.Tensor, golden []int, o Options) (*Result, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	sites, err := selectSites(m, o.Layers)
	if err != nil {
		return nil, err
	}
	if o.Semantics == Reference {
		// BatchNorm's running statistics are the model's only buffers.
		if slices.ContainsFunc(m.Params(), func(p model.Param) bool { return !p.Trainable }) {
			return nil, fmt.Errorf("deepvigor: reference semantics needs a BatchNorm-free model (the reference runs BatchNorm on batch statistics); %s has BatchNorm: use exact", m.Spec().Arch)
		}
	}
	if o.PerOctave == 0 {
		o.PerOctave = DefaultPerOctave
	}
	if o.Semantics == Reference {
		o.PerOctave = 1
	}
	res := &Result{Semantics: o.Semantics, TailCheck: o.TailCheck, SamplingRatio: o.SamplingRatio, Seed: o.Seed, PerOctave: o.PerOctave,
		WeightErrors: o.WeightErrors, Images: len(golden)}
	restore, err := m.SetRequiresGrad(false)
	if err != nil {
		return nil, err
	}
	err = torch.NoGrad(func() error {
		a := &analyzer{m: m, o: o, g: newGrid(o.PerOctave, o.TailCheck), golden: golden, res: res}
		return a.run(ctx, x, sites)
	})
	if rerr := restore(); err == nil {
		err = rerr
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

func (o *Options) check() error {
	if !o.Activations && !o.Weights {
		return fmt.Errorf("deepvigor: nothing to analyse: want activations, weights or both")
	}
	if _, err := ParseSemantics(string(o.Semantics)); err != nil {
		return err
	}
	if !(o.SamplingRatio > 0 && o.SamplingRatio <= 1) {
		return fmt.Errorf("deepvigor: sampling ratio %g: want a fraction in (0, 1] (1 = complete analysis)", o.SamplingRatio)
	}
	if o.TailCheck && o.Semantics == Reference {
		return fmt.Errorf("deepvigor: the tail check is an exact-semantics option (the reference counts errors beyond 2^10 critical)")
	}
	switch o.WeightErrors {
	case "": // exact: averaged; reference: per position, as the reference does
		o.WeightErrors = Averaged
		if o.Semantics == Reference {
			o.WeightErrors = PerPosition
		}
	case PerPosition:
	case PerFault, Averaged:
		if o.Semantics == Reference {
			return fmt.Errorf("deepvigor: %s weight errors are an exact-semantics option (the reference pools per position)", o.WeightErrors)
		}
	default:
		return fmt.Errorf("deepvigor: weight errors %q: want mean, fault or position", o.WeightErrors)
	}
	if o.PerOctave < 0 || o.PerOctave > 64 {
		return fmt.Errorf("deepvigor: %d thresholds per octave: want 1..64", o.PerOctave)
	}
	return nil
}

// selectSites returns the sites to analyse, in forward order.
func selectSites(m *model.Model, names []string) ([]model.Site, error) {
	all := m.Sites()
	if len(all) == 0 {
		return nil, fmt.Errorf("deepvigor: %s has no conv or linear layer to analyse", m.Spec().Arch)
	}
	if len(names) == 0 {
		if !slices.ContainsFunc(all, func(s model.Site) bool { return s.Kind == model.Conv }) {
			return nil, fmt.Errorf("deepvigor: %s has no conv layer: DeepVigor+ analyses conv layers (linear layers as an extension); name linear layers explicitly to analyse them alone", m.Spec().Arch)
		}
		return all, nil
	}
	var out []model.Site
	for _, s := range all {
		if slices.Contains(names, s.Name) {
			out = append(out, s)
		}
	}
	for _, n := range names {
		if !slices.ContainsFunc(all, func(s model.Site) bool { return s.Name == n }) {
			return nil, fmt.Errorf("deepvigor: no layer %q in %s (layers: %v)", n, m.Spec().Arch, m.SiteNames())
		}
	}
	return out, nil
}

// analyzer holds one analysis run.
type analyzer struct {
	m      *model.Model
	o      Options
	g      grid
	bounds *ts.Tensor
	golden []int
	res    *Result
	done   int
	total  int
}

// plan is a layer's drawn channels and positions and the strata they were
// drawn from.
type plan struct {
	channels  []int
	positions [][]int
	stratum   []int // per drawn channel
	strata    []int // sizes in channels
}

// sampleSizes returns how many channels of a site are drawn and how many
// positions in each: channels = max(ceil(ratio * C), 2) under Exact (two, so
// that every layer gets an interval), max(floor(ratio * C), 1) under Reference,
// at most C; positions = max(floor(log2(H*W)), 1); everything when the ratio
// is 1.
func (a *analyzer) sampleSizes(s model.Site) (n, per int) {
	c, hw := int(s.OutShape[0]), positions(s)
	if a.o.SamplingRatio >= 1 {
		return c, hw
	}
	if a.o.Semantics == Reference {
		n = max(int(math.Floor(a.o.SamplingRatio*float64(c))), 1)
	} else {
		n = max(int(math.Ceil(a.o.SamplingRatio*float64(c))), 2)
	}
	return min(n, c), min(max(int(math.Floor(math.Log2(float64(hw)))), 1), hw)
}

// draw samples a layer's channels and, in each, its positions (sampleSizes
// says how many). With sensitivities (one per channel) the channels are sorted
// by decreasing sensitivity and cut into n/2 strata of consecutive channels,
// each sized in proportion to its draws (two each, three in the last when n
// is odd), so the sample spreads over the whole range of sensitivities;
// otherwise (Reference) they are drawn uniformly. The draw depends only on the
// seed, the layer's position and the sensitivities.
func (a *analyzer) draw(s model.Site, layer int, sens []float64) plan {
	n, _ := a.sampleSizes(s)
	return a.drawN(s, layer, sens, n)
}

// drawN is draw with n channels (at most C) instead of sampleSizes's.
func (a *analyzer) drawN(s model.Site, layer int, sens []float64, n int) plan {
	c, hw := int(s.OutShape[0]), positions(s)
	_, per := a.sampleSizes(s)
	n = min(n, c)
	rng := rand.New(rand.NewPCG(uint64(a.o.Seed), uint64(layer)))
	var p plan
	if a.o.SamplingRatio >= 1 {
		p.strata = []int{c}
		for ch := range c {
			p.channels = append(p.channels, ch)
			p.positions = append(p.positions, iota(hw))
			p.stratum = append(p.stratum, 0)
		}
		return p
	}
	order := iota(c)
	draws := []int{n}
	if sens != nil && n >= 2 {
		slices.SortStableFunc(order, func(x, y int) int { return cmp.Compare(sens[y], sens[x]) })
		draws = make([]int, n/2)
		for h := range draws {
			draws[h] = 2
		}
		draws[len(draws)-1] += n % 2
	}
	lo, cum := 0, 0
	for h, nh := range draws {
		cum += nh
		hi := c * cum / n // each stratum holds at least its draws, as c >= n
		members := order[lo:hi]
		p.strata = append(p.strata, len(members))
		for _, k := range rng.Perm(len(members))[:nh] {
			pos := rng.Perm(hw)[:per]
			slices.Sort(pos)
			p.channels = append(p.channels, members[k])
			p.positions = append(p.positions, pos)
			p.stratum = append(p.stratum, h)
		}
		lo = hi
	}
	return p
}

func iota(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// positions is a site's output positions per channel.
func positions(s model.Site) int {
	if len(s.OutShape) == 3 {
		return int(s.OutShape[1] * s.OutShape[2])
	}
	return 1
}

func (a *analyzer) run(ctx context.Context, x *ts.Tensor, sites []model.Site) error {
	var sc torch.Scope
	defer sc.Drop()
	var err error
	if a.bounds, err = sc.KeepErr(torch.FromFloat32(a.g.t, []int64{int64(len(a.g.t))}, a.m.Device())); err != nil {
		return err
	}
	for _, s := range sites {
		n, per := a.sampleSizes(s)
		a.total += n * a.targets(per)
	}
	cur, st := x, 0 // the golden input of stage st
	for _, s := range sites {
		if err := ctx.Err(); err != nil {
			return err
		}
		want, err := a.m.StageOf(s.Name)
		if err != nil {
			return err
		}
		for st < want {
			next, err := a.m.RunStages(cur, st, st+1, false, nil)
			if err != nil {
				return err
			}
			if cur != x {
				cur.MustDrop()
			}
			cur, st = next, st+1
		}
		l, err := a.layer(ctx, cur, st, s)
		if err != nil {
			return fmt.Errorf("deepvigor: layer %s: %w", s.Name, err)
		}
		a.res.Layers = append(a.res.Layers, *l)
	}
	if cur != x {
		cur.MustDrop()
	}
	return nil
}

// analysisWeight is site s's weight as the analysis reads it: [out, ...] with
// a filter per output channel (a linear layer's weight stored [in, out] is
// transposed; others are the parameter itself).
func analysisWeight(sc *torch.Scope, m *model.Model, s model.Site) (*ts.Tensor, error) {
	w, err := m.Param(s.Weight())
	if err != nil || !s.TransposedWeight {
		return w, err
	}
	if w, err = sc.KeepErr(w.T(false)); err != nil {
		return nil, err
	}
	return sc.KeepErr(w.Contiguous(false))
}

// layer analyses one site whose stage st has golden input stageIn.
func (a *analyzer) layer(ctx context.Context, stageIn *ts.Tensor, st int, s model.Site) (*Layer, error) {
	var sc torch.Scope
	defer sc.Drop()
	var in, out *ts.Tensor
	hook := func(site *model.Site, i, o *ts.Tensor) (*ts.Tensor, error) {
		if site.Name != s.Name {
			return nil, nil
		}
		var err error
		if in, err = sc.KeepErr(i.DetachCopy(false)); err != nil {
			return nil, err
		}
		out, err = sc.KeepErr(o.DetachCopy(false))
		return nil, err
	}
	if _, err := sc.KeepErr(a.m.RunStages(stageIn, st, st+1, false, hook)); err != nil {
		return nil, err
	}
	if in == nil || out == nil {
		return nil, fmt.Errorf("the forward pass did not reach the layer")
	}
	b := len(a.golden)
	l := &Layer{Name: s.Name, Kind: string(s.Kind), Channels: int(s.OutShape[0]), Positions: positions(s), ImageForwards: int64(b)}
	l.Neurons = model.Numel(s.OutShape)
	l.Weights = model.Numel(s.WeightShape)
	a.res.ImageForwards += int64(b)
	a.res.BatchForwards++
	lead := a.m.Lead(st) == s.Name
	r := &runner{m: a.m, site: s, stage: st, lead: lead, stageIn: stageIn, out: out, golden: a.golden,
		per: l.Neurons, hw: int64(l.Positions), exact: a.o.Semantics == Exact}
	r.classes = int(a.m.Spec().Classes)
	r.maxBatch = a.o.MaxBatch
	if r.maxBatch <= 0 {
		r.maxBatch = int(min(4096, max(16, (8<<20)/r.per)))
	}
	ops, err := newOperands(&sc, s, in, a.o.Semantics)
	if err != nil {
		return nil, err
	}
	if b, ok := a.m.WeightClamps()[s.Name]; ok {
		ops.wb = &b
	}
	if a.o.Weights {
		l.WeightErrors = a.o.WeightErrors
		if l.WeightErrors == Averaged && ops.signed && s.Kind == model.Conv {
			l.WeightErrors = PerFault
			if ops.f <= MaxPatternOperands {
				l.WeightErrors = Pattern
			}
		}
	}
	w, err := analysisWeight(&sc, a.m, s)
	if err != nil {
		return nil, err
	}
	var sl *slopes
	if a.o.Semantics == Exact {
		if sl, err = r.jacobian(); err != nil {
			return nil, err
		}
		if a.o.SamplingRatio < 1 {
			if l.ChannelSensitivity, err = sensitivity(sl, a.golden, w, l.Channels); err != nil {
				return nil, err
			}
		}
	}
	p := a.draw(s, s.Index, l.ChannelSensitivity)
	srch := &searcher{r: r, sl: sl, g: a.g, images: b, sem: a.o.Semantics,
		fullActivation: a.o.SamplingRatio >= 1}
	done := map[string]Channel{} // analysed in an earlier draw, by channel and positions
	at := map[int][]int{}        // the positions a channel was first analysed at
	for {
		l.Strata, l.ChannelVFs = p.strata, nil
		for k, c := range p.channels {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			key := fmt.Sprint(c, p.positions[k])
			ch, ok := done[key]
			if !ok {
				var err error
				if ch, err = a.channel(srch, ops, w, l, s.Index, c, p.positions[k]); err != nil {
					return nil, err
				}
				done[key] = ch
			}
			if _, ok := at[c]; !ok {
				at[c] = p.positions[k]
			}
			ch.Stratum = p.stratum[k]
			l.ChannelVFs = append(l.ChannelVFs, ch)
		}
		a.aggregate(l)
		if a.o.Precision <= 0 || a.o.SamplingRatio >= 1 {
			break
		}
		l.Draws++
		n, hw := len(p.channels), halfWidth(l)
		if hw <= a.o.Precision && n >= minPrecisionDraw || n >= l.Channels {
			break
		}
		next := nextSize(n, l.Channels, n-len(l.Strata), hw, a.o.Precision)
		p = a.drawN(s, s.Index, l.ChannelSensitivity, next)
		// A channel drawn again keeps the positions it was analysed at (they
		// were drawn independently of the channels), so it is not analysed again.
		for k, c := range p.channels {
			if pos, ok := at[c]; ok {
				p.positions[k] = pos
			}
		}
		a.grow(p, done)
	}
	l.ImageForwards += r.imageForwards
	a.res.ImageForwards += r.imageForwards
	a.res.ImageBackwards += r.imageBackwards
	a.res.BatchForwards += (r.imageForwards + int64(b) - 1) / int64(b)
	return l, nil
}

// channel analyses channel c of layer l (site index site) at the given
// positions, or takes it from Options.Resume when that holds it, and records
// it there.
func (a *analyzer) channel(srch *searcher, ops *operands, w *ts.Tensor, l *Layer, site, c int, pos []int) (Channel, error) {
	r := srch.r
	ch := Channel{Index: c, Positions: pos}
	var operands []int
	if a.o.Weights && l.WeightErrors == Pattern {
		operands = a.patternOperands(site, c, int(ops.f))
	}
	if rec, ok := a.recorded(l.Name, c, pos, operands); ok {
		if a.o.OnReplay != nil {
			a.o.OnReplay(a.targets(len(pos)))
		}
		if a.o.Activations {
			ch.NVF = rec.NVF
			v := mean(rec.NVF)
			ch.CVFActivations = &v
			a.progress(len(rec.NVF))
		}
		if a.o.Weights {
			ch.CVFWeights, ch.WeightOperands, ch.OperandVF = rec.CVFWeights, rec.WeightOperands, rec.OperandVF
			a.progress(1)
		}
		r.imageForwards += rec.ImageForwards
		r.imageBackwards += rec.ImageBackwards
		return ch, nil
	}
	f0, b0 := r.imageForwards, r.imageBackwards
	if a.o.Activations {
		nvf, err := a.activations(srch, ops, w, c, pos)
		if err != nil {
			return ch, err
		}
		ch.NVF = nvf
		v := mean(nvf)
		ch.CVFActivations = &v
	}
	if a.o.Weights {
		var v float64
		var err error
		if operands != nil {
			ch.WeightOperands = operands
			if ch.OperandVF, err = a.patternWeights(srch, ops, w, c, operands); err == nil {
				v = mean(ch.OperandVF)
			}
		} else {
			v, err = a.weights(srch, ops, w, l.WeightErrors, c, pos)
		}
		if err != nil {
			return ch, err
		}
		ch.CVFWeights = &v
	}
	if a.o.Resume != nil {
		err := a.o.Resume.Record(l.Name, ChannelResult{Channel: c, Positions: pos, NVF: ch.NVF, CVFWeights: ch.CVFWeights,
			WeightOperands: ch.WeightOperands, OperandVF: ch.OperandVF,
			ImageForwards: r.imageForwards - f0, ImageBackwards: r.imageBackwards - b0})
		if err != nil {
			return ch, err
		}
	}
	return ch, nil
}

// grow adds to the progress total the targets of plan p's channels that are not
// analysed yet (done holds the analysed ones, by channel and positions).
func (a *analyzer) grow(p plan, done map[string]Channel) {
	for k, c := range p.channels {
		if _, ok := done[fmt.Sprint(c, p.positions[k])]; !ok {
			a.total += a.targets(len(p.positions[k]))
		}
	}
}

// targets is the progress units of one channel analysed at n positions: a
// neuron per position (activations) and the filter (weights).
func (a *analyzer) targets(n int) int {
	t := 0
	if a.o.Activations {
		t += n
	}
	if a.o.Weights {
		t++
	}
	return t
}

// halfWidth is the larger half-width of a layer's LVF intervals, each the
// larger side (an interval clipped at 0 is as wide as its upper side); +Inf
// when a target has no interval.
func halfWidth(l *Layer) float64 {
	hw := 0.0
	for _, t := range []struct {
		v  *float64
		ci *[2]float64
	}{{l.LVFActivations, l.LVFActivationsCI}, {l.LVFWeights, l.LVFWeightsCI}} {
		switch {
		case t.v == nil:
		case t.ci == nil:
			return math.Inf(1)
		default:
			hw = max(hw, *t.v-t.ci[0], t.ci[1]-*t.v)
		}
	}
	return hw
}

// minPrecisionDraw is the fewest channels a draw under Options.Precision stops
// at (unless the layer has fewer): two or three channels that happen to agree
// give a narrow interval on one or two degrees of freedom, and a draw that
// stops because its own interval happens to be narrow makes intervals that
// cover less than their 95% (README, Measured: VGG-11's 10-row classifier).
const minPrecisionDraw = 4

// nextSize is how many of a layer's c channels the next draw under
// Options.Precision takes, after a draw of n channels whose 95% half-width is
// hw on df degrees of freedom: the fewest m >= n+2 whose predicted half-width
// t(df_m) sqrt((1/m - 1/c) S^2) is at most d, with the between-channel
// variance S^2 = (hw/t(df))^2 / (1/n - 1/c) of the current draw and df_m =
// ceil(m/2) (two channels per stratum). Without an interval (hw = +Inf or
// df < 1) it grows by two.
func nextSize(n, c, df int, hw, d float64) int {
	if n+2 >= c {
		return c
	}
	if math.IsInf(hw, 1) || df < 1 || n >= c {
		return min(c, n+2)
	}
	se := hw / fault.StudentT(0.95, df)
	s2 := se * se / (1/float64(n) - 1/float64(c))
	for m := n + 2; m < c; m++ {
		t := fault.StudentT(0.95, m-m/2)
		if t*t*(1/float64(m)-1/float64(c))*s2 <= d*d {
			return m
		}
	}
	return c
}

// recorded returns the channel's result from Options.Resume when it holds one
// for the same positions, targets and pattern operands (anything else is
// analysed again).
func (a *analyzer) recorded(layer string, c int, pos, operands []int) (ChannelResult, bool) {
	if a.o.Resume == nil {
		return ChannelResult{}, false
	}
	rec, ok := a.o.Resume.Lookup(layer, c, pos)
	if !ok || !slices.Equal(rec.Positions, pos) || a.o.Weights != (rec.CVFWeights != nil) ||
		a.o.Activations != (len(rec.NVF) > 0) || a.o.Activations && len(rec.NVF) != len(pos) ||
		!slices.Equal(rec.WeightOperands, operands) || len(rec.OperandVF) != len(operands) {
		return ChannelResult{}, false
	}
	return rec, true
}

func mean(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// jobsPerSearch bounds the targets searched together (host memory for queries).
const jobsPerSearch = 256

// activations returns the VF of each neuron (c, position) of the list.
func (a *analyzer) activations(srch *searcher, ops *operands, w *ts.Tensor, c int, pos []int) ([]float64, error) {
	out := make([]float64, 0, len(pos))
	for lo := 0; lo < len(pos); lo += jobsPerSearch {
		chunk := pos[lo:min(len(pos), lo+jobsPerSearch)]
		ds, err := ops.activationDists(w, c, chunk, a.g, a.bounds, a.o.Semantics == Exact)
		if err != nil {
			return nil, err
		}
		jobs := make([]*job, len(chunk))
		for i, p := range chunk {
			jobs[i] = &job{t: target{channel: c, neuron: int64(c)*srch.r.hw + int64(p)}, ds: ds[i]}
		}
		if err := a.searchJobs(srch, jobs, true); err != nil {
			return nil, err
		}
		for _, j := range jobs {
			out = append(out, 1-mean(j.nc))
		}
		a.progress(len(chunk))
	}
	return out, nil
}

// weights returns the CVF of filter c by one search of the whole channel, its
// error distribution built (by error model wm) from the listed output
// positions.
func (a *analyzer) weights(srch *searcher, ops *operands, w *ts.Tensor, wm WeightErrors, c int, pos []int) (float64, error) {
	var weights []float32
	if wm == Averaged {
		weights = srch.sl.positionWeights(c, srch.r.golden)
	}
	ds, err := ops.weightDist(w, c, pos, a.g, a.bounds, wm, a.o.Semantics == Exact, weights)
	if err != nil {
		return 0, err
	}
	j := &job{t: target{channel: c, neuron: -1}, ds: ds}
	if err := a.searchJobs(srch, []*job{j}, false); err != nil {
		return 0, err
	}
	a.progress(1)
	return 1 - mean(j.nc), nil
}

// patternWeights analyses filter c by Pattern: a search per listed weight along
// its fault's own error pattern. It returns each weight's VF.
func (a *analyzer) patternWeights(srch *searcher, ops *operands, w *ts.Tensor, c int, operands []int) ([]float64, error) {
	pats, err := ops.patterns(c)
	if err != nil {
		return nil, err
	}
	errs, err := ops.faultErrors(w, c)
	if err != nil {
		return nil, err
	}
	jobs := make([]*job, len(operands))
	for i, f := range operands {
		g := exactGrid(errs[f])
		jobs[i] = &job{t: target{channel: c, neuron: -1, pattern: pats[f]}, ds: []dist{binHost(g, errs[f])}, g: &g}
	}
	if err := a.searchJobs(srch, jobs, false); err != nil {
		return nil, err
	}
	out := make([]float64, len(jobs))
	for i, j := range jobs {
		out[i] = 1 - mean(j.nc)
	}
	a.progress(1)
	return out, nil
}

// patternOperands lists the weights of filter c (of f per filter) that a
// Pattern analysis of layer index layer takes: all of them in a complete
// analysis, else sampledOperands of them drawn with a generator seeded by
// (seed, layer, channel), sorted; the same whenever the channel is drawn.
func (a *analyzer) patternOperands(layer, c, f int) []int {
	if a.o.SamplingRatio >= 1 || f <= sampledOperands {
		return iota(f)
	}
	rng := rand.New(rand.NewPCG(uint64(a.o.Seed), 0x0be7a<<32|uint64(layer)<<20|uint64(c)))
	ops := rng.Perm(f)[:sampledOperands]
	slices.Sort(ops)
	return ops
}

func (a *analyzer) searchJobs(srch *searcher, jobs []*job, activation bool) error {
	for _, j := range jobs {
		for i := range j.ds {
			j.ds[i].finish()
		}
	}
	if a.o.Semantics == Reference {
		return srch.walk(jobs, activation)
	}
	return srch.search(jobs)
}

func (a *analyzer) progress(n int) {
	a.done += n
	if a.o.OnProgress != nil {
		a.o.OnProgress(a.done, a.total)
	}
}

// aggregate sets a layer's LVFs and their sampling intervals.
func (a *analyzer) aggregate(l *Layer) {
	complete := a.o.SamplingRatio >= 1
	// within is a channel's VFs of its sampled units (positions, or a Pattern
	// analysis's weights), nil when its CVF is not a mean over a sample.
	strata := func(cvf func(Channel) float64, within func(Channel) []float64) ([]stratumSample, int) {
		ss := make([]stratumSample, len(l.Strata))
		m := 0
		for h, size := range l.Strata {
			ss[h].size = size
		}
		for _, ch := range l.ChannelVFs {
			st := &ss[ch.Stratum]
			st.cv = append(st.cv, cvf(ch))
			if u := within(ch); u != nil {
				st.within = append(st.within, variance(u))
				m = len(u)
			}
		}
		return ss, m
	}
	if a.o.Activations {
		ss, m := strata(func(ch Channel) float64 { return *ch.CVFActivations }, func(ch Channel) []float64 { return ch.NVF })
		v, ci := estimate(ss, l.Channels, l.Positions, m, complete)
		l.LVFActivations, l.LVFActivationsCI = &v, ci
	}
	if a.o.Weights {
		// A filter's weights are its units (sampled under Pattern); the other
		// models analyse the filter whole.
		units, per := l.Positions, int(l.Weights)/l.Channels
		within := func(Channel) []float64 { return nil }
		if l.WeightErrors == Pattern {
			units, within = per, func(ch Channel) []float64 { return ch.OperandVF }
		}
		ss, m := strata(func(ch Channel) float64 { return *ch.CVFWeights }, within)
		if m == 0 {
			m = units
		}
		v, ci := estimate(ss, l.Channels, units, m, complete)
		l.LVFWeights, l.LVFWeightsCI = &v, ci
	}
}

// variance is the sample variance (0 for fewer than two values).
func variance(xs []float64) float64 {
	if len(xs) < 2 {
		return 0
	}
	mu := mean(xs)
	var s float64
	for _, x := range xs {
		s += (x - mu) * (x - mu)
	}
	return s / float64(len(xs)-1)
}
