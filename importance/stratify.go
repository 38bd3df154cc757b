package importance

import (
	"math"
	"math/rand/v2"
	"sort"

	"github.com/faultline/faultline/fault"
)

// classBits lists the bit positions of bit class c (bitClasses' order).
func classBits(c int) []int {
	switch bitClasses[c].name {
	case "sign":
		return []int{31}
	case "exp_msb":
		return []int{30}
	case "exponent":
		return []int{23, 24, 25, 26, 27, 28, 29}
	}
	out := make([]int, 23)
	for b := range out {
		out[b] = b
	}
	return out
}

// stratum is one (layer, bit class) cell of the fault space, with q restricted
// to it: q_h = q / Q_h.
type stratum struct {
	layer, class int
	bits         []int
	share        float64   // P_h, the cell's share of the uniform p
	mass         float64   // Q_h, q's mass on the cell
	cum          []float64 // prefix sums over the layer's elements of g_e * sum over the cell's bits of beta
}

// strata builds the layer x bit-class cells of q's space.
func (q *proposal) strata() []stratum {
	var out []stratum
	for li, l := range q.sp.layers {
		for c := range bitClasses {
			h := stratum{layer: li, class: c, bits: classBits(c), cum: make([]float64, l.n)}
			h.share = float64(l.n) / float64(q.sp.elems) * float64(len(h.bits)) / Bits
			var s float64
			for k := range l.n {
				e := l.start + k
				if q.g[e] > 0 {
					var t float64
					for _, b := range h.bits {
						t += q.beta(e, b)
					}
					s += q.g[e] * t
				}
				h.cum[k] = s
			}
			h.mass = q.alpha * h.share
			if q.sum > 0 {
				h.mass += (1 - q.alpha) * s / q.sum
			}
			out = append(out, h)
		}
	}
	return out
}

// drawIn draws a fault key from q restricted to stratum h.
func (q *proposal) drawIn(h *stratum, r *rand.Rand) int64 {
	l := q.sp.layers[h.layer]
	total := h.cum[len(h.cum)-1]
	uni := q.alpha * h.share
	if total == 0 || q.sum == 0 || r.Float64()*h.mass < uni {
		e := l.start + r.Int64N(l.n)
		return e*Bits + int64(h.bits[r.IntN(len(h.bits))])
	}
	k := int64(sort.SearchFloat64s(h.cum, r.Float64()*total))
	for k < l.n-1 && (h.cum[k] == 0 || (k > 0 && h.cum[k] == h.cum[k-1])) {
		k++ // skip elements without mass
	}
	e := l.start + min(k, l.n-1)
	var t float64
	for _, b := range h.bits {
		t += q.beta(e, b)
	}
	v := r.Float64() * t
	for _, b := range h.bits {
		w := q.beta(e, b)
		if v < w {
			return e*Bits + int64(b)
		}
		v -= w
	}
	return e*Bits + int64(h.bits[len(h.bits)-1])
}

// neyman allocates n draws over strata in proportion to share * sd, with each
// sd raised to at least a twentieth of the largest (a pilot that saw no
// critical fault in a stratum does not prove there is none), by largest
// remainders.
func neyman(n int, share, sd []float64) []int { return allocate(n, share, sd, 1.0/20) }

// allocate gives n draws in proportion to share_h * max(sd_h, floor * max sd).
func allocate(n int, share, sd []float64, floor float64) []int {
	var top float64
	for _, s := range sd {
		top = math.Max(top, s)
	}
	want := make([]float64, len(share))
	var sum float64
	for h := range share {
		s := math.Max(sd[h], top*floor)
		if top == 0 {
			s = 1
		}
		want[h] = share[h] * s
		sum += want[h]
	}
	out := make([]int, len(share))
	if sum == 0 || n <= 0 {
		return out
	}
	type rem struct {
		h int
		r float64
	}
	var rs []rem
	given := 0
	for h := range want {
		x := float64(n) * want[h] / sum
		out[h] = int(x)
		given += out[h]
		rs = append(rs, rem{h, x - float64(out[h])})
	}
	sort.SliceStable(rs, func(i, j int) bool { return rs[i].r > rs[j].r })
	for i := 0; given < n; i++ {
		out[rs[i%len(rs)].h]++
		given++
	}
	return out
}

// proportional allocates n draws in proportion to weights, by largest
// remainders.
func proportional(n int, weights []float64) []int {
	sd := make([]float64, len(weights))
	for h := range sd {
		sd[h] = 1
	}
	return allocate(n, weights, sd, 0)
}

// stratifiedEstimate combines per-stratum draws (values wy = w*y with w the
// within-stratum weight p_h/q_h, and their weights w) into the estimate of
// sum_h share_h * mean_h(wy), with variance sum_h share_h^2 s_h^2 / n_h.
// Strata with no draw contribute nothing (their share is not covered).
func stratifiedEstimate(share []float64, w, wy [][]float64) Estimate {
	var e Estimate
	var v, sn float64
	var sw, sw2 float64
	h0 := 0
	for h := range share {
		n := len(wy[h])
		if n == 0 || share[h] == 0 {
			continue
		}
		h0++
		e.N += n
		var s, ws float64
		for i, x := range wy[h] {
			s += x
			ws += w[h][i]
			if x > 0 {
				e.Hits++
			}
		}
		m := s / float64(n)
		e.Value += share[h] * m
		if ws > 0 {
			sn += share[h] * s / ws
		}
		v += share[h] * share[h] * sampleVariance(wy[h]) / float64(n)
		// Overall weights of the draws as estimates of the whole mean.
		for _, x := range w[h] {
			ww := share[h] * x / float64(n)
			sw += ww
			sw2 += ww * ww
		}
	}
	e.SelfNormalised = sn
	e.Variance = v * float64(e.N)
	if sw2 > 0 {
		e.ESS = sw * sw / sw2
	}
	h := math.Inf(1)
	if df := e.N - h0; df >= 1 {
		h = fault.StudentT(0.95, df) * math.Sqrt(v)
	}
	e.CI95 = [2]float64{math.Max(0, e.Value-h), math.Min(1, e.Value+h)}
	return e
}
