package eval

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/faultline/faultline/eval/deepvigor"
	"github.com/faultline/faultline/fault"
	"github.com/faultline/faultline/internal/atomicfile"
	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model"
	"github.com/sugarme/gotch"
)

// vf.json identification and file names.
const (
	VFKind    = "faultline.vf"
	VFSchema  = 1
	VFFile    = "vf.json"
	VFCSVFile = "vf.csv"
)

// DefaultPrecision is the LVF interval half-width (0.5 pp) the CLI bounds
// sampled layers to by default: at 10% sampling, one draw of 2 of VGG-11's 16
// first-layer filters missed that layer's complete LVF by up to 1.5 pp.
const DefaultPrecision = 0.005

// VFOptions configure RunVF and RunVFOn.
type VFOptions struct {
	// Checkpoint, Dataset (default: the checkpoint's), DataDir and Device say
	// what RunVF loads; RunVFOn takes the model and data loaded.
	Checkpoint string
	Dataset    string
	DataDir    string
	Device     gotch.Device
	Threads    int
	Target     string  // activations, weights or both
	Ratio      float64 // channel sampling ratio in (0, 1]
	// Precision, when > 0, draws more channels in layers whose LVF 95%
	// interval is wider than +-Precision (deepvigor.Options.Precision); 0
	// keeps the first draw. The CLI's default is DefaultPrecision.
	Precision float64
	Images    int // the first N test images
	Semantics deepvigor.Semantics
	TailCheck string // auto (on for exact semantics, off for reference), on or off
	Seed      int64
	Layers    []string
	PerOctave int
	// WeightErrors is the weight analysis's error model (position or fault).
	WeightErrors deepvigor.WeightErrors
	// Validate is the share of channels validated against FI (0: none).
	Validate float64
	// ValidateNeurons is how many analysed neurons of a validated channel
	// activation FI covers (default 1), drawn at random among the analysed
	// positions with border and interior neurons both represented from 2 on.
	ValidateNeurons int
	// ValidateOperands caps the weights per filter and operands per neuron that
	// FI flips (0: all, exhaustive FI).
	ValidateOperands int
	BatchSize        int // FI samples per forward (default 1024)
	Out              string
	// OnProgress reports phase ("analysis" or "validation") progress.
	OnProgress func(phase string, done, total int64)
	// OnReplay, when set, is told of the units of a phase (analysis targets,
	// validation faults) taken from the journal, before the OnProgress that
	// counts them (so progress rates can leave them out).
	OnReplay func(phase string, n int64)
	// ReplaceJournal starts a new journal over one of a run with other
	// arguments instead of refusing to (for callers that restart, like harden).
	ReplaceJournal bool
	// OnResume, when set, is told how many analysed channels and validated
	// units an interrupted run into Out recorded in its journal (JournalFile);
	// they are taken over, not computed again.
	OnResume func(channels, units int)
}

// VF is vf.json.
type VF struct {
	Kind           string                 `json:"kind"`
	SchemaVersion  int                    `json:"schema_version"`
	Checkpoint     string                 `json:"checkpoint"`
	Arch           string                 `json:"arch"`
	Dataset        string                 `json:"dataset"`
	Images         int                    `json:"images"` // the first N test images
	GoldenAccuracy float64                `json:"golden_accuracy"`
	Target         string                 `json:"target"`
	Semantics      deepvigor.Semantics    `json:"semantics"`
	TailCheck      bool                   `json:"tail_check"`
	TailCheckFlag  string                 `json:"tail_check_setting"`
	SamplingRatio  float64                `json:"sampling_ratio"`
	Precision      float64                `json:"lvf_precision,omitempty"`
	Seed           int64                  `json:"seed"`
	PerOctave      int                    `json:"thresholds_per_octave"`
	WeightErrors   deepvigor.WeightErrors `json:"weight_errors"`
	// MVF covers every analysed layer (conv and linear); MVFPaper only the conv
	// layers, as the paper defines it. Total is Eq. 15.
	MVF            MVF               `json:"mvf"`
	MVFPaper       MVF               `json:"mvf_paper"`
	Layers         []deepvigor.Layer `json:"layers"`
	ImageForwards  int64             `json:"image_forwards"`
	ImageBackwards int64             `json:"image_backwards"`
	BatchForwards  int64             `json:"batch_forwards"`
	SFIBaseline    SFIBaseline       `json:"sfi_baseline"`
	Validation     *Validation       `json:"validation,omitempty"`
	Software       model.Software    `json:"software"`
	Timing         VFTiming          `json:"timing"`
}

