package fault

import "math"

// meanInterval returns the sample standard deviation of xs (fractions) around
// their mean and the Student-t interval of the mean, clipped to [0, 1] ([0, 1] for
// one value).
func meanInterval(xs []float64, mean, confidence float64) (std float64, ci [2]float64) {
	if len(xs) < 2 {
		return 0, [2]float64{0, 1}
	}
	for _, x := range xs {
		std += (x - mean) * (x - mean)
	}
	std = math.Sqrt(std / float64(len(xs)-1))
	h := StudentT(confidence, len(xs)-1) * std / math.Sqrt(float64(len(xs)))
	return std, [2]float64{math.Max(0, mean-h), math.Min(1, mean+h)}
}

// StudentT returns the two-sided quantile t of Student's t distribution with df
// degrees of freedom: P(|T| <= t) = confidence (12.706 for df 1 at 0.95, 1.96 as df
// grows). It bisects on theta = atan(t / sqrt(df)).
func StudentT(confidence float64, df int) float64 {
	lo, hi := 0.0, math.Pi/2
	for range 100 {
		mid := (lo + hi) / 2
		if tCentral(mid, df) < confidence {
			lo = mid
		} else {
			hi = mid
		}
	}
	return math.Sqrt(float64(df)) * math.Tan((lo+hi)/2)
}

// tCentral is P(|T| <= sqrt(df) tan(theta)) for Student's t with df degrees of
// freedom, by the finite series of Abramowitz and Stegun 26.7.3 (odd df) and
// 26.7.4 (even df).
func tCentral(theta float64, df int) float64 {
	s, c := math.Sincos(theta)
	c2 := c * c
	sum := 0.0
	if df%2 == 1 { // (2/pi) (theta + sin (cos + 2/3 cos^3 + ... + cos^(df-2)))
		term := c
		for k := 1; k <= df-2; k += 2 {
			sum += term
			term *= float64(k+1) / float64(k+2) * c2
		}
		return 2 / math.Pi * (theta + s*sum)
	}
	term := 1.0 // sin (1 + 1/2 cos^2 + 1.3/(2.4) cos^4 + ... + cos^(df-2))
	for k := 0; k <= df-2; k += 2 {
		sum += term
		term *= float64(k+1) / float64(k+2) * c2
	}
	return s * sum
}

// binomialQuantile returns the smallest k with P(Binomial(n, p) <= k) >= u, for u
// in (0, 1). It sums the probabilities outward from the mode (as ratios to the
// mode's, until they are negligible), so its cost grows with the standard deviation,
// not with n. For a fixed u it grows with p.
func binomialQuantile(n int64, p, u float64) int64 {
	if p >= 1 {
		return n
	}
	m := min(n, int64(float64(n+1)*p)) // a mode
	q := p / (1 - p)
	const negligible = 1e-20
	var down []float64 // weights of m-1, m-2, ... relative to the mode's
	w := 1.0
	for k := m; k > 0; k-- {
		w *= float64(k) / (float64(n-k+1) * q)
		if w < negligible {
			break
		}
		down = append(down, w)
	}
	up := []float64{1} // weights of m, m+1, ...
	w = 1
	for k := m; k < n; k++ {
		w *= float64(n-k) / float64(k+1) * q
		if w < negligible {
			break
		}
		up = append(up, w)
	}
	total := 0.0
	for i := len(down) - 1; i >= 0; i-- { // smallest first
		total += down[i]
	}
	for i := len(up) - 1; i >= 0; i-- {
		total += up[i]
	}
	target, acc := u*total, 0.0
	for i := len(down) - 1; i >= 0; i-- {
		if acc += down[i]; acc >= target {
			return m - int64(i) - 1
		}
	}
	for i, w := range up {
		if acc += w; acc >= target {
			return m + int64(i)
		}
	}
	return m + int64(len(up)) - 1
}
