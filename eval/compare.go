package eval

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
)

// Sampling comparison result kind and schema.
const (
	ComparisonKind   = "faultline.vf_sampling_comparison"
	ComparisonSchema = 1
)

// DefaultTolerance is the LVF difference (0.5 pp) a sampled layer should stay
// under against the complete analysis.
const DefaultTolerance = 0.005

// Comparison sets sampled DeepVigor+ analyses (vf.json files) beside a complete
// one (sampling ratio 1) of the same checkpoint and settings, layer by layer:
// how far each sampled LVF is from the complete LVF, and whether the sampled
// run's 95% interval holds it (`faultline eval compare`).
type Comparison struct {
	Kind          string  `json:"kind"`
	SchemaVersion int     `json:"schema_version"`
	Complete      string  `json:"complete"` // the complete run's vf.json
	Tolerance     float64 `json:"tolerance"`
	// Layers are the complete run's LVFs, in its order.
	Layers  []CompleteLayer   `json:"layers"`
	Runs    []SampledRun      `json:"runs"`
	Summary []ComparisonStats `json:"summary"` // one per target compared
}

// CompleteLayer is one layer's LVFs in the complete analysis and, per target,
// the sampled runs' differences from them.
type CompleteLayer struct {
	Name           string            `json:"name"`
	LVFActivations *float64          `json:"lvf_activations"`
	LVFWeights     *float64          `json:"lvf_weights"`
	Stats          []ComparisonStats `json:"stats"`
}

// SampledRun is one sampled run against the complete one.
type SampledRun struct {
	Path          string      `json:"path"`
	Seed          int64       `json:"seed"`
	SamplingRatio float64     `json:"sampling_ratio"`
	Layers        []LayerDiff `json:"layers"`
}

// LayerDiff is one layer and target of a sampled run.
type LayerDiff struct {
	Layer    string  `json:"layer"`
	Target   string  `json:"target"` // activations or weights
	Channels int     `json:"channels"`
	Sampled  float64 `json:"lvf_sampled"`
	Complete float64 `json:"lvf_complete"`
	// Diff is |Sampled - Complete| (a fraction: 0.005 is 0.5 pp).
	Diff float64 `json:"abs_diff"`
	// CI is the sampled run's 95% interval and InCI whether it holds the
	// complete LVF; both absent when the sampled run gave no interval.
	CI   *[2]float64 `json:"ci95,omitempty"`
	InCI *bool       `json:"in_ci,omitempty"`
}

// ComparisonStats sums up one target over every run and layer (in Summary), or
// over every run for one layer (in Layers).
type ComparisonStats struct {
	Target   string  `json:"target"`
	Cases    int     `json:"cases"` // layer x run pairs
	MeanDiff float64 `json:"mean_abs_diff"`
	MaxDiff  float64 `json:"max_abs_diff"`
	MaxAt    string  `json:"max_at"` // "layer (path)"
	// UnderTolerance counts the cases with Diff < Tolerance.
	UnderTolerance int `json:"under_tolerance"`
	WithCI         int `json:"with_ci"`
	InCI           int `json:"in_ci"`
}

// ReadVF reads a vf.json (or the vf.json in a directory), checking its kind.
func ReadVF(path string) (*VF, string, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, VFFile)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, path, fmt.Errorf("eval: %w", err)
	}
	var vf VF
	if err := json.Unmarshal(b, &vf); err != nil {
		return nil, path, fmt.Errorf("eval: %s: not a valid vf.json: %w", path, err)
	}
	if vf.Kind != VFKind {
		return nil, path, fmt.Errorf("eval: %s: kind %q, want %q (a vf.json of faultline eval vf)", path, vf.Kind, VFKind)
	}
	return &vf, path, nil
}