// MVF is a model-level VF: unweighted means of layer LVFs and Eq. 15's total.
type MVF struct {
	Activations *float64 `json:"activations"`
	Weights     *float64 `json:"weights"`
	// Total = (1/L) sum_l [N_l/(N_l+W_l) LVF_act,l + W_l/(N_l+W_l) LVF_w,l], with
	// N_l the layer's output neurons per image and W_l its weights (no bias);
	// present when both targets were analysed.
	Total  *float64 `json:"total"`
	Layers []string `json:"layers"`
	// The 95% intervals of the three, from the layers' LVF sampling intervals
	// combined as mvfci.go describes (equal to the value for a complete
	// analysis); absent when a layer's LVF has no interval.
	ActivationsCI *[2]float64 `json:"activations_ci95,omitempty"`
	WeightsCI     *[2]float64 `json:"weights_ci95,omitempty"`
	TotalCI       *[2]float64 `json:"total_ci95,omitempty"`
}

// VFTiming holds wall times (seconds), apart from the results.
type VFTiming struct {
	Analysis   float64 `json:"analysis_seconds"`
	Validation float64 `json:"validation_seconds,omitempty"`
	Total      float64 `json:"total_seconds"`
}

func (o *VFOptions) check() (acts, weights bool, err error) {
	switch o.Target {
	case "activations":
		acts = true
	case "weights":
		weights = true
	case "both", "":
		acts, weights = true, true
	default:
		return false, false, fmt.Errorf("eval: target %q: want activations, weights or both", o.Target)
	}
	if !(o.Ratio > 0 && o.Ratio <= 1) {
		return false, false, fmt.Errorf("eval: sampling ratio %g: want a fraction in (0, 1] (1 = complete analysis)", o.Ratio)
	}
	if o.Images < 1 {
		return false, false, fmt.Errorf("eval: images %d: want at least 1", o.Images)
	}
	if o.Precision < 0 || o.Precision >= 1 || math.IsNaN(o.Precision) {
		return false, false, fmt.Errorf("eval: LVF precision %g: want a fraction in [0, 1) (0.005 = +-0.5 pp; 0 = off)", o.Precision)
	}
	if o.Validate < 0 || o.Validate > 1 {
		return false, false, fmt.Errorf("eval: validate %g: want a fraction of channels in [0, 1]", o.Validate)
	}
	if o.ValidateNeurons < 0 {
		return false, false, fmt.Errorf("eval: validate neurons %d: want at least 1 per validated channel", o.ValidateNeurons)
	}
	if o.ValidateOperands < 0 {
		return false, false, fmt.Errorf("eval: validate operands %d: want 0 (all) or a positive cap", o.ValidateOperands)
	}
	switch o.TailCheck {
	case "auto", "on", "off", "":
	default:
		return false, false, fmt.Errorf("eval: tail check %q: want auto, on or off", o.TailCheck)
	}
	if o.Semantics == "" {
		o.Semantics = deepvigor.Exact
	}
	if _, err := deepvigor.ParseSemantics(string(o.Semantics)); err != nil {
		return false, false, err
	}
	if o.Semantics == deepvigor.Reference && o.TailCheck == "on" {
		return false, false, fmt.Errorf("eval: --tail-check on needs exact semantics (the reference counts errors beyond 2^10 critical)")
	}
	if o.Out == "" {
		return false, false, fmt.Errorf("eval: no output directory")
	}
	return acts, weights, nil
}

// RunVF loads a checkpoint and the test split of its data set
// (fault.LoadCheckpoint) and runs RunVFOn on them.
func RunVF(ctx context.Context, o VFOptions) (*VF, error) {
	start := time.Now()
	p, err := o.prepare()
	if err != nil {
		return nil, err
	}
	var vf *VF
	err = torch.Do(func() error {
		ld, err := fault.LoadCheckpoint(o.Checkpoint, o.Dataset, o.DataDir, o.Device)
		if err != nil {
			return err
		}
		vf, err = runVF(ctx, ld, o, p, start)
		return err
	})
	return vf, err
}

