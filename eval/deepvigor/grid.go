package deepvigor

import (
	"math"
	"slices"
)

// maxExp is the largest power of two a candidate vulnerability value reaches:
// errors of magnitude 2^maxExp and more are the tails.
const maxExp = 10

// tailExps are the exponents of the coarse thresholds an Exact grid with the
// tail check adds beyond 2^10, before the largest finite float32: bit flips
// move a value by factors of 2^8, 2^16, 2^32, 2^64 and 2^128 (exponent bits),
// so a tail error's magnitude lands near one of these.
var tailExps = []int{12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 120, 124, 126, 127}

// grid is the ascending list of thresholds (candidate vulnerability values): the
// signed powers of two from -2^10 to 2^10 with perOctave steps per factor of two,
// and zero. With one step per octave it is the reference's 43 thresholds
// (t0 = -1024, t21 = 0, t42 = 1024). A tail grid goes on beyond +-2^10 with the
// tailExps thresholds and +-math.MaxFloat32, so that errors up to the largest
// finite float32 are decided by the network; its outermost bins then hold only
// the infinite errors (and the largest finite value itself).
type grid struct {
	t         []float32
	zero      int // index of 0
	perOctave int
	tail      bool
	// exact marks a grid made of a few errors' own values (exactGrid): each
	// candidate is an error, so a cut between two candidates leaves nothing
	// undecided.
	exact bool
}

// exactGrid returns the grid whose candidates are the distinct finite nonzero
// values of errs themselves: a negative error e is the threshold e (a passing
// test at e makes every error in [e, 0) non-critical) and a positive one the
// next float32 above it (so that e itself counts below it). Infinite errors
// are the outer bins, decided by an infinite delta as on a tail grid.
func exactGrid(errs []float32) grid {
	var neg, pos []float32
	for _, e := range errs {
		switch {
		case math.IsNaN(float64(e)) || math.IsInf(float64(e), 0) || e == 0:
		case e < 0:
			neg = append(neg, e)
		default:
			pos = append(pos, math.Nextafter32(e, float32(math.Inf(1))))
		}
	}
	slices.Sort(neg)
	slices.Sort(pos)
	g := grid{perOctave: 1, tail: true, exact: true}
	g.t = append(g.t, slices.Compact(neg)...)
	g.zero = len(g.t)
	g.t = append(g.t, 0)
	g.t = append(g.t, slices.Compact(pos)...)
	return g
}

// binHost bins errs over g on the host as histograms does (NaN apart) and
// returns the finished distribution.
func binHost(g grid, errs []float32) dist {
	d := dist{bins: make([]int64, len(g.t)+1)}
	for _, e := range errs {
		if math.IsNaN(float64(e)) {
			d.nan++
			continue
		}
		if e == 0 {
			d.zeros++
		}
		i, _ := slices.BinarySearchFunc(g.t, e, func(t, v float32) int {
			if t <= v {
				return -1
			}
			return 1
		})
		d.bins[i]++ // the first threshold above e: e < t(i), t(i-1) <= e
	}
	d.finish()
	return d
}

// newGrid builds the grid with perOctave thresholds per factor of two, and
// with the tail thresholds when tail is set.
func newGrid(perOctave int, tail bool) grid {
	steps := 2 * maxExp * perOctave // per side, after 2^-10
	mags := make([]float32, 0, steps+1+len(tailExps)+1)
	for k := 0; k <= steps; k++ {
		mags = append(mags, float32(math.Exp2(-maxExp+float64(k)/float64(perOctave))))
	}
	if tail {
		for _, e := range tailExps {
			mags = append(mags, float32(math.Exp2(float64(e))))
		}
		mags = append(mags, math.MaxFloat32)
	}
	g := grid{perOctave: perOctave, tail: tail}
	for i := len(mags) - 1; i >= 0; i-- {
		g.t = append(g.t, -mags[i])
	}
	g.zero = len(g.t)
	g.t = append(g.t, 0)
	g.t = append(g.t, mags...)
	return g
}

// top is the index of the largest threshold (+2^10, or +MaxFloat32 on a
// tail grid), bottom of the smallest.
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
	// zeros counts the errors that are exactly zero (also in bins): never
	// critical.
	zeros int64
	n     int64 // every error counted, NaN included
	// cdf[i] = #(error < t(i)), NaN excluded.
	cdf []int64
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
	}
	for i, v := range o.bins {
		d.bins[i] += v
	}
	d.nan += o.nan
	d.zeros += o.zeros
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
