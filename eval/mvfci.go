package eval

import "math"

// The 95% intervals of the MVFs, from the layers' LVF sampling intervals.
//
// An MVF is an unweighted mean over L layers of per-layer terms (an LVF, or for
// the total Eq. 15's weighted sum of a layer's two LVFs). The layers' channels
// are drawn independently, so the variances of the layer terms add: the MVF's
// half-width is sqrt(sum_l h_l^2) / L, with h_l the half-width of layer l's
// term. A layer's half-width is the larger side of its interval (an interval
// clipped at 0 or 1 is as wide as its other side), and zero for a complete
// layer. vf.json does not record the degrees of freedom behind each layer's
// interval, so the half-widths themselves (t_l times the standard error) are
// combined: each layer keeps its own small-sample widening, and the result is
// at least as wide as a combination of standard errors under one common t.
// Eq. 15's two LVFs of a layer come from the same channel draw and are not
// independent: their half-widths add linearly, with the equation's weights
// (the widest their correlation can make the layer's term). A layer with an
// LVF but no interval (a draw that cannot give one) leaves the MVF without one.

// lvfHalfWidth is the larger side of an LVF's 95% interval; ok is false when
// the LVF has no interval.
func lvfHalfWidth(v *float64, ci *[2]float64) (hw float64, ok bool) {
	if v == nil || ci == nil {
		return 0, false
	}
	return max(0, *v-ci[0], ci[1]-*v), true
}

// mvfMean accumulates an unweighted mean over layers of terms with 95%
// half-widths.
type mvfMean struct {
	sum, hw2 float64
	n        int
	noCI     bool // a term without an interval
}

// add adds one layer's term v with half-width hw (ok false: no interval).
func (m *mvfMean) add(v, hw float64, ok bool) {
	m.sum += v
	m.hw2 += hw * hw
	m.n++
	m.noCI = m.noCI || !ok
}

// result is the mean and its 95% interval, clipped to [0, 1]; both nil
// without terms, the interval nil when a term has none.
func (m *mvfMean) result() (*float64, *[2]float64) {
	if m.n == 0 {
		return nil, nil
	}
	v := m.sum / float64(m.n)
	if m.noCI {
		return &v, nil
	}
	h := math.Sqrt(m.hw2) / float64(m.n)
	return &v, &[2]float64{math.Max(0, v-h), math.Min(1, v+h)}
}