// RunVFOn analyses model l, in memory, with DeepVigor+ on the first o.Images
// images of l's test split, validates the result against fault injection when
// asked, and writes vf.json and vf.csv into o.Out, where its journal
// (JournalFile) keys on l.Checkpoint and l.Identity(). o.Checkpoint,
// o.Dataset, o.DataDir and o.Device are not read: l holds the model and its
// data. The model's parameters are left as they were.
func RunVFOn(ctx context.Context, l *fault.Loaded, o VFOptions) (*VF, error) {
	start := time.Now()
	if l == nil || l.Model == nil {
		return nil, fmt.Errorf("eval: no model")
	}
	p, err := o.prepare()
	if err != nil {
		return nil, err
	}
	var vf *VF
	err = torch.Do(func() error {
		var err error
		vf, err = runVF(ctx, l, o, p, start)
		return err
	})
	return vf, err
}

// prepared is what VFOptions.prepare works out before a run.
type prepared struct {
	acts, weights bool
	threads       int
}

// prepare checks o and fills in its defaults, readies o.Out (removing an old
// vf.json) and sets the thread count.
func (o *VFOptions) prepare() (prepared, error) {
	var p prepared
	var err error
	if p.acts, p.weights, err = o.check(); err != nil {
		return p, err
	}
	if o.ValidateNeurons == 0 {
		o.ValidateNeurons = 1
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 1024
	}
	if o.Ratio >= 1 {
		// A complete analysis has no interval to bound: recording the
		// precision would only make its journal differ from the same run's.
		o.Precision = 0
	}
	if err := atomicfile.CheckDir(o.Out); err != nil {
		return p, fmt.Errorf("eval: %w", err)
	}
	// vf.json is written last: a directory holding one holds a finished run.
	if err := os.Remove(filepath.Join(o.Out, VFFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return p, fmt.Errorf("eval: %w", err)
	}
	if p.threads, err = torch.SetThreads(o.Threads); err != nil {
		return p, err
	}
	return p, nil
}

// runVF is RunVFOn once o is prepared, on the torch thread.
func runVF(ctx context.Context, ld *fault.Loaded, o VFOptions, p prepared, start time.Time) (*VF, error) {
	acts, weights := p.acts, p.weights
	var vf *VF
	var jn *vfJournal
	err := func() error {
		if o.Images > ld.Set.Len() {
			return fmt.Errorf("eval: --images %d: the %s test split has only %d images", o.Images, ld.Dataset, ld.Set.Len())
		}
		tail := o.TailCheck == "on" || (o.TailCheck == "auto" || o.TailCheck == "") && o.Semantics == deepvigor.Exact
		inj, ev, err := ld.EvalSet(o.Images, o.BatchSize)
		if err != nil {
			return err
		}
		defer ev.Drop()
		if jn, err = openVFJournal(&o, ld, p.threads, tail); err != nil {
			return err
		}
		if c, u := jn.recorded(); c+u > 0 && o.OnResume != nil {
			o.OnResume(c, u)
		}
		res, err := deepvigor.Analyze(ctx, ld.Model, ev.X, ev.Golden, deepvigor.Options{
			Activations: acts, Weights: weights, Semantics: o.Semantics, TailCheck: tail,
			SamplingRatio: o.Ratio, Precision: o.Precision, Seed: o.Seed, Layers: o.Layers, PerOctave: o.PerOctave, WeightErrors: o.WeightErrors,
			Resume: jn,
			OnReplay: func(n int) {
				if o.OnReplay != nil {
					o.OnReplay("analysis", int64(n))
				}
			},
			OnProgress: func(done, total int) {
				if o.OnProgress != nil {
					o.OnProgress("analysis", int64(done), int64(total))
				}
			},
		})
		if err != nil {
			return err
		}
		analysis := time.Since(start)
		vf = &VF{Kind: VFKind, SchemaVersion: VFSchema, Checkpoint: ld.Checkpoint, Arch: ld.Meta.Arch,
			Dataset: ld.Dataset, Images: o.Images, GoldenAccuracy: ev.Accuracy(), Target: targetName(acts, weights),
			Semantics: res.Semantics, TailCheck: res.TailCheck, TailCheckFlag: orDefault(o.TailCheck, "auto"),
			SamplingRatio: res.SamplingRatio, Precision: o.Precision, Seed: res.Seed, PerOctave: res.PerOctave, WeightErrors: res.WeightErrors, Layers: res.Layers,
			ImageForwards: res.ImageForwards, ImageBackwards: res.ImageBackwards, BatchForwards: res.BatchForwards,
			SFIBaseline: sfiBaseline(res, acts, weights), Software: model.CurrentSoftware()}
		vf.MVF = mvf(res.Layers, false)
		vf.MVFPaper = mvf(res.Layers, true)
		vf.Timing.Analysis = analysis.Seconds()
		if o.Validate > 0 {
			vstart := time.Now()
			if vf.Validation, err = validate(ctx, inj, ev, ld.Model, res, o, acts, weights, jn); err != nil {
				return err
			}
			vf.Timing.Validation = time.Since(vstart).Seconds()
		}
		return nil
	}()
	if err == nil {
		vf.Timing.Total = time.Since(start).Seconds()
		err = vf.write(o.Out)
	}
	if jn != nil {
		// Kept until vf.json is written: a rerun resumes from it.
		if cerr := jn.j.Close(err == nil); err == nil && cerr != nil {
			err = fmt.Errorf("eval: %w", cerr)
		}
	}
	if err != nil {
		return nil, err
	}
	return vf, nil
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func targetName(acts, weights bool) string {
	switch {
	case acts && weights:
		return "both"
	case acts:
		return "activations"
	}
	return "weights"
}

// mvf aggregates layer LVFs (conv layers only for the paper's figure) and
// their intervals.
func mvf(layers []deepvigor.Layer, convOnly bool) MVF {
	var m MVF
	var acts, weights, total mvfMean
	for _, l := range layers {
		if convOnly && l.Kind != string(model.Conv) {
			continue
		}
		m.Layers = append(m.Layers, l.Name)
		ha, oka := lvfHalfWidth(l.LVFActivations, l.LVFActivationsCI)
		hw, okw := lvfHalfWidth(l.LVFWeights, l.LVFWeightsCI)
		if l.LVFActivations != nil {
			acts.add(*l.LVFActivations, ha, oka)
		}
		if l.LVFWeights != nil {
			weights.add(*l.LVFWeights, hw, okw)
		}
		if l.LVFActivations != nil && l.LVFWeights != nil {
			n, w := float64(l.Neurons), float64(l.Weights)
			a, b := n/(n+w), w/(n+w)
			total.add(a*(*l.LVFActivations)+b*(*l.LVFWeights), a*ha+b*hw, oka && okw)
		}
	}
	m.Activations, m.ActivationsCI = acts.result()
	m.Weights, m.WeightsCI = weights.result()
	if total.n > 0 && total.n == len(m.Layers) {
		m.Total, m.TotalCI = total.result()
	}
	return m
}

// validate runs FI on a share of the analysed channels (must run on the torch
// thread).
func validate(ctx context.Context, inj *fault.Injector, ev *fault.EvalSet, m *model.Model, r *deepvigor.Result, o VFOptions, acts, weights bool, jn *vfJournal) (*Validation, error) {
	sites := map[string]model.Site{}
	for _, s := range m.Sites() {
		sites[s.Name] = s
	}
	plan := validationPlan(r, o.Validate, o.Seed)
	v := &validator{inj: inj, ev: ev, sem: r.Semantics, images: r.Images, block: 2048,
		maxOps: o.ValidateOperands, rng: rand.New(rand.NewPCG(uint64(o.Seed), 0x0e2a9d)),
		total: faultsOf(r, sites, plan, o, acts, weights)}
	if o.OnProgress != nil {
		v.progress = func(done, total int64) { o.OnProgress("validation", done, total) }
	}
	if o.OnReplay != nil {
		v.replay = func(n int64) { o.OnReplay("validation", n) }
	}
	val := &Validation{Fraction: o.Validate, NeuronsPerChannel: o.ValidateNeurons, MaxOperands: o.ValidateOperands}
	var wdv, wfi, adv, afi, ofi []float64
	for i, l := range r.Layers {
		s := sites[l.Name]
		for _, ch := range plan[i] {
			if weights {
				// The faults are drawn even for a recorded unit: the draws of
				// the units after it must not change.
				fs := v.weightFaults(s, ch.Index)
				u, err := v.unit(ctx, jn, Unit{Target: "weights", Layer: l.Name, Channel: ch.Index, DV: *ch.CVFWeights}, fs)
				if err != nil {
					return nil, err
				}
				val.Units = append(val.Units, u)
				wdv, wfi = append(wdv, u.DV), append(wfi, u.FI)
			}
			if acts {
				for _, k := range validationNeurons(s, ch, o.ValidateNeurons, o.Seed) {
					pos, edge := ch.Positions[k], border(s, ch.Positions[k])
					mac, outs := v.macFaults(s, ch.Index, pos), v.outputFaults(s, ch.Index, pos)
					u := Unit{Target: "activations", Layer: l.Name, Channel: ch.Index, Position: &pos, DV: ch.NVF[k]}
					if s.Kind == model.Conv {
						u.Border = &edge
					}
					u, err := v.unit(ctx, jn, u, mac, outs)
					if err != nil {
						return nil, err
					}
					val.Units = append(val.Units, u)
					adv, afi, ofi = append(adv, u.DV), append(afi, u.FI), append(ofi, *u.FIOutput)
				}
			}
		}
	}
	names := make([]string, len(r.Layers))
	for i, l := range r.Layers {
		names[i] = l.Name
	}
	val.Layers = layerAgreements(names, val.Units)
	val.Faults = v.done
	val.Exhaustive = !v.sampled
	val.Weights = agreement(wdv, wfi)
	val.Activations = agreement(adv, afi)
	val.ActivationsOutput = agreement(adv, ofi)
	if val.Weights != nil {
		val.MAECVF, val.MaxCVF, val.SpearmanCVF = &val.Weights.MAE, &val.Weights.Max, val.Weights.Spearman
	}
	return val, nil
}

// unit fills u's FI results from its fault lists: FI from the first list and,
// with a second (activations' stored-output faults), FIOutput. A unit the
// journal holds with the same fault count is taken over and its faults only
// counted; otherwise the lists are injected and the unit recorded.
func (v *validator) unit(ctx context.Context, jn *vfJournal, u Unit, lists ...[]fault.Fault) (Unit, error) {
	for _, l := range lists {
		u.Faults += int64(len(l))
	}
	if rec, ok := jn.unit(u); ok && (len(lists) == 1 || rec.FIOutput != nil) {
		u.FI, u.FIOutput = rec.FI, rec.FIOutput
		v.skip(int(u.Faults))
		return u, nil
	}
	fis := make([]float64, len(lists))
	for i, l := range lists {
		var err error
		if fis[i], err = v.run(ctx, l); err != nil {
			return u, err
		}
	}
	u.FI = fis[0]
	if len(lists) > 1 {
		u.FIOutput = &fis[1]
	}
	return u, jn.recordUnit(u)
}

// write saves vf.csv and then vf.json, each atomically: vf.json last, so that
// with RunVF removing the old one first, a vf.json always has its vf.csv.
func (vf *VF) write(dir string) error {
	b, err := json.MarshalIndent(vf, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, VFCSVFile), 0o644, vf.writeCSV); err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, VFFile), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	return nil
}

// writeCSV writes one row per analysed channel.
func (vf *VF) writeCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"layer", "kind", "channel", "positions", "cvf_activations", "cvf_weights", "lvf_activations", "lvf_weights"})
	f := func(v *float64) string {
		if v == nil {
			return ""
		}
		return strconv.FormatFloat(*v, 'g', -1, 64)
	}
	for _, l := range vf.Layers {
		for _, ch := range l.ChannelVFs {
			_ = cw.Write([]string{l.Name, l.Kind, strconv.Itoa(ch.Index), strconv.Itoa(len(ch.Positions)),
				f(ch.CVFActivations), f(ch.CVFWeights), f(l.LVFActivations), f(l.LVFWeights)})
		}
	}
	cw.Flush()
	return cw.Error()
}
