package report

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// canvas builds one SVG document. Coordinates are rounded to hundredths, so the
// output is byte-for-byte deterministic.
type canvas struct {
	b    strings.Builder
	w, h float64
}

func newCanvas(w, h float64, label string) *canvas {
	c := &canvas{w: w, h: h}
	fmt.Fprintf(&c.b, `<svg xmlns="http://www.w3.org/2000/svg" width="%s" height="%s" viewBox="0 0 %s %s" role="img" aria-label="%s" font-family="sans-serif" font-size="12">`+"\n",
		num(w), num(h), num(w), num(h), esc(label))
	return c
}

// num formats a coordinate.
func num(x float64) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return "0"
	}
	s := strconv.FormatFloat(math.Round(x*100)/100, 'f', -1, 64)
	if s == "-0" {
		return "0"
	}
	return s
}

var escaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&#39;")

// esc escapes text for XML and HTML.
func esc(s string) string { return escaper.Replace(s) }

// rect draws a rectangle; class and title are optional.
func (c *canvas) rect(x, y, w, h float64, fill, class, title string, attrs ...string) {
	fmt.Fprintf(&c.b, `<rect x="%s" y="%s" width="%s" height="%s" fill="%s"`, num(x), num(y), num(w), num(h), fill)
	if class != "" {
		fmt.Fprintf(&c.b, ` class="%s"`, class)
	}
	for _, a := range attrs {
		c.b.WriteString(" " + a)
	}
	if title == "" {
		c.b.WriteString("/>\n")
		return
	}
	fmt.Fprintf(&c.b, "><title>%s</title></rect>\n", esc(title))
}

func (c *canvas) line(x1, y1, x2, y2 float64, stroke string, extra string) {
	fmt.Fprintf(&c.b, `<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s"%s/>`+"\n", num(x1), num(y1), num(x2), num(y2), stroke, extra)
}

// text writes a label; anchor is start, middle or end.
func (c *canvas) text(x, y float64, anchor, s string, extra string) {
	fmt.Fprintf(&c.b, `<text x="%s" y="%s" text-anchor="%s"%s>%s</text>`+"\n", num(x), num(y), anchor, extra, esc(s))
}

// polyline draws a line through the points.
func (c *canvas) polyline(xs, ys []float64, stroke, extra string) {
	fmt.Fprintf(&c.b, `<polyline fill="none" stroke="%s" points="%s"%s/>`+"\n", stroke, points(xs, ys), extra)
}

// polygon fills the area through the points.
func (c *canvas) polygon(xs, ys []float64, fill, extra string) {
	fmt.Fprintf(&c.b, `<polygon fill="%s" points="%s"%s/>`+"\n", fill, points(xs, ys), extra)
}

func (c *canvas) circle(x, y, r float64, fill, title string) {
	fmt.Fprintf(&c.b, `<circle cx="%s" cy="%s" r="%s" fill="%s"><title>%s</title></circle>`+"\n", num(x), num(y), num(r), fill, esc(title))
}

func points(xs, ys []float64) string {
	parts := make([]string, len(xs))
	for i := range xs {
		parts[i] = num(xs[i]) + "," + num(ys[i])
	}
	return strings.Join(parts, " ")
}

func (c *canvas) String() string { return c.b.String() + "</svg>\n" }

// linearTicks returns a rounded top of the axis at or above max and the tick
// step (about five ticks).
func linearTicks(max float64) (top, step float64) {
	if !(max > 0) || math.IsInf(max, 0) {
		max = 1
	}
	raw := max / 5
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step = 10 * mag
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw*(1-1e-9) {
			step = m * mag
			break
		}
	}
	n := math.Ceil(max/step - 1e-9)
	return n * step, step
}

// pct formats a fraction as a percentage with enough decimals for step.
func pctTick(v, step float64) string {
	d := 0
	if s := step * 100; s < 1 {
		d = int(math.Ceil(-math.Log10(s) - 1e-9))
	}
	if math.Abs(step*100*math.Pow(10, float64(d))-math.Round(step*100*math.Pow(10, float64(d)))) > 1e-6 {
		d++
	}
	return strconv.FormatFloat(v*100, 'f', d, 64) + "%"
}

// pct formats a fraction as a percentage with four significant digits.
func pct(v float64) string {
	return strconv.FormatFloat(v*100, 'g', 4, 64) + "%"
}

// plotArea is the frame of a chart inside its canvas.
type plotArea struct{ x0, y0, x1, y1 float64 }

func (p plotArea) width() float64  { return p.x1 - p.x0 }
func (p plotArea) height() float64 { return p.y1 - p.y0 }

// yAxis draws a linear percent axis from 0 to top with grid lines and returns
// the mapping from a fraction to a y coordinate.
func (c *canvas) yAxis(p plotArea, top, step float64, label string) func(float64) float64 {
	y := func(v float64) float64 { return p.y1 - v/top*p.height() }
	for v := 0.0; v <= top*(1+1e-9); v += step {
		c.line(p.x0, y(v), p.x1, y(v), "#e3e3e3", "")
		c.text(p.x0-6, y(v)+4, "end", pctTick(v, step), "")
	}
	c.line(p.x0, p.y0, p.x0, p.y1, "#444", "")
	c.line(p.x0, p.y1, p.x1, p.y1, "#444", "")
	fmt.Fprintf(&c.b, `<text transform="translate(14 %s) rotate(-90)" text-anchor="middle">%s</text>`+"\n", num((p.y0+p.y1)/2), esc(label))
	return y
}

// legend draws colour keys in a row at the top left of the canvas.
func (c *canvas) legend(x, y float64, names, colors []string) {
	for i, n := range names {
		c.rect(x, y-9, 12, 10, colors[i], "key", "")
		c.text(x+16, y, "start", n, "")
		x += 30 + 7*float64(len(n))
	}
}
