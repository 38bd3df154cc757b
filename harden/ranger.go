package harden

import (
	"fmt"
	"math"

	"github.com/faultline/faultline/datasets"
	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model"
	"github.com/sugarme/gotch/ts"
)

// Profile returns each conv and linear layer's output range over the first n
// images of set (normalised with stats), widened on each side by margin times
// the range's width. It runs on the torch thread, without gradients.
func Profile(m *model.Model, set *datasets.Set, stats datasets.Stats, n, batch int, margin float64) (model.Clamps, error) {
	if n <= 0 || n > set.Len() {
		n = set.Len()
	}
	if n == 0 {
		return nil, fmt.Errorf("harden: profile: no images")
	}
	if margin < 0 {
		return nil, fmt.Errorf("harden: profile: margin %g below 0", margin)
	}
	head, err := set.Head(n)
	if err != nil {
		return nil, err
	}
	ld, err := datasets.NewLoader(head, datasets.LoaderOptions{BatchSize: max(1, batch), Stats: stats})
	if err != nil {
		return nil, err
	}
	lo, hi := map[string]float64{}, map[string]float64{}
	hook := func(s *model.Site, _, out *ts.Tensor) (*ts.Tensor, error) {
		v, err := torch.Float32s(out)
		if err != nil {
			return nil, err
		}
		a, b := math.Inf(1), math.Inf(-1)
		if x, ok := lo[s.Name]; ok {
			a, b = x, hi[s.Name]
		}
		for _, x := range v {
			f := float64(x)
			if math.IsNaN(f) || math.IsInf(f, 0) {
				return nil, fmt.Errorf("harden: profile: %s output is %g on clean data", s.Name, f)
			}
			a, b = math.Min(a, f), math.Max(b, f)
		}
		lo[s.Name], hi[s.Name] = a, b
		return nil, nil
	}
	err = torch.Do(func() error {
		return torch.NoGrad(func() error {
			it := ld.Epoch(0)
			for bt, ok := it.Next(); ok; bt, ok = it.Next() {
				x, labels, err := bt.Tensors(m.Device())
				if err != nil {
					return err
				}
				_ = labels.Drop()
				y, err := m.Forward(x, false, hook)
				_ = x.Drop()
				if err != nil {
					return err
				}
				_ = y.Drop()
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	c := model.Clamps{}
	for name, a := range lo {
		w := hi[name] - a
		c[name] = model.Bounds{Min: float32(a - margin*w), Max: float32(hi[name] + margin*w)}
	}
	return c, nil
}
