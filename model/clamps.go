package model

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"

	"github.com/sugarme/gotch/ts"
)

// ClampsKey is the checkpoint metadata section (Metadata.Extra) holding range
// restriction bounds; Load applies them.
const ClampsKey = "clamps"

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

// Names lists the clamped sites, sorted.
func (c Clamps) Names() []string {
	out := make([]string, 0, len(c))
	for n := range c {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// clampsFromMeta reads the clamps section of checkpoint metadata (nil when
// absent).
func clampsFromMeta(meta Metadata) (Clamps, error) {
	raw, ok := meta.Extra[ClampsKey]
	if !ok {
		return nil, nil
	}
	var c Clamps
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("section %q: %w", ClampsKey, err)
	}
	return c, nil
}

func finite(v float32) bool { return !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0) }
