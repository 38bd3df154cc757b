package deepvigor

import (
	"math"
)

// maxExp is the largest power of two a candidate vulnerability value reaches:
// errors of magnitude 2^maxExp and more are the tails.
const maxExp = 10

// grid is the ascending list of thresholds (candidate vulnerability values): the
// signed powers of two from -2^10 to 2^10 with perOctave steps per factor of two,
// and zero. With one step per octave it is the reference's 43 thresholds
// (t0 = -1024, t21 = 0, t42 = 1024).
type grid struct {
	t         []float32
	zero      int // index of 0
	perOctave int
}

// newGrid builds the grid with perOctave thresholds per factor of two.
func newGrid(perOctave int) grid {
	steps := 2 * maxExp * perOctave // per side, after 2^-10
	mags := make([]float32, 0, steps+1)
	for k := 0; k <= steps; k++ {
		mags = append(mags, float32(math.Exp2(-maxExp+float64(k)/float64(perOctave))))
	}
	g := grid{perOctave: perOctave}
	for i := len(mags) - 1; i >= 0; i-- {
		g.t = append(g.t, -mags[i])
	}
	g.zero = len(g.t)
	g.t = append(g.t, 0)
	g.t = append(g.t, mags...)
	return g
}

// top is the index of +2^10, bottom of -2^10.
func (g grid) top() int    { return len(g.t) - 1 }
func (g grid) bottom() int { return 0 }

// index returns the index of threshold v (which must be on the grid).
func (g grid) index(v float32) int {
	for i, t := range g.t {
		if t == v {
			return i
		}
	}
	return -1
}

// dist is the pooled error distribution of one target over the grid.
type dist struct {
	// bins[j] counts errors in [t(j-1), t(j)), with bins[0] below t(0) and
	// bins[len(t)] at or above the last threshold (+Inf included).
	bins []int64
	nan  int64 // NaN errors (always critical)
	n    int64 // every error counted, NaN included
	// cdf[i] = #(error < t(i)), NaN excluded.
	cdf      []int64
	min, max float32 // extreme non-NaN errors (0 when none)
}

// finish computes the cumulative counts once the bins are filled.
func (d *dist) finish() {
	d.cdf = make([]int64, len(d.bins)-1)
	var c int64
	for i := range d.cdf {
		c += d.bins[i]
		d.cdf[i] = c
	}
	d.n = c + d.bins[len(d.bins)-1] + d.nan
}

// add merges another distribution over the same grid.
func (d *dist) add(o *dist) {
	if d.bins == nil {
		d.bins = make([]int64, len(o.bins))
		d.min, d.max = o.min, o.max
	}
	for i, v := range o.bins {
		d.bins[i] += v
	}
	d.nan += o.nan
	d.min = min(d.min, o.min)
	d.max = max(d.max, o.max)
}

// frac returns cdf[i] / n.
func (d *dist) frac(i int) float64 {
	if d.n == 0 {
		return 0
	}
	return float64(d.cdf[i]) / float64(d.n)
}

// upperTail is the number of non-NaN errors at or above the last threshold.
func (d *dist) upperTail() int64 { return d.bins[len(d.bins)-1] }

// lowerTail is the number of errors below the first threshold.
func (d *dist) lowerTail() int64 { return d.bins[0] }

// present reports whether threshold i has errors in [t(i-1), t(i)) (the
// reference's test cdf[i] != cdf[i-1], with cdf[-1] = 0).
func (d *dist) present(i int) bool { return d.bins[i] > 0 }
