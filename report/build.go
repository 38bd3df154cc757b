package report

import (
	"fmt"
	"math"
	"path/filepath"
	"strconv"
	"strings"
)

// KV is one line of a figure's configuration.
type KV struct{ Key, Value string }

// Figure is one rendered plot with the files and settings it comes from.
type Figure struct {
	ID      string
	Title   string
	Caption string
	SVG     string
	Inputs  []string
	Config  [][]KV // one list per input file
}

// Table is one rendered table.
type Table struct {
	ID      string
	Title   string
	Caption string
	Head    []string
	Rows    [][]string
	Inputs  []string
	Config  [][]KV
}

// Section is a part of the report; it exists only when its inputs were found.
type Section struct {
	ID      string
	Title   string
	Intro   string
	Figures []Figure
	Tables  []Table
}

// Report is everything the HTML page shows.
type Report struct {
	Sections []Section
	Inputs   []*Input
	// Omitted names the sections left out, with the inputs they need.
	Omitted []string
}

// Figures returns every figure of the report in page order.
func (r *Report) Figures() []Figure {
	var out []Figure
	for _, s := range r.Sections {
		out = append(out, s.Figures...)
	}
	return out
}

// sectionSpec lists the sections in page order with the inputs they need.
var sectionSpec = []struct{ id, title, needs string }{
	{"before-after", "Before and after hardening", "a harden report (report.json, kind " + KindHarden + ")"},
	{"lvf", "Layer vulnerability factors (LVF)", "vf.json (kind " + KindVF + ") or a harden report"},
	{"cvf", "Channel vulnerability factors (CVF)", "vf.json (kind " + KindVF + ") or a harden report"},
	{"ber", "Accuracy against bit error rate", "ber.json (kind " + KindBER + ")"},
	{"importance", "Importance sampling against uniform sampling", "an importance summary.json (kind " + KindImportance + ")"},
	{"bits", "SDC per bit position", "a fault-injection summary.json (kind " + KindCampaign + ")"},
	{"critical", "Critical neurons", "ranking.json (kind " + KindRanking + ")"},
	{"models", "Models", "model.json (kind " + KindCheckpoint + ")"},
}

// vfGroup is one set of VF results shown together: a hardening's before and
// after, or one vf.json.
type vfGroup struct {
	name    string
	labels  []string
	colors  []string
	vfs     []VF
	inputs  []string
	configs [][]KV
}

