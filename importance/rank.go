package importance

import (
	"math"
	"math/rand/v2"
	"slices"

	"github.com/faultline/faultline/fault"
)

// Unit is one neuron group ranked by criticality: an output channel of a conv
// layer or an output unit of a linear layer (for weights, the filter that
// produces it).
type Unit struct {
	Layer string `json:"layer"`
	Index int64  `json:"index"`
	// Score is the estimated probability that a uniformly drawn single-bit fault
	// in the unit misclassifies an image, post-stratified by bit class (see
	// rank); from the layer's draws alone when Faults is 0.
	Score *float64 `json:"score"`
	// CI95 is Score's delta-method 95% interval (absent below two faults). It
	// rests on the spread of the draws within each bit class, so it is narrow,
	// even empty, when a class holds one draw or equal values: the ranking
	// does not use it.
	CI95 *[2]float64 `json:"ci95,omitempty"`
	// ScoreLower is the lower confidence bound the ranking orders by: Score
	// with each bit class's term replaced by the lower end of Wilson's 95%
	// interval for the unit's mean in that class, over the class's Kish
	// effective number of draws (sum w)^2 / sum w^2, and 0 for a class without
	// draws of the unit (its layer's mean says nothing of the unit). Values
	// in [0, 1] vary at most as much as a proportion with their mean, so the
	// bound needs no sample variance (which one draw, or equal values, would
	// put at 0) and is low for units drawn once or twice: one draw at 0.86
	// bounds its class at 0.15, nine at 0.9 at 0.58. A unit never drawn has 0.
	ScoreLower *float64 `json:"score_lower"`
	Faults     int      `json:"faults"`   // faults drawn in the unit
	Critical   int      `json:"critical"` // of them, critical ones
	Rank       int      `json:"rank"`     // 1 = most critical
	key        int      // position in the space's unit numbering
}

// unitKey numbers the units of a space: layer by layer, unit by unit.
func (s *space) unitKey(e int64) int {
	l, u := s.unitOf(e)
	k := 0
	for i := range l {
		k += int(s.layers[i].n / s.layers[i].unit)
	}
	return k + int(u)
}

// unitStart returns the first element of unit key u.
func (s *space) unitStart(u int) int64 {
	for _, l := range s.layers {
		n := int(l.n / l.unit)
		if u < n {
			return l.start + int64(u)*l.unit
		}
		u -= n
	}
	return s.elems - 1
}

// units lists every unit of the space, in unitKey order.
func (s *space) units() []Unit {
	var out []Unit
	for _, l := range s.layers {
		for u := range l.n / l.unit {
			out = append(out, Unit{Layer: l.site.Name, Index: u, key: len(out)})
		}
	}
	return out
}

// rank scores every unit of the space from weighted draws (keys, weights w =
// p/q, values y in [0, 1], critical flags) and orders them by decreasing
// lower confidence bound (Unit.ScoreLower), then by decreasing score, then by
// position: a unit drawn once or twice with a high score ranks below a unit
// whose many draws make it surely critical, and the units never drawn (bound
// 0) come last, in the order of their layers' scores. The score is
// post-stratified by bit class: sum over the classes of (bits in class / 32)
// times the self-normalised weighted mean of y over the unit's draws in that
// class, or, where the unit has none, over its layer's. A plain weighted mean
// over the unit would swing with the rare draws that carry a large weight
// p/q; per class, the weights within a cell are close. A unit without any
// draw gets its layer's class means.
func rank(s *space, keys []int64, w, y []float64, crit []bool) []Unit {
	us := s.units()
	nc := len(bitClasses)
	classOf := func(b int) int {
		for c, bc := range bitClasses {
			if bc.name == bitClass(b) {
				return c
			}
		}
		return 0
	}
	type cell struct{ sw, swy, sw2 float64 }
	unit := make([][]cell, len(us))
	for u := range unit {
		unit[u] = make([]cell, nc)
	}
	layer := make([][]cell, len(s.layers))
	for l := range layer {
		layer[l] = make([]cell, nc)
	}
	idx := make([][]int, len(us))
	for i, k := range keys {
		e := k / Bits
		u, c := s.unitKey(e), classOf(int(k%Bits))
		l := s.layerOf(e)
		unit[u][c].sw += w[i]
		unit[u][c].swy += w[i] * y[i]
		unit[u][c].sw2 += w[i] * w[i]
		layer[l][c].sw += w[i]
		layer[l][c].swy += w[i] * y[i]
		idx[u] = append(idx[u], i)
		us[u].Faults++
		if crit[i] {
			us[u].Critical++
		}
	}
	mean := func(x cell) float64 {
		if x.sw == 0 {
			return 0
		}
		return x.swy / x.sw
	}
	for u := range us {
		l := s.layerOf(s.unitStart(u))
		mu := make([]float64, nc)
		var score, lower float64
		for c, bc := range bitClasses {
			mu[c] = mean(layer[l][c])
			if x := unit[u][c]; x.sw > 0 {
				mu[c] = mean(x)
				lower += float64(bc.bits) / Bits * fault.WilsonEffective(mu[c], x.sw*x.sw/x.sw2, 0.95)[0]
			}
			score += float64(bc.bits) / Bits * mu[c]
		}
		us[u].Score, us[u].ScoreLower = &score, &lower
		if len(idx[u]) < 2 {
			continue
		}
		// Delta method per class cell; classes without draws add nothing.
		v := make([]float64, nc)
		for _, i := range idx[u] {
			c := classOf(int(keys[i] % Bits))
			d := w[i] * (y[i] - mu[c])
			v[c] += d * d
		}
		var vr float64
		for c, bc := range bitClasses {
			if sw := unit[u][c].sw; sw > 0 {
				f := float64(bc.bits) / Bits
				vr += f * f * v[c] / (sw * sw)
			}
		}
		h := 1.96 * math.Sqrt(vr)
		us[u].CI95 = &[2]float64{math.Max(0, score-h), math.Min(1, score+h)}
	}
	slices.SortStableFunc(us, func(a, b Unit) int {
		if c := descending(a.ScoreLower, b.ScoreLower); c != 0 {
			return c
		}
		if c := descending(a.Score, b.Score); c != 0 {
			return c
		}
		return a.key - b.key
	})
	for i := range us {
		us[i].Rank = i + 1
	}
	return us
}

