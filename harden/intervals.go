package harden

import "math"

// confidence is the level of every interval in report.json.
const confidence = 0.95

// quantileCI returns the distribution-free interval of the q-quantile of the
// distribution sorted (ascending) was drawn from, at the given confidence: the
// order statistics x_(l) and x_(u) with the largest l and the smallest u that
// leave at most (1-confidence)/2 on each side, from the Binomial(n, q) count of
// draws below the quantile. Its coverage is at least the confidence whatever
// the distribution (more with ties). When even the smallest (largest) draw
// leaves more than that on its side, the end is lo (hi), the bound of the
// figure's range: with few draws, a tail quantile cannot be bounded from the
// draws alone. Nothing drawn gives [lo, hi].
func quantileCI(sorted []float64, q, confidence, lo, hi float64) [2]float64 {
	n := len(sorted)
	out := [2]float64{lo, hi}
	if n == 0 {
		return out
	}
	tail := (1 - confidence) / 2
	cdf := binomialCDF(n, q)
	// x_(l) lies above the quantile with probability P(B <= l-1).
	for l := n; l >= 1; l-- {
		if cdf[l-1] <= tail {
			out[0] = sorted[l-1]
			break
		}
	}
	// x_(u) lies below the quantile with probability 1 - P(B <= u-1).
	for u := 1; u <= n; u++ {
		if 1-cdf[u-1] <= tail {
			out[1] = sorted[u-1]
			break
		}
	}
	return out
}

// binomialCDF returns P(B <= k) for k = 0..n, B ~ Binomial(n, p), 0 < p < 1.
func binomialCDF(n int, p float64) []float64 {
	out := make([]float64, n+1)
	lgn, _ := math.Lgamma(float64(n + 1))
	acc := 0.0
	for k := 0; k <= n; k++ {
		lk, _ := math.Lgamma(float64(k + 1))
		lnk, _ := math.Lgamma(float64(n - k + 1))
		acc += math.Exp(lgn - lk - lnk + float64(k)*math.Log(p) + float64(n-k)*math.Log1p(-p))
		out[k] = min(acc, 1)
	}
	return out
}
