package report

import (
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
)

// importanceSections adds precision@k charts and the critical-neuron lists.
func importanceSections(s *Set, imp, crit *Section) {
	byDir := map[string]*Doc[Importance]{}
	for i := range s.Importances {
		d := &s.Importances[i]
		byDir[filepath.Dir(d.Path)] = d
		s.use(d.Path, "")
		if len(d.Data.PrecisionAtK) == 0 {
			s.note(d.Path, "no precision_at_k")
			continue
		}
		isP, uni := d.Data.PrecisionAtK["is"], d.Data.PrecisionAtK["uniform"]
		var ks []string
		seen := map[string]bool{}
		for _, m := range []map[string]float64{isP, uni} {
			for k := range m {
				if !seen[k] {
					seen[k] = true
					ks = append(ks, k)
				}
			}
		}
		sort.Slice(ks, func(a, b int) bool {
			x, ex := strconv.Atoi(ks[a])
			y, ey := strconv.Atoi(ks[b])
			if ex != nil || ey != nil {
				return ks[a] < ks[b]
			}
			return x < y
		})
		val := func(m map[string]float64, k string) *float64 {
			if v, ok := m[k]; ok {
				return &v
			}
			return nil
		}
		si := series{Name: "importance sampling", Color: colIS}
		su := series{Name: "uniform", Color: colUniform}
		groups := make([]string, len(ks))
		for j, k := range ks {
			groups[j] = "k = " + k
			si.Values = append(si.Values, val(isP, k))
			su.Values = append(su.Values, val(uni, k))
		}
		c := d.Data
		reach := func(name string) string {
			if v := c.InjectionsToM[name]; v != nil {
				return strconv.Itoa(*v)
			}
			return "not reached"
		}
		imp.Figures = append(imp.Figures, Figure{
			ID: fmt.Sprintf("importance-%d", i+1), Title: "Precision@k, importance sampling against uniform: " + c.Checkpoint + " (" + c.Target + ")",
			SVG: groupedBars("precision@k: "+c.Checkpoint, groups, []series{si, su}, "precision@k"),
			Caption: fmt.Sprintf("Share of critical faults among the first k injections of each sampler (budget %d each). Injections to find %d critical faults: importance sampling %s, uniform %s.",
				c.Budget, c.M, reach("is"), reach("uniform")),
			Inputs: []string{d.Path}, Config: [][]KV{importanceConfig(c)}})
	}
	for i, d := range s.Rankings {
		s.use(d.Path, "")
		units := append([]Unit(nil), d.Data.Units...)
		sort.SliceStable(units, func(a, b int) bool { return units[a].Rank < units[b].Rank })
		if len(units) > 20 {
			units = units[:20]
		}
		t := Table{ID: fmt.Sprintf("critical-%d", i+1), Title: fmt.Sprintf("Top %d critical units (%s): %s", len(units), d.Data.Target, filepath.Dir(d.Path)),
			Caption: "Score: the estimated probability that a uniformly drawn single-bit fault in the unit misclassifies an image, with its delta-method 95% interval " +
				"(narrow, even empty, for a unit with one draw per bit class). Ranked by the lower bound: each bit class's share of the score at the lower end of " +
				"Wilson's 95% interval over the unit's draws there, 0 for a class without any, so that units drawn once or twice do not top the list; " +
				"n/a: a ranking written before the lower bound, ranked by score.",
			Head: []string{"rank", "layer", "unit", "score", "95% interval", "lower bound (ranks by)", "faults drawn", "critical"}, Inputs: []string{d.Path}}
		if sum := byDir[filepath.Dir(d.Path)]; sum != nil {
			t.Inputs = append(t.Inputs, sum.Path)
			t.Config = append(t.Config, importanceConfig(sum.Data))
		}
		for _, u := range units {
			ci := ""
			if u.CI95 != nil {
				ci = pct(u.CI95[0]) + " to " + pct(u.CI95[1])
			}
			t.Rows = append(t.Rows, []string{strconv.Itoa(u.Rank), u.Layer, strconv.FormatInt(u.Index, 10), optPct(u.Score), ci, optPct(u.ScoreLower),
				strconv.Itoa(u.Faults), strconv.Itoa(u.Critical)})
		}
		crit.Tables = append(crit.Tables, t)
	}
}
