package importance

import (
	"math"

	"github.com/faultline/faultline/fault"
)

// Estimate is an importance-weighted estimate of the mean of y over the fault
// space from n draws f_i ~ q with weights w_i = p(f_i)/q(f_i) (all 1 for
// uniform draws).
type Estimate struct {
	N int `json:"n"`
	// Value is the unbiased estimate mean(w*y); SelfNormalised is
	// sum(w*y)/sum(w), biased but often steadier.
	Value          float64 `json:"value"`
	SelfNormalised float64 `json:"self_normalised"`
	// CI95 is Value's 95% interval (Student's t on n-1 degrees of freedom),
	// clipped to [0, 1].
	CI95 [2]float64 `json:"ci95"`
	// Variance is the sample variance of w*y: per injection, so the variance of
	// Value is Variance/N.
	Variance float64 `json:"variance_per_injection"`
	ESS      float64 `json:"ess"`  // effective sample size (sum w)^2 / sum w^2
	Hits     int     `json:"hits"` // draws with y > 0
}

// estimate computes the Estimate of draws with weights w and values y.
func estimate(w, y []float64) Estimate {
	n := len(y)
	e := Estimate{N: n}
	if n == 0 {
		return e
	}
	var swy, sw, sw2 float64
	wy := make([]float64, n)
	for i := range y {
		wy[i] = w[i] * y[i]
		swy += wy[i]
		sw += w[i]
		sw2 += w[i] * w[i]
		if y[i] > 0 {
			e.Hits++
		}
	}
	e.Value = swy / float64(n)
	if sw > 0 {
		e.SelfNormalised = swy / sw
		e.ESS = sw * sw / sw2
	}
	e.Variance = sampleVariance(wy)
	h := math.Inf(1)
	if n > 1 {
		h = fault.StudentT(0.95, n-1) * math.Sqrt(e.Variance/float64(n))
	}
	e.CI95 = [2]float64{math.Max(0, e.Value-h), math.Min(1, e.Value+h)}
	return e
}
