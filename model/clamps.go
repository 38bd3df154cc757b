package model

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/faultline/faultline/internal/torch"
	"github.com/sugarme/gotch/ts"
)

// ClampsKey is the checkpoint metadata section (Metadata.Extra) holding range
// restriction bounds of layer outputs; WeightClampsKey holds those of layer
// weights. Load applies both.
const (
	ClampsKey       = "clamps"
	WeightClampsKey = "weight_clamps"
)

// Bounds is the range a site's output is restricted to.
type Bounds struct {
	Min float32 `json:"min"`
	Max float32 `json:"max"`
}

// Clamps maps site names to the bounds of their outputs (range restriction,
// Ranger-style: a value outside the range, such as a bit flip's 1e38, is
// clamped to it before the next layer reads it).
type Clamps map[string]Bounds

// clamp is a site's bounds as torch scalars, made once: gotch cannot free
// scalars, so making them per forward pass would leak.
type clamp struct {
	b        Bounds
	min, max *ts.Scalar
}

// SetClamps restricts the outputs of the given sites to their bounds in every
// forward pass from now on (nil or empty: none). Hooks see a site's raw output;
// what they return is clamped.
func (m *Model) SetClamps(c Clamps) error {
	next := map[string]clamp{}
	for name, b := range c {
		if _, err := m.Site(name); err != nil {
			return fmt.Errorf("model: clamps: %w", err)
		}
		if !finite(b.Min) || !finite(b.Max) || b.Min > b.Max {
			return fmt.Errorf("model: clamps: %s: bounds [%g, %g] are not a finite range", name, b.Min, b.Max)
		}
		next[name] = clamp{b: b, min: ts.FloatScalar(float64(b.Min)), max: ts.FloatScalar(float64(b.Max))}
	}
	m.clamps = next
	return nil
}

// Clamps returns a copy of the model's clamps (nil when it has none).
func (m *Model) Clamps() Clamps {
	if len(m.clamps) == 0 {
		return nil
	}
	out := Clamps{}
	for name, c := range m.clamps {
		out[name] = c.b
	}
	return out
}

// clampOutput clamps site's output (consuming out) when the site has bounds.
func (m *Model) clampOutput(site string, out *ts.Tensor) (*ts.Tensor, error) {
	c, ok := m.clamps[site]
	if !ok {
		return out, nil
	}
	y, err := out.Clamp(c.min, c.max, false)
	_ = out.Drop()
	if err != nil {
		return nil, fmt.Errorf("clamp %s: %w", site, err)
	}
	return y, nil
}

// SetWeightClamps restricts the weights of the given sites to their bounds as
// every forward pass reads them (nil or empty: none): a flipped exponent bit
// that makes a weight 1e38 acts as the bound instead. The bounds must contain
// the layer's current weights, so the clean model is unchanged.
func (m *Model) SetWeightClamps(c Clamps) error {
	next := map[string]clamp{}
	for name, b := range c {
		s, err := m.Site(name)
		if err != nil {
			return fmt.Errorf("model: weight clamps: %w", err)
		}
		if !finite(b.Min) || !finite(b.Max) || b.Min > b.Max {
			return fmt.Errorf("model: weight clamps: %s: bounds [%g, %g] are not a finite range", name, b.Min, b.Max)
		}
		w, err := m.Param(s.Weight())
		if err != nil {
			return err
		}
		lo, hi, err := minMax(w)
		if err != nil {
			return fmt.Errorf("model: weight clamps: %s: %w", name, err)
		}
		if lo < b.Min || hi > b.Max {
			return fmt.Errorf("model: weight clamps: %s: bounds [%g, %g] do not contain its weights [%g, %g]", name, b.Min, b.Max, lo, hi)
		}
		next[name] = clamp{b: b, min: ts.FloatScalar(float64(b.Min)), max: ts.FloatScalar(float64(b.Max))}
	}
	m.wclamp = next
	return nil
}

// WeightClamps returns a copy of the model's weight clamps (nil when none).
func (m *Model) WeightClamps() Clamps {
	if len(m.wclamp) == 0 {
		return nil
	}
	out := Clamps{}
	for name, c := range m.wclamp {
		out[name] = c.b
	}
	return out
}

// weightFor returns the weight a forward pass uses for site: w itself, or a
// clamped copy (done drops it).
func (m *Model) weightFor(site string, w *ts.Tensor) (*ts.Tensor, func(), error) {
	c, ok := m.wclamp[site]
	if !ok {
		return w, func() {}, nil
	}
	y, err := w.Clamp(c.min, c.max, false)
	if err != nil {
		return nil, nil, fmt.Errorf("clamp weights: %w", err)
	}
	return y, func() { _ = y.Drop() }, nil
}

// WeightRanges returns each conv and linear layer's weight range: the
// tightest weight clamps (call on the torch thread).
func (m *Model) WeightRanges() (Clamps, error) {
	c := Clamps{}
	for _, s := range m.sites {
		w, err := m.Param(s.Weight())
		if err != nil {
			return nil, err
		}
		lo, hi, err := minMax(w)
		if err != nil {
			return nil, fmt.Errorf("model: %s: %w", s.Name, err)
		}
		c[s.Name] = Bounds{Min: lo, Max: hi}
	}
	return c, nil
}

// minMax returns a tensor's smallest and largest values.
func minMax(t *ts.Tensor) (float32, float32, error) {
	v, err := torch.Float32s(t)
	if err != nil {
		return 0, 0, err
	}
	lo, hi := float32(math.Inf(1)), float32(math.Inf(-1))
	for _, x := range v {
		lo, hi = min(lo, x), max(hi, x)
	}
	return lo, hi, nil
}

// clampsFromMeta reads a clamps section of checkpoint metadata (nil when
// absent).
func clampsFromMeta(meta Metadata, key string) (Clamps, error) {
	raw, ok := meta.Extra[key]
	if !ok {
		return nil, nil
	}
	var c Clamps
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("section %q: %w", key, err)
	}
	return c, nil
}

func finite(v float32) bool { return !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0) }
