package datasets

import (
	"fmt"
	"math"
	"strings"
)

// Stats holds per-channel normalisation statistics of pixel/255: a pixel p of channel
// c becomes (p/255 - Mean[c]) / Std[c].
type Stats struct {
	Mean []float32 `json:"mean"`
	Std  []float32 `json:"std"`
}

// knownStats are the training-split statistics of the registered data sets.
// fashion-mnist was computed from the installed files (see TestKnownStatsFashionMNIST);
// mnist and cifar10 are the values in common use.
var knownStats = map[string]Stats{
	"fashion-mnist": {Mean: []float32{0.2860406}, Std: []float32{0.3530242}},
	"mnist":         {Mean: []float32{0.1307}, Std: []float32{0.3081}},
	"cifar10":       {Mean: []float32{0.4914, 0.4822, 0.4465}, Std: []float32{0.2470, 0.2435, 0.2616}},
}

// KnownStats returns the training-split statistics of a registered data set, and
// false when none are recorded (as for "synthetic": use ComputeStats).
func KnownStats(name string) (Stats, bool) {
	st, ok := knownStats[strings.ToLower(name)]
	if !ok {
		return Stats{}, false
	}
	return Stats{Mean: append([]float32(nil), st.Mean...), Std: append([]float32(nil), st.Std...)}, true
}

// ComputeStats returns the mean and (population) standard deviation of pixel/255 per
// channel over every image of s. An empty set gives zero statistics.
func ComputeStats(s *Set) Stats {
	hist := make([][256]uint64, s.C)
	plane := s.H * s.W
	for i := range s.N {
		img := s.Image(i)
		for c := range s.C {
			h := &hist[c]
			for _, p := range img[c*plane : (c+1)*plane] {
				h[p]++
			}
		}
	}
	st := Stats{Mean: make([]float32, s.C), Std: make([]float32, s.C)}
	count := float64(s.N) * float64(plane)
	if count == 0 {
		return st
	}
	for c := range s.C {
		var sum float64
		for v, n := range hist[c] {
			sum += float64(v) / 255 * float64(n)
		}
		mean := sum / count
		var ss float64
		for v, n := range hist[c] {
			d := float64(v)/255 - mean
			ss += d * d * float64(n)
		}
		st.Mean[c] = float32(mean)
		st.Std[c] = float32(math.Sqrt(ss / count))
	}
	return st
}

// Validate checks that st has one finite mean and one finite, positive standard
// deviation per channel.
func (st Stats) Validate(channels int) error {
	if len(st.Mean) != channels || len(st.Std) != channels {
		return fmt.Errorf("datasets: stats have %d means and %d stds for %d channels", len(st.Mean), len(st.Std), channels)
	}
	for c := range channels {
		m, s := float64(st.Mean[c]), float64(st.Std[c])
		if math.IsNaN(m) || math.IsInf(m, 0) {
			return fmt.Errorf("datasets: stats: mean[%d] = %v is not finite", c, m)
		}
		if !(s > 0) || math.IsInf(s, 0) {
			return fmt.Errorf("datasets: stats: std[%d] = %v (want finite and > 0)", c, s)
		}
	}
	return nil
}

// lut returns, per channel, the normalised value of each of the 256 pixel levels.
// Zero Stats (no means) give p/255.
func (st Stats) lut(channels int) [][256]float32 {
	t := make([][256]float32, channels)
	for c := range channels {
		mean, std := 0.0, 1.0
		if st.Mean != nil {
			mean, std = float64(st.Mean[c]), float64(st.Std[c])
		}
		for p := range 256 {
			t[c][p] = float32((float64(p)/255 - mean) / std)
		}
	}
	return t
}
