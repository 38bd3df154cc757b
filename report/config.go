package report

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Configuration lines shown under each figure: the settings and versions of
// the run that produced it, as its result file records them.

func g(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

func software(s Software) string {
	if s == (Software{}) {
		return "not recorded"
	}
	return fmt.Sprintf("faultline %s, gotch %s, libtorch %s, BLAS %s, %d threads, %s", s.Faultline, s.Gotch, s.Libtorch, s.BLAS, s.Threads, s.Go)
}

func vfConfig(v VF) []KV {
	return []KV{{"checkpoint", v.Checkpoint}, {"arch", v.Arch}, {"dataset", v.Dataset}, {"images", strconv.Itoa(v.Images)},
		{"golden accuracy", pct(v.GoldenAccuracy)}, {"target", v.Target}, {"semantics", v.Semantics},
		{"tail check", strconv.FormatBool(v.TailCheck)}, {"sampling ratio", g(v.SamplingRatio)}, {"seed", strconv.FormatInt(v.Seed, 10)},
		{"thresholds per octave", strconv.Itoa(v.PerOctave)}, {"weight errors", v.WeightErrors}, {"software", software(v.Software)}}
}

func berConfig(b BERCurve) []KV {
	return []KV{{"checkpoint", b.Checkpoint}, {"arch", b.Arch}, {"dataset", b.Dataset}, {"mode", b.Mode},
		{"layers", strings.Join(b.Layers, ", ")}, {"weight bits", strconv.FormatInt(b.Bits, 10)}, {"seed", strconv.FormatInt(b.Seed, 10)},
		{"trials per point", strconv.Itoa(b.TrialsPerPoint)}, {"confidence", g(b.Confidence)}, {"images", strconv.Itoa(b.Images)},
		{"golden accuracy", pct(b.GoldenAccuracy)}}
}

func campaignConfig(c Campaign) []KV {
	h := c.Campaign
	kv := []KV{{"checkpoint", h.Checkpoint}, {"arch", h.Arch}, {"dataset", h.Dataset}, {"mode", h.Mode},
		{"faults", strconv.FormatInt(c.Faults, 10)}, {"images", strconv.Itoa(c.Images)}, {"images per fault", strconv.Itoa(h.ImagesPerFault)}}
	if p := h.Plan; p != nil {
		kv = append(kv, KV{"sampler", p.Sampler}, KV{"seed", strconv.FormatInt(p.Seed, 10)}, KV{"target", p.Space.Target},
			KV{"fault kind", p.Space.Kind}, KV{"bits per fault", strconv.Itoa(max1(p.Space.Multi))})
		if p.Space.Point != "" {
			kv = append(kv, KV{"site", p.Space.Point})
		}
	}
	if c.Inactive != nil {
		kv = append(kv, KV{"inactive pairs", fmt.Sprintf("%d of %d", *c.Inactive, c.Pairs)})
	}
	return kv
}

func importanceConfig(c Importance) []KV {
	return []KV{{"checkpoint", c.Checkpoint}, {"arch", c.Arch}, {"dataset", c.Dataset}, {"target", c.Target}, {"mode", c.Mode},
		{"budget", strconv.Itoa(c.Budget)}, {"tau", g(c.Tau)}, {"alpha", g(c.Alpha)}, {"score", c.Score}, {"seed", strconv.FormatInt(c.Seed, 10)},
		{"images", strconv.Itoa(c.Images)}, {"golden accuracy", pct(c.GoldenAccuracy)}, {"fault space", strconv.FormatInt(c.FaultSpace, 10)},
		{"software", software(c.Software)}}
}

func hardenConfig(h Doc[Harden]) []KV {
	r := h.Data.Recipe
	kv := []KV{{"checkpoint", h.Data.Checkpoint}, {"hardened", h.Data.Hardened}, {"seed", strconv.FormatInt(r.Seed, 10)},
		{"activation clamps", clamps(r.Clamps)}, {"weight clamps", clamps(r.WeightClamps)},
		{"clamp margin", g(r.Margin)}, {"profile images", strconv.Itoa(r.ProfileImages)}}
	if f := r.FAT; f != nil {
		kv = append(kv, KV{"fault-aware training", fmt.Sprintf("%d epochs, lr %s, fault probability %s, %d faults per step, pool share %s, pool %d, %d steps",
			f.Epochs, g(f.LR), g(f.FaultProb), f.FaultsPerStep, g(f.PoolShare), f.PoolSize, f.Steps)})
	} else {
		kv = append(kv, KV{"fault-aware training", "off"})
	}
	if v := h.Data.Before.VF; v != nil {
		kv = append(kv, KV{"DeepVigor+ (both sides)", fmt.Sprintf("sampling ratio %s, %d images, tail check %t, semantics %s, seed %d",
			g(v.SamplingRatio), v.Images, v.TailCheck, v.Semantics, v.Seed)})
	}
	return append(kv, KV{"software", software(h.Data.Software)})
}

// clamps lists clamp ranges by layer name.
func clamps(m map[string]Range) string {
	if len(m) == 0 {
		return "none"
	}
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s [%s, %s]", n, g(m[n].Min), g(m[n].Max))
	}
	return strings.Join(parts, "; ")
}

