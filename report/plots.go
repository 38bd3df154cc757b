package report

import (
	"fmt"
	"math"
	"sort"
	"strconv"
)

// series is one set of bars of a grouped bar chart.
type series struct {
	Name   string
	Color  string
	Values []*float64    // one per group; nil: no value
	CI     []*[2]float64 // optional interval per group
}

// Colours of the series (colour-blind safe).
const (
	colBefore  = "#d95f02"
	colAfter   = "#1b9e77"
	colSingle  = "#386cb0"
	colIS      = "#7570b3"
	colUniform = "#a6a6a6"
	colSDC     = "#e7298a"
	colDUE     = "#66a61e"
)

// groupedBars draws one bar per series and group, with the series side by side
// inside each group, on a percent axis. Each bar carries class "bar" and its
// exact value in a tooltip.
func groupedBars(label string, groups []string, ss []series, yLabel string) string {
	w := math.Max(480, 120+float64(len(groups)*(len(ss)*22+24)))
	c := newCanvas(w, 300, label)
	p := plotArea{x0: 64, y0: 34, x1: w - 16, y1: 250}
	max := 0.0
	for _, s := range ss {
		for i, v := range s.Values {
			if v != nil {
				max = math.Max(max, *v)
			}
			if i < len(s.CI) && s.CI[i] != nil {
				max = math.Max(max, s.CI[i][1])
			}
		}
	}
	top, step := linearTicks(max)
	y := c.yAxis(p, top, step, yLabel)
	names, colors := make([]string, len(ss)), make([]string, len(ss))
	for i, s := range ss {
		names[i], colors[i] = s.Name, s.Color
	}
	c.legend(p.x0, 18, names, colors)
	gw := p.width() / float64(max1(len(groups)))
	bw := math.Min(36, (gw-12)/float64(max1(len(ss))))
	for g, name := range groups {
		gx := p.x0 + float64(g)*gw + (gw-bw*float64(len(ss)))/2
		for k, s := range ss {
			x := gx + float64(k)*bw
			if g >= len(s.Values) || s.Values[g] == nil {
				c.text(x+bw/2, p.y1-4, "middle", "n/a", ` font-size="9" fill="#888"`)
				continue
			}
			v := *s.Values[g]
			tip := fmt.Sprintf("%s, %s: %s", name, s.Name, pct(v))
			var ci *[2]float64
			if g < len(s.CI) {
				ci = s.CI[g]
			}
			if ci != nil {
				tip += fmt.Sprintf(" (95%% CI %s to %s)", pct(ci[0]), pct(ci[1]))
			}
			c.rect(x+1, y(v), bw-2, p.y1-y(v), s.Color, "bar", tip, fmt.Sprintf(`data-group="%s" data-series="%s"`, esc(name), esc(s.Name)))
			if ci != nil {
				cx := x + bw/2
				c.line(cx, y(math.Max(ci[0], 0)), cx, y(ci[1]), "#222", "")
				c.line(cx-3, y(ci[1]), cx+3, y(ci[1]), "#222", "")
				c.line(cx-3, y(math.Max(ci[0], 0)), cx+3, y(math.Max(ci[0], 0)), "#222", "")
			}
		}
		c.text(p.x0+(float64(g)+0.5)*gw, p.y1+16, "middle", name, "")
	}
	return c.String()
}

func max1(n int) int {
	if n < 1 {
		return 1
	}
	return n
}

// heatColor maps t in [0, 1] to a white-to-dark-red colour.
func heatColor(t float64) string {
	t = math.Max(0, math.Min(1, t))
	stops := [][3]float64{{255, 247, 236}, {252, 141, 89}, {127, 0, 0}}
	seg := t * 2
	i := int(math.Min(1, math.Floor(seg)))
	f := seg - float64(i)
	var rgb [3]int
	for k := range rgb {
		rgb[k] = int(math.Round(stops[i][k] + f*(stops[i+1][k]-stops[i][k])))
	}
	return fmt.Sprintf("#%02x%02x%02x", rgb[0], rgb[1], rgb[2])
}

