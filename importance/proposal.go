package importance

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"

	"github.com/faultline/faultline/fault"
)

// DefaultCap bounds a bit flip's effect |flip_b(x) - x| in the bit weighting:
// DeepVigor+'s "big error" 2^10, so a flip to 1e38 or Inf does not take all the
// mass of its element.
const DefaultCap = 1024

// bitEffect is min(|flip_b(x) - x|, cap), cap for non-finite results.
func bitEffect(x float32, b int, cap float64) float64 {
	d := math.Abs(float64(fault.FlipBits(x, b)) - float64(x))
	if math.IsNaN(d) || d > cap {
		return cap
	}
	return d
}

// proposal is q(f) = alpha * p(f) + (1 - alpha) * s(f) / S over the fault
// space, p uniform and s(f) = g(element) * beta(element, bit) the sensitivity
// score of the element times the bit's capped effect, S the sum of s. Drawing
// is factorised (element, then bit), but prob gives the full q(f).
type proposal struct {
	sp    *space
	alpha float64
	g     []float64                    // per element, >= 0
	beta  func(e int64, b int) float64 // capped bit effect, >= 0
	tot   []float64                    // per element: g * sum over bits of beta
	cum   []float64                    // prefix sums of tot
	sum   float64
}

// newProposal builds q from element scores g and bit effects beta.
func newProposal(sp *space, alpha float64, g []float64, beta func(e int64, b int) float64) (*proposal, error) {
	if !(alpha >= 0 && alpha <= 1) {
		return nil, fmt.Errorf("importance: alpha %g outside [0, 1]", alpha)
	}
	if int64(len(g)) != sp.elems {
		return nil, fmt.Errorf("importance: %d sensitivities for %d elements", len(g), sp.elems)
	}
	q := &proposal{sp: sp, alpha: alpha, g: g, beta: beta, tot: make([]float64, sp.elems), cum: make([]float64, sp.elems)}
	for e := range sp.elems {
		var t float64
		if g[e] > 0 {
			for b := range Bits {
				t += beta(e, b)
			}
			t *= g[e]
		}
		if math.IsNaN(t) || math.IsInf(t, 0) || t < 0 {
			return nil, fmt.Errorf("importance: sensitivity of element %d is %g", e, t)
		}
		q.tot[e] = t
		q.sum += t
		q.cum[e] = q.sum
	}
	if q.sum == 0 && alpha < 1 {
		return nil, fmt.Errorf("importance: every sensitivity is zero (an untrained or dead model?); use alpha 1 for uniform sampling")
	}
	return q, nil
}

// p is the target distribution's probability of any one fault (uniform).
func (q *proposal) p() float64 { return 1 / float64(q.sp.faults()) }

// prob is q(f) for fault key k.
func (q *proposal) prob(k int64) float64 {
	v := q.alpha * q.p()
	if q.sum > 0 {
		e, b := k/Bits, int(k%Bits)
		v += (1 - q.alpha) * q.g[e] * q.beta(e, b) / q.sum
	}
	return v
}

// draw returns a fault key drawn from q.
func (q *proposal) draw(r *rand.Rand) int64 {
	if q.sum == 0 || r.Float64() < q.alpha {
		return r.Int64N(q.sp.faults())
	}
	u := r.Float64() * q.sum
	e := int64(sort.SearchFloat64s(q.cum, u))
	for e < q.sp.elems-1 && q.tot[e] == 0 { // u on a boundary: skip empty elements
		e++
	}
	e = min(e, q.sp.elems-1)
	v := r.Float64() * q.tot[e] / q.g[e]
	last := 0
	for b := range Bits {
		w := q.beta(e, b)
		if w > 0 {
			last = b
		}
		if v < w {
			return e*Bits + int64(b)
		}
		v -= w
	}
	return e*Bits + int64(last) // rounding: the last bit with mass
}

// floored returns element scores with a floor: g_e + lambda * (mean of g over
// the element's layer). The floor keeps every element's high-effect bits (such
// as the exponent MSB, whose flip is destructive whatever the gradient) within
// reach of the sensitivity component, so their importance weights p/q stay
// small; lambda 0 leaves g as is.
func floored(sp *space, g []float64, lambda float64) []float64 {
	if lambda == 0 {
		return g
	}
	out := make([]float64, len(g))
	for _, l := range sp.layers {
		var m float64
		for e := l.start; e < l.start+l.n; e++ {
			m += g[e]
		}
		m /= float64(l.n)
		for e := l.start; e < l.start+l.n; e++ {
			out[e] = g[e] + lambda*m
		}
	}
	return out
}
