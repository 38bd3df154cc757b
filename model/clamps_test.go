package model

import (
	"math"
	"strings"
	"testing"

	"github.com/faultline/faultline/internal/torch"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// tightClamps bounds every site's output to [-0.05, 0.05]: tight enough that
// clamping changes every architecture's logits.
func tightClamps(m *Model) Clamps {
	c := Clamps{}
	for _, s := range m.Sites() {
		c[s.Name] = Bounds{Min: -0.05, Max: 0.05}
	}
	return c
}

// The model's clamps equal a hook that clamps every site's output, on the
// whole forward pass and when starting after a lead layer; a hook still sees
// the raw output.
func TestClampsApplyAfterHooksAndAtLeads(t *testing.T) {
	for i, arch := range Architectures() {
		t.Run(arch, func(t *testing.T) {
			spec := fashion(arch)
			torch.ManualSeed(int64(70 + i))
			m := newModel(t, spec)
			x, shape := randomInput(spec, 2, int64(80+i))
			plain := evalLogits(t, m, x, shape)
			c := tightClamps(m)
			manual, _ := forward(t, m, x, shape, func(s *Site, _, out *ts.Tensor) (*ts.Tensor, error) {
				b := c[s.Name]
				return out.Clamp(ts.FloatScalar(float64(b.Min)), ts.FloatScalar(float64(b.Max)), false)
			})
			if err := m.SetClamps(c); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = m.SetClamps(nil) }()
			clamped := evalLogits(t, m, x, shape)
			if !equalFloats(clamped, manual) {
				t.Fatalf("clamped logits %v, hook-clamped %v", clamped[:3], manual[:3])
			}
			if equalFloats(clamped, plain) {
				t.Fatal("clamps changed nothing: the test cannot tell")
			}
			// Starting after a lead layer with its raw (hook-seen) output gives
			// the clamped logits too.
			withInput(t, x, shape, func(in *ts.Tensor) error {
				for k := 0; k < m.NumStages(); k++ {
					lead := m.Lead(k)
					if lead == "" {
						continue
					}
					var raw *ts.Tensor
					hook := func(s *Site, _, out *ts.Tensor) (*ts.Tensor, error) {
						if s.Name == lead {
							var err error
							raw, err = out.DetachCopy(false)
							if err != nil {
								return nil, err
							}
						}
						return nil, nil
					}
					y, err := m.Forward(in, false, hook)
					if err != nil {
						return err
					}
					y.Drop()
					if raw == nil {
						t.Fatalf("lead %s: hook not called", lead)
					}
					out, err := m.RunAfterLead(k, raw, m.NumStages(), false, nil)
					raw.Drop()
					if err != nil {
						return err
					}
					got, err := takeFloats(out)
					if err != nil {
						return err
					}
					if !equalFloats(got, clamped) {
						t.Errorf("after lead %s: logits %v, want %v", lead, got[:3], clamped[:3])
					}
				}
				return nil
			})
		})
	}
}

func TestClampsTravelWithCheckpointsAndAreChecked(t *testing.T) {
	m := newModel(t, fashion("lenet5"))
	for _, c := range []struct {
		clamps Clamps
		want   string
	}{
		{Clamps{"nope": {Min: 0, Max: 1}}, `no layer "nope"`},
		{Clamps{"conv1": {Min: 2, Max: 1}}, "conv1: bounds [2, 1]"},
		{Clamps{"conv1": {Min: 0, Max: float32(math.Inf(1))}}, "not a finite range"},
	} {
		if err := m.SetClamps(c.clamps); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("SetClamps(%v): %v, want %q", c.clamps, err, c.want)
		}
	}
	want := Clamps{"conv1": {Min: -1, Max: 3.5}, "fc2": {Min: 0, Max: 7}}
	if err := m.SetClamps(want); err != nil {
		t.Fatal(err)
	}
	back, meta, dir := roundTrip(t, m, Metadata{Dataset: "synthetic"})
	got := back.Clamps()
	if len(got) != 2 || got["conv1"] != want["conv1"] || got["fc2"] != want["fc2"] {
		t.Errorf("loaded clamps %v, want %v", got, want)
	}
	if _, ok := meta.Extra[ClampsKey]; !ok {
		t.Error("metadata lacks the clamps section")
	}
	// A corrupt section names the metadata file.
	editMetadata(t, dir, func(raw map[string]any) {
		raw["extra"].(map[string]any)[ClampsKey] = map[string]any{"fc9": map[string]any{"min": 0, "max": 1}}
	})
	if _, _, err := Load(dir, gotch.CPU); err == nil || !strings.Contains(err.Error(), MetadataFile) || !strings.Contains(err.Error(), "fc9") {
		t.Errorf("corrupt clamps: %v", err)
	}
}

// Weight clamps act as clamping the stored weights: a weight flipped to 1e38
// reads as the bound; bounds must contain the clean weights; they travel with
// checkpoints.
func TestWeightClamps(t *testing.T) {
	spec := fashion("lenet5")
	torch.ManualSeed(91)
	m := newModel(t, spec)
	x, shape := randomInput(spec, 2, 92)
	var ranges Clamps
	do(t, func() error {
		var err error
		ranges, err = m.WeightRanges()
		return err
	})
	tight := Clamps{"fc1": {Min: ranges["fc1"].Min / 2, Max: ranges["fc1"].Max / 2}}
	if err := m.SetWeightClamps(tight); err == nil || !strings.Contains(err.Error(), "do not contain its weights") {
		t.Fatalf("bounds inside the weights: %v", err)
	}
	if err := m.SetWeightClamps(ranges); err != nil {
		t.Fatal(err)
	}
	clean := evalLogits(t, m, x, shape)
	// Flip fc1.weight[7] to a huge value: with the clamps the model reads the
	// bound, exactly as if the weight were the bound.
	set := func(v float32) {
		do(t, func() error {
			w, err := m.Param("fc1.weight")
			if err != nil {
				return err
			}
			return torch.NoGrad(func() error {
				flat, err := w.View([]int64{-1}, false)
				if err != nil {
					return err
				}
				defer flat.Drop()
				idx, err := torch.FromInt64([]int64{7}, []int64{1}, gotch.CPU)
				if err != nil {
					return err
				}
				defer idx.Drop()
				val, err := torch.FromFloat32([]float32{v}, []int64{1}, gotch.CPU)
				if err != nil {
					return err
				}
				defer val.Drop()
				return flat.Put_(idx, val, false)
			})
		})
	}
	var orig float32
	do(t, func() error {
		w, err := m.Param("fc1.weight")
		if err != nil {
			return err
		}
		v, err := torch.Float32s(w)
		orig = v[7]
		return err
	})
	set(1e38)
	clampedHuge := evalLogits(t, m, x, shape)
	set(ranges["fc1"].Max)
	atBound := evalLogits(t, m, x, shape)
	set(orig)
	if !equalFloats(clampedHuge, atBound) {
		t.Errorf("a 1e38 weight under clamps %v differs from the bound %v", clampedHuge[:3], atBound[:3])
	}
	if !equalFloats(evalLogits(t, m, x, shape), clean) {
		t.Error("restoring the weight did not restore the logits")
	}
	back, _, _ := roundTrip(t, m, Metadata{Dataset: "synthetic"})
	if got := back.WeightClamps(); len(got) != len(ranges) || got["conv2"] != ranges["conv2"] {
		t.Errorf("loaded weight clamps %v, want %v", got, ranges)
	}
}