// Build lays out the report from the loaded results.
func Build(s *Set) *Report {
	r := &Report{Inputs: s.Inputs}
	secs := map[string]*Section{}
	for _, sp := range sectionSpec {
		secs[sp.id] = &Section{ID: sp.id, Title: sp.title}
	}
	var vfGroups []vfGroup
	var berGroups [][]berSeries
	var berMeta []Figure
	claimed := map[string]bool{}
	for hi, h := range s.Hardens {
		s.use(h.Path, "")
		dir := filepath.Dir(h.Path)
		g := vfGroup{name: "hardening " + h.Data.Checkpoint + " -> " + h.Data.Hardened, labels: []string{"before", "after"},
			colors: []string{colBefore, colAfter}, inputs: []string{h.Path}, configs: [][]KV{hardenConfig(h)}}
		vfBefore, vfAfter := h.Data.Before.VF, h.Data.After.VF
		var berSides [2]*Doc[BERCurve]
		for _, d := range s.VFs {
			if first, ok := under(dir, d.Path); ok {
				claimed[d.Path] = true
				switch first {
				case "before", "after":
					s.use(d.Path, "shown with "+h.Path)
					g.inputs = append(g.inputs, d.Path)
					g.configs = append(g.configs, vfConfig(d.Data))
					if first == "before" && vfBefore == nil {
						vfBefore = &d.Data
					} else if first == "after" && vfAfter == nil {
						vfAfter = &d.Data
					}
				default:
					s.note(d.Path, "not plotted: a hardening variant (see the ablation rows of "+h.Path+")")
				}
			}
		}
		for i := range s.BERs {
			d := &s.BERs[i]
			if first, ok := under(dir, d.Path); ok {
				claimed[d.Path] = true
				switch first {
				case "before":
					berSides[0] = d
				case "after":
					berSides[1] = d
				default:
					s.note(d.Path, "not plotted: a hardening variant (see the ablation rows of "+h.Path+")")
				}
			}
		}
		secs["before-after"].Tables = append(secs["before-after"].Tables, hardenTable(hi, h))
		if vfBefore != nil && vfAfter != nil {
			g.vfs = []VF{*vfBefore, *vfAfter}
			vfGroups = append(vfGroups, g)
		}
		var ss []berSeries
		meta := Figure{Title: "hardening " + h.Data.Checkpoint + " -> " + h.Data.Hardened}
		for i, d := range berSides {
			if d == nil {
				continue
			}
			s.use(d.Path, "shown with "+h.Path)
			ss = append(ss, curveSeries(g.labels[i], g.colors[i], d.Data))
			meta.Inputs = append(meta.Inputs, d.Path)
			meta.Config = append(meta.Config, berConfig(d.Data))
		}
		if len(ss) > 0 {
			meta.Caption = xLabel(berSides)
			berGroups, berMeta = append(berGroups, ss), append(berMeta, meta)
		}
	}
	for _, d := range s.VFs {
		if claimed[d.Path] {
			continue
		}
		s.use(d.Path, "")
		vfGroups = append(vfGroups, vfGroup{name: d.Data.Checkpoint, labels: []string{d.Data.Arch}, colors: []string{colSingle},
			vfs: []VF{d.Data}, inputs: []string{d.Path}, configs: [][]KV{vfConfig(d.Data)}})
	}
	for i := range s.BERs {
		d := &s.BERs[i]
		if claimed[d.Path] {
			continue
		}
		s.use(d.Path, "")
		berGroups = append(berGroups, []berSeries{curveSeries(d.Data.Arch, colSingle, d.Data)})
		berMeta = append(berMeta, Figure{Title: d.Data.Checkpoint, Caption: xLabel([2]*Doc[BERCurve]{d}), Inputs: []string{d.Path}, Config: [][]KV{berConfig(d.Data)}})
	}
	for i, g := range vfGroups {
		lvfFigures(secs["lvf"], i, g)
		cvfFigures(secs["cvf"], i, g)
	}
	for i, ss := range berGroups {
		m := berMeta[i]
		m.ID = fmt.Sprintf("ber-%d", i+1)
		m.SVG = berChart("accuracy against bit error rate: "+m.Title, m.Caption, ss)
		m.Title = "Accuracy against " + m.Caption + ": " + m.Title
		m.Caption = berCaption(ss)
		secs["ber"].Figures = append(secs["ber"].Figures, m)
	}
	importanceSections(s, secs["importance"], secs["critical"])
	for i, d := range s.Campaigns {
		s.use(d.Path, "")
		if len(d.Data.PerBit) == 0 {
			s.note(d.Path, "no per-bit results")
			continue
		}
		c := d.Data
		caption := fmt.Sprintf("%d faults on %d images each: SDC %s, DUE %s, VF %s of fault x image pairs; golden accuracy %s. The height of a bar is its bit's share of fault x image pairs with a silent data corruption (SDC, pink) or a non-finite output (DUE, green).",
			c.Faults, c.Images, pct(c.SDCRate), pct(c.DUERate), pct(c.VF), pct(c.GoldenAccuracy))
		if c.Inactive != nil {
			caption = fmt.Sprintf("%d faults on %d images each: SDC %s, DUE %s, VF %s of the active fault x image pairs; %d of %d pairs were inactive (the fault left the value it hit unchanged, as a stuck-at fault does on a bit that already holds its value), and over all pairs SDC is %s, DUE %s, VF %s; golden accuracy %s. The height of a bar is its bit's share of active fault x image pairs with a silent data corruption (SDC, pink) or a non-finite output (DUE, green).",
				c.Faults, c.Images, pct(c.SDCRate), pct(c.DUERate), pct(c.VF), *c.Inactive, c.Pairs, pct(c.SDCRateAll), pct(c.DUERateAll), pct(c.VFAll), pct(c.GoldenAccuracy))
		}
		secs["bits"].Figures = append(secs["bits"].Figures, Figure{
			ID: fmt.Sprintf("bits-%d", i+1), Title: "SDC and DUE per bit position: " + c.Campaign.Checkpoint,
			SVG:     bitHistogram("SDC per bit position: "+c.Campaign.Checkpoint, c.PerBit, c.Inactive != nil),
			Caption: caption, Inputs: []string{d.Path}, Config: [][]KV{campaignConfig(c)}})
	}
	if len(s.Checkpoints) > 0 {
		t := Table{ID: "models-1", Title: "Checkpoints found", Head: []string{"file", "arch", "dataset", "source", "epochs", "steps", "seed", "test accuracy", "software"}}
		for _, d := range s.Checkpoints {
			s.use(d.Path, "")
			c := d.Data
			src := c.Source
			if src == "" {
				src = "train"
			}
			t.Rows = append(t.Rows, []string{d.Path, c.Arch, c.Dataset, src, strconv.Itoa(c.Epochs), strconv.FormatInt(c.Steps, 10),
				strconv.FormatInt(c.Seed, 10), pct(c.TestAccuracy), software(c.Software)})
			t.Inputs = append(t.Inputs, d.Path)
		}
		secs["models"].Tables = append(secs["models"].Tables, t)
	}
	for _, sp := range sectionSpec {
		sec := secs[sp.id]
		if len(sec.Figures)+len(sec.Tables) == 0 {
			r.Omitted = append(r.Omitted, sp.title+": needs "+sp.needs)
			continue
		}
		r.Sections = append(r.Sections, *sec)
	}
	return r
}

