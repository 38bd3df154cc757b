package harden

import (
	"math"
	"testing"

	"github.com/faultline/faultline/fault"
)

func TestQuantileCI(t *testing.T) {
	hundred := make([]float64, 100)
	for i := range hundred {
		hundred[i] = float64(i) / 100
	}
	ten := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, tc := range []struct {
		name   string
		sorted []float64
		q      float64
		want   [2]float64
	}{
		// Binomial(10, 0.5): P(B <= 1) = 0.011, P(B <= 2) = 0.055, P(B <= 8) =
		// 0.989: the textbook 2nd and 9th order statistics.
		{"median of 10", ten, 0.5, [2]float64{2, 9}},
		// Binomial(5, 0.5): P(B = 0) = 0.031 > 0.025 on either side.
		{"median of 5: unbounded by the draws", ten[:5], 0.5, [2]float64{0, 1}},
		// Binomial(100, 0.05): P(B = 0) = 0.006, P(B <= 1) = 0.037; P(B <= 9) =
		// 0.972, P(B <= 10) = 0.989: the 1st and 11th draws.
		{"p5 of 100", hundred, 0.05, [2]float64{0, 0.10}},
		// Binomial(3, 0.05): P(B = 0) = 0.857, P(B <= 1) = 0.993.
		{"p5 of 3: lower end unbounded", []float64{0.3, 0.6, 0.9}, 0.05, [2]float64{0, 0.6}},
		{"nothing drawn", nil, 0.05, [2]float64{0, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := quantileCI(tc.sorted, tc.q, 0.95, 0, 1); math.Abs(got[0]-tc.want[0]) > 1e-12 || math.Abs(got[1]-tc.want[1]) > 1e-12 {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestBinomialCDF(t *testing.T) {
	c := binomialCDF(10, 0.5)
	for k, want := range map[int]float64{0: 1.0 / 1024, 1: 11.0 / 1024, 2: 56.0 / 1024, 8: 1013.0 / 1024, 10: 1} {
		if math.Abs(c[k]-want) > 1e-12 {
			t.Errorf("P(B <= %d) = %v, want %v", k, c[k], want)
		}
	}
}

// berStats gives every figure its interval: the curve's t-interval for the
// mean, order statistics for the quantiles, Wilson's for the catastrophic
// share.
func TestBERStatsIntervals(t *testing.T) {
	accs := []float64{0.9, 0.2, 0.8, 0.85, 0.88, 0.86, 0.87, 0.83, 0.89, 0.84}
	c := &fault.BERCurve{Points: []fault.BERPoint{{BER: 1e-4, AccuracyCI: [2]float64{0.61, 0.91}}, {BER: 1e-3}}}
	for i, a := range accs {
		c.Trials = append(c.Trials, fault.BERTrial{Point: 0, Trial: i, Accuracy: a})
	}
	st, ok := berStats(c)["0.0001"]
	if !ok {
		t.Fatal("no statistics for 1e-4")
	}
	if _, ok := berStats(c)["0.001"]; ok {
		t.Error("statistics for a rate without trials")
	}
	if st.Trials != 10 || st.MeanCI != [2]float64{0.61, 0.91} {
		t.Errorf("trials %d, mean interval %v: want 10 and the curve's", st.Trials, st.MeanCI)
	}
	// Sorted: 0.2 0.8 0.83 0.84 0.85 0.86 0.87 0.88 0.89 0.9.
	if st.MedianCI != [2]float64{0.8, 0.89} {
		t.Errorf("median interval %v, want the 2nd and 9th trials [0.8, 0.89]", st.MedianCI)
	}
	if st.P5CI != [2]float64{0, 0.83} {
		t.Errorf("p5 interval %v, want [0, 0.83], the 3rd trial (P(B = 0) = 0.60; P(B <= 1) = 0.914, P(B <= 2) = 0.988)", st.P5CI)
	}
	if want := fault.Wilson(1, 10, 0.95); math.Abs(st.Catastrophic-0.1) > 1e-12 || st.CatastrophicCI != want {
		t.Errorf("catastrophic %v %v, want 0.1 %v", st.Catastrophic, st.CatastrophicCI, want)
	}
	// Wilson's interval for 1 of 10 at 95%: [0.0179, 0.4042].
	if lo, hi := st.CatastrophicCI[0], st.CatastrophicCI[1]; math.Abs(lo-0.0179) > 1e-4 || math.Abs(hi-0.4042) > 1e-4 {
		t.Errorf("catastrophic interval %v, want [0.0179, 0.4042]", st.CatastrophicCI)
	}
}