// berKeys returns the rates of a harden side's BER statistics, in increasing order.
func berKeys(sides ...map[string]BERStats) []string {
	seen := map[string]float64{}
	for _, m := range sides {
		for k, v := range m {
			seen[k] = v.BER
		}
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(a, b int) bool {
		if seen[keys[a]] != seen[keys[b]] {
			return seen[keys[a]] < seen[keys[b]]
		}
		return keys[a] < keys[b]
	})
	return keys
}

// interval formats a 95% interval of fractions; n/a when the file has none.
func interval(ci *[2]float64) string {
	if ci == nil {
		return "n/a"
	}
	return pct(ci[0]) + " to " + pct(ci[1])
}

// hardenTable is the before/after table of a harden report: every number is a
// field of report.json, each figure beside its 95% interval.
func hardenTable(i int, h Doc[Harden]) Table {
	d := h.Data
	t := Table{ID: "harden-" + strconv.Itoa(i+1), Title: "Before and after: " + d.Checkpoint + " -> " + d.Hardened,
		Head: []string{"measure", "before", "95% interval", "after", "95% interval", "change"}, Inputs: []string{h.Path}, Config: [][]KV{hardenConfig(h)}}
	t.Rows = append(t.Rows, []string{"clean accuracy", pct(d.Before.CleanAccuracy), interval(d.Before.CleanAccuracyCI),
		pct(d.After.CleanAccuracy), interval(d.After.CleanAccuracyCI), signedPP(d.Change.CleanAccuracy)})
	type pick func(MVF) (*float64, *[2]float64)
	mvf := func(v *VF, p pick) (string, string) {
		if v == nil {
			return "n/a", "n/a"
		}
		x, ci := p(v.MVF)
		return optPct(x), interval(ci)
	}
	for _, m := range []struct {
		name string
		pick pick
		red  *float64
	}{
		{"MVF total", func(m MVF) (*float64, *[2]float64) { return m.Total, m.TotalCI }, d.Change.MVFTotal},
		{"MVF activations", func(m MVF) (*float64, *[2]float64) { return m.Activations, m.ActivationsCI }, d.Change.MVFActivations},
		{"MVF weights", func(m MVF) (*float64, *[2]float64) { return m.Weights, m.WeightsCI }, d.Change.MVFWeights},
	} {
		ch := "n/a"
		if m.red != nil {
			ch = "-" + pct(*m.red) + " (relative)"
		}
		bv, bci := mvf(d.Before.VF, m.pick)
		av, aci := mvf(d.After.VF, m.pick)
		t.Rows = append(t.Rows, []string{m.name, bv, bci, av, aci, ch})
	}
	for _, k := range berKeys(d.Before.BER, d.After.BER) {
		b, bok := d.Before.BER[k]
		a, aok := d.After.BER[k]
		cell := func(ok bool, v float64) string {
			if !ok {
				return "n/a"
			}
			return pct(v)
		}
		ival := func(ok bool, ci *[2]float64) string {
			if !ok {
				return "n/a"
			}
			return interval(ci)
		}
		diff := func(x, y float64) string {
			if !bok || !aok {
				return ""
			}
			return signedPP(y - x)
		}
		t.Rows = append(t.Rows,
			[]string{"BER " + k + " mean accuracy", cell(bok, b.Mean), ival(bok, b.MeanCI), cell(aok, a.Mean), ival(aok, a.MeanCI), diff(b.Mean, a.Mean)},
			[]string{"BER " + k + " median accuracy", cell(bok, b.Median), ival(bok, b.MedianCI), cell(aok, a.Median), ival(aok, a.MedianCI), diff(b.Median, a.Median)},
			[]string{"BER " + k + " p5 accuracy", cell(bok, b.P5), ival(bok, b.P5CI), cell(aok, a.P5), ival(aok, a.P5CI), diff(b.P5, a.P5)},
			[]string{"BER " + k + " catastrophic trials (< 50%)", cell(bok, b.Catastrophic), ival(bok, b.CatastrophicCI),
				cell(aok, a.Catastrophic), ival(aok, a.CatastrophicCI), diff(b.Catastrophic, a.Catastrophic)})
	}
	for _, ab := range d.Ablation {
		v, ci := mvf(ab.After.VF, func(m MVF) (*float64, *[2]float64) { return m.Total, m.TotalCI })
		t.Rows = append(t.Rows, []string{"ablation " + ab.Variant + ": clean accuracy / MVF total", "", "",
			pct(ab.After.CleanAccuracy) + " / " + v, interval(ab.After.CleanAccuracyCI) + " / " + ci, signedPP(ab.Change.CleanAccuracy)})
	}
	t.Caption = "Clean accuracy on the test set, with Wilson's 95% interval over its images; MVF from DeepVigor+, its interval from the layers' LVF sampling intervals " +
		"(independent layers combined in quadrature; zero width for a complete analysis); BER rows over the trials of each bit error rate, with the Student-t interval of the mean, " +
		"order-statistic intervals of the median and p5 (an end the trials cannot bound shows as 0% or 100%) and Wilson's interval of the catastrophic share. " +
		"n/a: no interval in report.json (written before intervals were recorded, or a layer without an LVF interval). " +
		"Changes in percentage points, except MVF (relative reduction); changes carry no interval."
	return t
}

// signedPP formats a difference of fractions in percentage points.
func signedPP(v float64) string {
	s := strconv.FormatFloat(v*100, 'f', 2, 64)
	if v >= 0 {
		s = "+" + s
	}
	return s + " pp"
}