func xLabel(sides [2]*Doc[BERCurve]) string {
	for _, d := range sides {
		if d != nil && d.Data.Mode == "count" {
			return "flipped bits per trial"
		}
	}
	return "bit error rate"
}

func curveSeries(name, color string, b BERCurve) berSeries {
	return berSeries{Name: name, Color: color, Golden: b.GoldenAccuracy, Points: bands(b)}
}

func berCaption(ss []berSeries) string {
	fromTrials := true
	for _, s := range ss {
		for _, p := range s.Points {
			fromTrials = fromTrials && p.FromTrials
		}
	}
	band := "Light band: 5th to 95th percentile of the trials' accuracies; dark band: 25th to 75th percentile (linear interpolation over the trials stored in ber.json)."
	if !fromTrials {
		band = "Some points have no stored trials: their light band spans the minimum to the maximum accuracy and their dark band collapses to the mean."
	}
	return "Solid line and dots: mean accuracy over the trials; dashed: median; dotted: golden (fault-free) accuracy. " + band
}

// lvfFigures adds the LVF bar charts of one group: activations and weights.
func lvfFigures(sec *Section, i int, g vfGroup) {
	var layers []string
	seen := map[string]bool{}
	for _, v := range g.vfs {
		for _, l := range v.Layers {
			if !seen[l.Name] {
				seen[l.Name] = true
				layers = append(layers, l.Name)
			}
		}
	}
	for _, target := range []string{"activations", "weights"} {
		var ss []series
		any := false
		for k, v := range g.vfs {
			sr := series{Name: g.labels[k], Color: g.colors[k], Values: make([]*float64, len(layers)), CI: make([]*[2]float64, len(layers))}
			for j, name := range layers {
				for _, l := range v.Layers {
					if l.Name != name {
						continue
					}
					if target == "activations" {
						sr.Values[j], sr.CI[j] = l.LVFActivations, l.LVFActivationsCI
					} else {
						sr.Values[j], sr.CI[j] = l.LVFWeights, l.LVFWeightsCI
					}
					any = any || sr.Values[j] != nil
				}
			}
			ss = append(ss, sr)
		}
		if !any {
			continue
		}
		mvf := make([]string, len(g.vfs))
		for k, v := range g.vfs {
			m := v.MVF.Activations
			if target == "weights" {
				m = v.MVF.Weights
			}
			mvf[k] = g.labels[k] + " " + optPct(m)
		}
		sec.Figures = append(sec.Figures, Figure{
			ID: fmt.Sprintf("lvf-%d-%s", i+1, target), Title: "LVF per layer, " + target + ": " + g.name,
			SVG: groupedBars("LVF per layer ("+target+"): "+g.name, layers, ss, "LVF ("+target+")"),
			Caption: "Share of single bit flips in each layer's " + map[string]string{"activations": "MAC input operands (activations)", "weights": "weights"}[target] +
				" that change the prediction (DeepVigor+), with the 95% sampling interval where the layer was sampled. Model MVF (" + target + "): " + strings.Join(mvf, ", ") + ".",
			Inputs: g.inputs, Config: g.configs})
	}
}

// cvfFigures adds one heat map per VF of the group and target, on a scale
// shared within the group.
func cvfFigures(sec *Section, i int, g vfGroup) {
	for _, target := range []string{"activations", "weights"} {
		vmax, cells := 0.0, 0
		for _, v := range g.vfs {
			for _, l := range v.Layers {
				for _, ch := range l.Channel {
					x := ch.CVFActivations
					if target == "weights" {
						x = ch.CVFWeights
					}
					if x != nil {
						vmax, cells = math.Max(vmax, *x), cells+1
					}
				}
			}
		}
		if cells == 0 {
			continue
		}
		for k, v := range g.vfs {
			sec.Figures = append(sec.Figures, Figure{
				ID: fmt.Sprintf("cvf-%d-%s-%d", i+1, target, k+1), Title: "CVF heat map, " + target + ", " + g.labels[k] + ": " + g.name,
				SVG: cvfHeatmap("CVF heat map ("+target+", "+g.labels[k]+"): "+g.name, v, target, vmax),
				Caption: fmt.Sprintf("Sampling ratio %s: only the drawn channels were analysed. Colour scale 0 to %s (the largest CVF of this group, shared by its maps).",
					strconv.FormatFloat(v.SamplingRatio, 'g', -1, 64), pct(vmax)),
				Inputs: g.inputs, Config: g.configs})
		}
	}
}

func optPct(v *float64) string {
	if v == nil {
		return "n/a"
	}
	return pct(*v)
}
