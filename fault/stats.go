package fault

import (
	"fmt"
	"math"
)

// Quantile returns the two-sided standard normal quantile t for a confidence level
// (1.96 for 0.95, 2.576 for 0.99, 3.291 for 0.999).
func Quantile(confidence float64) float64 {
	// inverse of the normal CDF at 1 - (1-confidence)/2, by bisection on Erfc
	p := (1 - confidence) / 2
	lo, hi := 0.0, 10.0
	for range 200 {
		mid := (lo + hi) / 2
		if 0.5*math.Erfc(mid/math.Sqrt2) > p {
			lo = mid
		} else {
			hi = mid
		}
	}
	return (lo + hi) / 2
}

// Wilson returns the Wilson score interval of k successes in n trials at the
// given confidence. It stays inside [0, 1] and is sensible at k = 0 or k = n.
func Wilson(k, n int64, confidence float64) [2]float64 {
	if n == 0 {
		return [2]float64{0, 1}
	}
	return wilson(float64(k)/float64(n), float64(n), confidence)
}

// WilsonEffective is Wilson's interval for a mean p of values in [0, 1] over an
// effective sample size n (not necessarily whole, such as Kish's for weighted
// draws). Such values vary at most as a proportion does (variance at most
// p(1-p)), so the interval stays conservative for them, and it keeps a width
// where a sample variance would be zero (one draw, or equal values).
func WilsonEffective(p, n, confidence float64) [2]float64 {
	if !(n > 0) {
		return [2]float64{0, 1}
	}
	return wilson(p, n, confidence)
}

// wilson is Wilson's interval for a proportion p observed over an effective
// sample size nn (not necessarily whole).
func wilson(p, nn, confidence float64) [2]float64 {
	z := Quantile(confidence)
	den := 1 + z*z/nn
	centre := (p + z*z/(2*nn)) / den
	half := z / den * math.Sqrt(p*(1-p)/nn+z*z/(4*nn*nn))
	ci := [2]float64{math.Max(0, centre-half), math.Min(1, centre+half)}
	// At p = 0 (1) the lower (upper) end is exactly 0 (1); rounding can leave
	// it at 1e-18 from there.
	if p <= 0 {
		ci[0] = 0
	}
	if p >= 1 {
		ci[1] = 1
	}
	return ci
}

// SampleSize is Leveugle et al.'s statistical fault-injection sample size for a
// population of n faults, error margin e, confidence (as t) and expected
// proportion p: n / (1 + e^2 (N-1) / (t^2 p (1-p))), rounded up.
func SampleSize(population int64, e, confidence, p float64) (int64, error) {
	if population < 1 {
		return 0, fmt.Errorf("fault: population %d", population)
	}
	if !(e > 0 && e < 1) {
		return 0, fmt.Errorf("fault: error margin %v outside (0, 1)", e)
	}
	if !(confidence > 0 && confidence < 1) {
		return 0, fmt.Errorf("fault: confidence %v outside (0, 1)", confidence)
	}
	if !(p > 0 && p < 1) {
		return 0, fmt.Errorf("fault: expected proportion %v outside (0, 1)", p)
	}
	n := LeveugleN(population, e, Quantile(confidence), p)
	return min(population, int64(math.Ceil(n-1e-9))), nil
}

// LeveugleN is the unrounded Leveugle sample size for quantile t.
func LeveugleN(population int64, e, t, p float64) float64 {
	return float64(population) / (1 + e*e*float64(population-1)/(t*t*p*(1-p)))
}