// cvfHeatmap draws one row per layer and one cell per output channel; the
// channels the analysis drew are coloured by their CVF on a scale from 0 to
// vmax, the others are grey. Coloured cells carry class "cell".
func cvfHeatmap(label string, vf VF, target string, vmax float64) string {
	const rowH, left, right = 26.0, 70.0, 16.0
	w := 720.0
	h := 60 + rowH*float64(len(vf.Layers)) + 50
	c := newCanvas(w, h, label)
	if !(vmax > 0) {
		vmax = 1
	}
	for r, l := range vf.Layers {
		y := 30 + float64(r)*rowH
		c.text(left-6, y+rowH/2+4, "end", l.Name, "")
		n := l.Channels
		for _, ch := range l.Channel {
			n = maxInt(n, ch.Index+1)
		}
		cw := (w - left - right) / float64(max1(n))
		c.rect(left, y+2, w-left-right, rowH-4, "#ececec", "", fmt.Sprintf("%s: %d channels, %d analysed", l.Name, n, len(l.Channel)))
		for _, ch := range l.Channel {
			v := ch.CVFActivations
			if target == "weights" {
				v = ch.CVFWeights
			}
			if v == nil {
				continue
			}
			c.rect(left+float64(ch.Index)*cw, y+2, math.Max(cw, 1.5), rowH-4, heatColor(*v/vmax), "cell",
				fmt.Sprintf("%s channel %d: CVF %s", l.Name, ch.Index, pct(*v)), fmt.Sprintf(`data-layer="%s"`, esc(l.Name)))
		}
	}
	// colour scale
	ly := 30 + rowH*float64(len(vf.Layers)) + 14
	for i := 0; i < 50; i++ {
		c.rect(left+float64(i)*4, ly, 4, 10, heatColor(float64(i)/49), "", "")
	}
	c.text(left, ly+24, "start", "0%", "")
	c.text(left+200, ly+24, "end", pct(vmax), "")
	c.rect(left+230, ly, 14, 10, "#ececec", "", "")
	c.text(left+250, ly+9, "start", "channel not analysed (sampled analysis)", "")
	c.text(left, 18, "start", "CVF ("+target+") per output channel; one row per layer, channel index left to right", "")
	return c.String()
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}

// berBand is one rate of a BER curve, with the quantiles of its trials.
type berBand struct {
	X                      float64
	Mean                   float64
	Lo, Q1, Median, Q3, Hi float64
	Trials                 int
	FromTrials             bool // the quantiles come from the trials, else Lo/Hi are min/max
}

// berSeries is one curve.
type berSeries struct {
	Name   string
	Color  string
	Golden float64
	Points []berBand
}

// quantile is the linear-interpolation quantile q of sorted xs (the method
// faultline's harden report uses for its p5 and median).
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	h := q * float64(len(xs)-1)
	i := int(math.Floor(h))
	if i+1 >= len(xs) {
		return xs[len(xs)-1]
	}
	return xs[i] + (h-float64(i))*(xs[i+1]-xs[i])
}

// bands turns a BER curve into plotted points: with trials, the 5th, 25th, 50th,
// 75th and 95th percentiles of their accuracies; without, min and max.
func bands(b BERCurve) []berBand {
	per := make([][]float64, len(b.Points))
	for _, t := range b.Trials {
		if t.Point >= 0 && t.Point < len(per) {
			per[t.Point] = append(per[t.Point], t.Accuracy)
		}
	}
	var out []berBand
	for i, p := range b.Points {
		x := p.BER
		if b.Mode == "count" {
			x = float64(p.Count)
		}
		if !(x > 0) {
			continue
		}
		bd := berBand{X: x, Mean: p.Accuracy, Lo: p.AccuracyMin, Hi: p.AccuracyMax, Q1: p.Accuracy, Q3: p.Accuracy, Median: p.Accuracy, Trials: p.Trials}
		if acc := per[i]; len(acc) > 0 {
			sort.Float64s(acc)
			bd = berBand{X: x, Mean: p.Accuracy, Lo: quantile(acc, 0.05), Q1: quantile(acc, 0.25), Median: quantile(acc, 0.5),
				Q3: quantile(acc, 0.75), Hi: quantile(acc, 0.95), Trials: len(acc), FromTrials: true}
		}
		out = append(out, bd)
	}
	return out
}