// Compare compares the sampled runs' LVFs with the complete run's. The runs
// must share the complete run's checkpoint, images and analysis settings (the
// error names the first field that differs), the complete run must have
// sampling ratio 1, and each sampled run less.
func Compare(complete string, sampled []string, tolerance float64) (*Comparison, error) {
	if len(sampled) == 0 {
		return nil, fmt.Errorf("eval: compare: no sampled run given")
	}
	if !(tolerance > 0 && tolerance < 1) {
		return nil, fmt.Errorf("eval: compare: tolerance %g: want a fraction in (0, 1) (0.005 = 0.5 pp)", tolerance)
	}
	full, fpath, err := ReadVF(complete)
	if err != nil {
		return nil, err
	}
	if full.SamplingRatio != 1 {
		return nil, fmt.Errorf("eval: compare: %s has sampling ratio %g; the complete analysis has 1 (--sampling-ratio 1)", fpath, full.SamplingRatio)
	}
	c := &Comparison{Kind: ComparisonKind, SchemaVersion: ComparisonSchema, Complete: fpath, Tolerance: tolerance}
	at := map[string]int{} // layer -> index in full.Layers and c.Layers
	for i, l := range full.Layers {
		at[l.Name] = i
		c.Layers = append(c.Layers, CompleteLayer{Name: l.Name, LVFActivations: l.LVFActivations, LVFWeights: l.LVFWeights})
	}
	var summary statsByTarget
	for _, p := range sampled {
		vf, path, err := ReadVF(p)
		if err != nil {
			return nil, err
		}
		if err := sameSettings(full, vf); err != nil {
			return nil, fmt.Errorf("eval: compare: %s against %s: %w", path, fpath, err)
		}
		if vf.SamplingRatio >= 1 {
			return nil, fmt.Errorf("eval: compare: %s is a complete analysis too (sampling ratio 1)", path)
		}
		run := SampledRun{Path: path, Seed: vf.Seed, SamplingRatio: vf.SamplingRatio}
		for _, l := range vf.Layers {
			i, ok := at[l.Name]
			if !ok {
				return nil, fmt.Errorf("eval: compare: %s: layer %s is not in %s", path, l.Name, fpath)
			}
			r := full.Layers[i]
			for _, t := range []struct {
				name      string
				lvf, want *float64
				ci        *[2]float64
			}{
				{"activations", l.LVFActivations, r.LVFActivations, l.LVFActivationsCI},
				{"weights", l.LVFWeights, r.LVFWeights, l.LVFWeightsCI},
			} {
				if t.lvf == nil || t.want == nil {
					continue
				}
				d := LayerDiff{Layer: l.Name, Target: t.name, Channels: len(l.ChannelVFs), Sampled: *t.lvf, Complete: *t.want,
					Diff: math.Abs(*t.lvf - *t.want), CI: t.ci}
				if t.ci != nil {
					in := t.ci[0] <= *t.want && *t.want <= t.ci[1]
					d.InCI = &in
				}
				where := fmt.Sprintf("%s (%s)", l.Name, path)
				summary.add(d, where, tolerance)
				cl := &c.Layers[i]
				(*statsByTarget)(&cl.Stats).add(d, where, tolerance)
				run.Layers = append(run.Layers, d)
			}
		}
		c.Runs = append(c.Runs, run)
	}
	if len(summary) == 0 {
		return nil, fmt.Errorf("eval: compare: the runs share no analysed target with %s", fpath)
	}
	c.Summary = summary.finish()
	for i := range c.Layers {
		c.Layers[i].Stats = statsByTarget(c.Layers[i].Stats).finish()
	}
	return c, nil
}

// statsByTarget accumulates ComparisonStats, one per target in order of first
// appearance; MeanDiff holds the sum until finish.
type statsByTarget []ComparisonStats

// add counts one layer difference; where names it for MaxAt.
func (ss *statsByTarget) add(d LayerDiff, where string, tolerance float64) {
	i := slices.IndexFunc(*ss, func(s ComparisonStats) bool { return s.Target == d.Target })
	if i < 0 {
		*ss = append(*ss, ComparisonStats{Target: d.Target})
		i = len(*ss) - 1
	}
	s := &(*ss)[i]
	s.Cases++
	s.MeanDiff += d.Diff
	if d.Diff > s.MaxDiff || s.Cases == 1 {
		s.MaxDiff, s.MaxAt = d.Diff, where
	}
	if d.Diff < tolerance {
		s.UnderTolerance++
	}
	if d.InCI != nil {
		s.WithCI++
		if *d.InCI {
			s.InCI++
		}
	}
}

// finish turns the sums of differences into means.
func (ss statsByTarget) finish() []ComparisonStats {
	for i := range ss {
		ss[i].MeanDiff /= float64(ss[i].Cases)
	}
	return ss
}

// sameSettings reports the first setting in which b differs from a.
func sameSettings(a, b *VF) error {
	for _, f := range []struct {
		name string
		x, y any
	}{
		{"checkpoint", a.Checkpoint, b.Checkpoint},
		{"arch", a.Arch, b.Arch},
		{"dataset", a.Dataset, b.Dataset},
		{"images", a.Images, b.Images},
		{"golden_accuracy", a.GoldenAccuracy, b.GoldenAccuracy},
		{"semantics", a.Semantics, b.Semantics},
		{"tail_check", a.TailCheck, b.TailCheck},
		{"thresholds_per_octave", a.PerOctave, b.PerOctave},
		{"weight_errors", a.WeightErrors, b.WeightErrors},
	} {
		if f.x != f.y {
			return fmt.Errorf("%s %v, the complete run's %v (compare runs with identical settings)", f.name, f.y, f.x)
		}
	}
	return nil
}
