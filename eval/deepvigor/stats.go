package deepvigor

import (
	"math"

	"github.com/faultline/faultline/fault"
)

// interval is the 95% sampling interval of a layer VF estimated as the mean v of
// n sampled channels' VFs cv (out of channels), each the mean of m of its
// positions' VFs (out of positions) with within-channel variances within (nil
// when a channel VF is not a mean over positions). It is two-stage cluster
// sampling with finite-population corrections:
//
//	var = (1-f1) s1^2/n + f1 (1-f2) mean(s2^2)/(n m),  f1 = n/channels, f2 = m/positions,
//
// with Student's t on n-1 degrees of freedom, clipped to [0, 1]. A complete
// analysis gives [v, v]; one sampled channel out of several gives nil (no
// between-channel variance to estimate).
func interval(v float64, cv, within []float64, channels, positions, m int, complete bool) *[2]float64 {
	if complete {
		return &[2]float64{v, v}
	}
	n := len(cv)
	if n < 2 {
		return nil
	}
	f1 := float64(n) / float64(channels)
	vr := (1 - f1) * variance(cv) / float64(n)
	if within != nil && m > 0 {
		f2 := float64(m) / float64(positions)
		vr += f1 * (1 - f2) * mean(within) / float64(n*m)
	}
	h := fault.StudentT(0.95, n-1) * math.Sqrt(vr)
	return &[2]float64{math.Max(0, v-h), math.Min(1, v+h)}
}