// berChart draws accuracy against the bit error rate (log axis): per series the
// mean (solid, with markers), the median (dashed), a light band from the 5th to
// the 95th percentile and a darker one between the quartiles, and the golden
// accuracy (dotted). Mean markers carry class "mean".
func berChart(label, xLabel string, ss []berSeries) string {
	c := newCanvas(720, 340, label)
	p := plotArea{x0: 64, y0: 34, x1: 704, y1: 290}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range ss {
		for _, b := range s.Points {
			lo, hi = math.Min(lo, math.Log10(b.X)), math.Max(hi, math.Log10(b.X))
		}
	}
	if math.IsInf(lo, 0) {
		lo, hi = 0, 1
	}
	lo, hi = math.Floor(lo-0.25), math.Ceil(hi+0.25)
	x := func(v float64) float64 { return p.x0 + (math.Log10(v)-lo)/(hi-lo)*p.width() }
	y := c.yAxis(p, 1, 0.2, "accuracy")
	for d := lo; d <= hi; d++ {
		v := math.Pow(10, d)
		c.line(x(v), p.y1, x(v), p.y1+4, "#444", "")
		c.text(x(v), p.y1+17, "middle", strconv.FormatFloat(v, 'g', -1, 64), "")
	}
	c.text((p.x0+p.x1)/2, p.y1+36, "middle", xLabel+" (log scale)", "")
	names, colors := make([]string, len(ss)), make([]string, len(ss))
	for i, s := range ss {
		names[i], colors[i] = s.Name, s.Color
	}
	c.legend(p.x0, 18, names, colors)
	for _, s := range ss {
		n := len(s.Points)
		if n == 0 {
			continue
		}
		band := func(lo, hi func(berBand) float64, opacity string) {
			xs, ys := make([]float64, 0, 2*n), make([]float64, 0, 2*n)
			for _, b := range s.Points {
				xs, ys = append(xs, x(b.X)), append(ys, y(hi(b)))
			}
			for i := n - 1; i >= 0; i-- {
				xs, ys = append(xs, x(s.Points[i].X)), append(ys, y(lo(s.Points[i])))
			}
			c.polygon(xs, ys, s.Color, ` fill-opacity="`+opacity+`" class="band"`)
		}
		band(func(b berBand) float64 { return b.Lo }, func(b berBand) float64 { return b.Hi }, "0.15")
		band(func(b berBand) float64 { return b.Q1 }, func(b berBand) float64 { return b.Q3 }, "0.3")
		xs, ym, yd := make([]float64, n), make([]float64, n), make([]float64, n)
		for i, b := range s.Points {
			xs[i], ym[i], yd[i] = x(b.X), y(b.Mean), y(b.Median)
		}
		c.polyline(xs, yd, s.Color, ` stroke-dasharray="5 3"`)
		c.polyline(xs, ym, s.Color, ` stroke-width="2"`)
		c.line(p.x0, y(s.Golden), p.x1, y(s.Golden), s.Color, ` stroke-dasharray="1 3"`)
		for _, b := range s.Points {
			tip := fmt.Sprintf("%s at %s: mean %s, median %s, ", s.Name, strconv.FormatFloat(b.X, 'g', -1, 64), pct(b.Mean), pct(b.Median))
			if b.FromTrials {
				tip += fmt.Sprintf("p5 %s, p25 %s, p75 %s, p95 %s of %d trials", pct(b.Lo), pct(b.Q1), pct(b.Q3), pct(b.Hi), b.Trials)
			} else {
				tip += fmt.Sprintf("min %s, max %s of %d trials", pct(b.Lo), pct(b.Hi), b.Trials)
			}
			fmt.Fprintf(&c.b, `<g class="mean">`)
			c.circle(x(b.X), y(b.Mean), 3.5, s.Color, tip)
			c.b.WriteString("</g>\n")
		}
	}
	return c.String()
}

// bitHistogram draws, per bit position (0 to 31, left to right), the SDC rate
// with the DUE rate stacked on top. SDC bars carry class "bar". With active, the
// campaign counts inactive faults: the rates are over the active pairs, and the
// axis and tooltips say so.
func bitHistogram(label string, bits []Breakdown, active bool) string {
	type bit struct {
		pos int
		b   Breakdown
	}
	var bs []bit
	for _, b := range bits {
		if pos, err := strconv.Atoi(b.Key); err == nil {
			bs = append(bs, bit{pos, b})
		}
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].pos < bs[j].pos })
	c := newCanvas(720, 300, label)
	p := plotArea{x0: 64, y0: 34, x1: 704, y1: 250}
	max := 0.0
	for _, b := range bs {
		max = math.Max(max, b.b.SDCRate+b.b.DUERate)
	}
	top, step := linearTicks(max)
	axis := "share of fault x image pairs"
	if active {
		axis = "share of active fault x image pairs"
	}
	y := c.yAxis(p, top, step, axis)
	c.legend(p.x0, 18, []string{"SDC", "DUE"}, []string{colSDC, colDUE})
	bw := p.width() / 32
	for _, b := range bs {
		if b.pos < 0 || b.pos > 31 {
			continue
		}
		bx := p.x0 + float64(b.pos)*bw
		tip := fmt.Sprintf("bit %d: %d faults, %d pairs; SDC %s (%d), DUE %s (%d)", b.pos, b.b.Faults, b.b.Pairs, pct(b.b.SDCRate), b.b.SDC, pct(b.b.DUERate), b.b.DUE)
		if b.b.Inactive != nil {
			tip = fmt.Sprintf("bit %d: %d faults, %d pairs, %d inactive; over the %d active pairs SDC %s (%d), DUE %s (%d)",
				b.pos, b.b.Faults, b.b.Pairs, *b.b.Inactive, b.b.ActivePairs, pct(b.b.SDCRate), b.b.SDC, pct(b.b.DUERate), b.b.DUE)
		}
		c.rect(bx+1, y(b.b.SDCRate), bw-2, p.y1-y(b.b.SDCRate), colSDC, "bar", tip, fmt.Sprintf(`data-bit="%d"`, b.pos))
		if b.b.DUERate > 0 {
			c.rect(bx+1, y(b.b.SDCRate+b.b.DUERate), bw-2, y(b.b.SDCRate)-y(b.b.SDCRate+b.b.DUERate), colDUE, "due", tip)
		}
		if b.pos%4 == 0 || b.pos == 31 {
			c.text(bx+bw/2, p.y1+16, "middle", strconv.Itoa(b.pos), "")
		}
	}
	c.text((p.x0+p.x1)/2, p.y1+36, "middle", "bit position (0 = mantissa LSB, 23-30 exponent, 31 sign)", "")
	return c.String()
}