// descending orders x before y when x is larger; nil last.
func descending(x, y *float64) int {
	switch {
	case x == nil && y == nil:
		return 0
	case x == nil:
		return 1
	case y == nil:
		return -1
	case *x > *y:
		return -1
	case *x < *y:
		return 1
	}
	return 0
}

// ProtectionPoint is the model VF left when a share of the fault space's
// elements (weights or neurons) is protected, faults there masked: the units
// of the ranking taken from the top, and units in a seeded random order, until
// they hold that share.
type ProtectionPoint struct {
	Share  float64 `json:"share"`     // target share of elements protected
	Units  int     `json:"units"`     // units protected by the ranking
	Ranked float64 `json:"vf_ranked"` // VF left, protecting by the ranking
	Random float64 `json:"vf_random"` // VF left, protecting at random
}

// protection estimates, from uniform draws (keys, values y), the VF left when
// 0, 1, ..., 20% of the elements are protected by the ranking and at random.
// The draws must be independent of the ranking's, or the curve flatters it.
func protection(s *space, ranked []Unit, keys []int64, y []float64, seed int64) []ProtectionPoint {
	n := len(ranked)
	size := map[string]int64{}
	for _, l := range s.layers {
		size[l.site.Name] = l.unit
	}
	byKey := make([]Unit, n)
	for _, u := range ranked {
		byKey[u.key] = u
	}
	random := rand.New(rand.NewPCG(uint64(seed), 0x9e37)).Perm(n)
	// take marks units in order until they hold share of the elements.
	take := func(order func(i int) Unit, share float64) ([]bool, int) {
		marked := make([]bool, n)
		var elems int64
		k := 0
		for ; k < n && float64(elems) < share*float64(s.elems); k++ {
			u := order(k)
			marked[u.key] = true
			elems += size[u.Layer]
		}
		return marked, k
	}
	m := float64(max(len(keys), 1))
	var out []ProtectionPoint
	for pct := 0; pct <= 20; pct++ {
		share := float64(pct) / 100
		byRank, k := take(func(i int) Unit { return ranked[i] }, share)
		byRand, _ := take(func(i int) Unit { return byKey[random[i]] }, share)
		var vr, vx float64
		for i, key := range keys {
			u := s.unitKey(key / Bits)
			if !byRank[u] {
				vr += y[i]
			}
			if !byRand[u] {
				vx += y[i]
			}
		}
		out = append(out, ProtectionPoint{Share: share, Units: k, Ranked: vr / m, Random: vx / m})
	}
	return out
}

// KendallTau is Kendall's tau-b between two score lists over the same items.
func KendallTau(a, b []float64) float64 {
	var conc, disc, ta, tb float64
	for i := range a {
		for j := i + 1; j < len(a); j++ {
			da, db := cmpf(a[i], a[j]), cmpf(b[i], b[j])
			switch {
			case da == 0 && db == 0:
			case da == 0:
				ta++
			case db == 0:
				tb++
			case da == db:
				conc++
			default:
				disc++
			}
		}
	}
	d := math.Sqrt((conc + disc + ta) * (conc + disc + tb))
	if d == 0 {
		return 0
	}
	return (conc - disc) / d
}

func cmpf(x, y float64) int {
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}
