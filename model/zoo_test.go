package model

import (
	"reflect"
	"testing"

	"github.com/faultline/faultline/internal/torch"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

func fashion(arch string) Spec {
	s := Spec{Arch: arch, InChannels: 1, Height: 28, Width: 28, Classes: 10, WidthMult: 1}
	switch arch {
	case "mlp":
		s.Hidden = []int{32, 16}
	case "vgg11":
		s.WidthMult, s.BatchNorm = 0.25, true
	case "resnet20":
		s.WidthMult = 0.5
	}
	return s
}

func TestZooSitesAndShapes(t *testing.T) {
	cases := []struct {
		spec   Spec
		sites  []string
		params int64
	}{
		{fashion("mlp"), []string{"fc1", "fc2", "fc3"}, 784*32 + 32 + 32*16 + 16 + 16*10 + 10},
		{fashion("lenet5"), []string{"conv1", "conv2", "fc1", "fc2", "fc3"}, 61706},
		{fashion("vgg11"), []string{"features.0", "features.4", "features.8", "features.11", "features.15", "features.18", "features.22", "features.25", "classifier"}, -1},
		{Spec{Arch: "vgg11", InChannels: 3, Height: 32, Width: 32, Classes: 10, WidthMult: 0.25}, []string{"features.0", "features.3", "features.6", "features.8", "features.11", "features.13", "features.16", "features.18", "classifier"}, -1},
		{fashion("resnet20"), nil, -1},
	}
	for _, tc := range cases {
		t.Run(tc.spec.Arch, func(t *testing.T) {
			m, err := New(tc.spec, gotch.CPU)
			if err != nil {
				t.Fatal(err)
			}
			if tc.sites != nil && !reflect.DeepEqual(m.SiteNames(), tc.sites) {
				t.Errorf("sites = %v, want %v", m.SiteNames(), tc.sites)
			}
			if tc.params > 0 && m.NumParams() != tc.params {
				t.Errorf("params = %d, want %d", m.NumParams(), tc.params)
			}
			var calls []string
			do(t, func() error {
				x, err := ts.Randn([]int64{3, tc.spec.InChannels, tc.spec.Height, tc.spec.Width}, gotch.Float, gotch.CPU)
				if err != nil {
					return err
				}
				defer x.Drop()
				out, err := m.Forward(x, false, func(s *Site, in, out *ts.Tensor) (*ts.Tensor, error) {
					calls = append(calls, s.Name)
					is, _ := in.Size()
					os, _ := out.Size()
					if !reflect.DeepEqual(is[1:], s.InShape) || !reflect.DeepEqual(os[1:], s.OutShape) || is[0] != 3 {
						t.Errorf("%s: in %v out %v, site says %v -> %v", s.Name, is, os, s.InShape, s.OutShape)
					}
					return nil, nil
				})
				if err != nil {
					return err
				}
				defer out.Drop()
				if sz, _ := out.Size(); !reflect.DeepEqual(sz, []int64{3, 10}) {
					t.Errorf("logits shape %v", sz)
				}
				return nil
			})
			if !reflect.DeepEqual(calls, m.SiteNames()) {
				t.Errorf("hook calls %v, want %v", calls, m.SiteNames())
			}
		})
	}
}

func TestResNet20Names(t *testing.T) {
	m := newModel(t, fashion("resnet20"))
	names := m.SiteNames()
	if len(names) != 22 { // conv1 + 9 blocks x 2 + 2 shortcuts + fc
		t.Errorf("%d sites: %v", len(names), names)
	}
	for _, want := range []string{"conv1", "layer1.0.conv1", "layer2.0.shortcut.0", "layer3.2.conv2", "fc"} {
		if _, err := m.Site(want); err != nil {
			t.Error(err)
		}
	}
	for _, p := range []string{"bn1.running_mean", "layer3.0.shortcut.1.running_var", "layer1.2.bn2.weight"} {
		if _, err := m.Param(p); err != nil {
			t.Error(err)
		}
	}
	if _, err := m.Site("layer9"); err == nil {
		t.Error("unknown site accepted")
	}
}

// A hook's replacement output is what the rest of the network sees.
func TestHookReplacementPropagates(t *testing.T) {
	m := newModel(t, fashion("lenet5"))
	do(t, func() error {
		x, err := ts.Randn([]int64{2, 1, 28, 28}, gotch.Float, gotch.CPU)
		if err != nil {
			return err
		}
		defer x.Drop()
		golden, err := m.Forward(x, false, nil)
		if err != nil {
			return err
		}
		defer golden.Drop()
		zero := func(s *Site, in, out *ts.Tensor) (*ts.Tensor, error) {
			if s.Name != "fc3" {
				return nil, nil
			}
			return out.ZerosLike(false)
		}
		faulty, err := m.Forward(x, false, zero)
		if err != nil {
			return err
		}
		defer faulty.Drop()
		g, _ := torch.Float32s(golden)
		f, _ := torch.Float32s(faulty)
		for i := range f {
			if f[i] != 0 {
				t.Fatalf("replacement ignored: logit %d = %v", i, f[i])
			}
		}
		if g[0] == 0 {
			t.Error("golden logits are zero")
		}
		return nil
	})
}

// gotch's nn.BatchNorm.Forward always ran in training mode; ours follows the pass.
func TestBatchNormEvalKeepsRunningStats(t *testing.T) {
	m := newModel(t, fashion("vgg11"))
	do(t, func() error {
		mean, err := m.Param("features.1.running_mean")
		if err != nil {
			return err
		}
		before, _ := torch.Float32s(mean)
		x, err := ts.Randn([]int64{4, 1, 28, 28}, gotch.Float, gotch.CPU)
		if err != nil {
			return err
		}
		defer x.Drop()
		out, err := m.Forward(x, false, nil)
		if err != nil {
			return err
		}
		out.Drop()
		after, _ := torch.Float32s(mean)
		if !reflect.DeepEqual(before, after) {
			t.Error("eval forward changed BatchNorm running mean")
		}
		if err := torch.NoGrad(func() error {
			out, err := m.Forward(x, true, nil)
			if err == nil {
				out.Drop()
			}
			return err
		}); err != nil {
			return err
		}
		trained, _ := torch.Float32s(mean)
		if reflect.DeepEqual(before, trained) {
			t.Error("training forward did not update BatchNorm running mean")
		}
		return nil
	})
}

func TestSpecValidation(t *testing.T) {
	for _, s := range []Spec{
		{Arch: "alexnet", InChannels: 1, Height: 28, Width: 28, Classes: 10, WidthMult: 1},
		{Arch: "lenet5", InChannels: 0, Height: 28, Width: 28, Classes: 10, WidthMult: 1},
		{Arch: "lenet5", InChannels: 1, Height: 4, Width: 4, Classes: 10, WidthMult: 1},
		{Arch: "mlp", InChannels: 1, Height: 28, Width: 28, Classes: 10, WidthMult: 1},
		{Arch: "vgg11", InChannels: 1, Height: 28, Width: 28, Classes: 1, WidthMult: 1},
		{Arch: "vgg11", InChannels: 1, Height: 28, Width: 28, Classes: 10, WidthMult: 0},
	} {
		if _, err := New(s, gotch.CPU); err == nil {
			t.Errorf("spec %+v accepted", s)
		}
	}
}

func TestForwardOffTorchThread(t *testing.T) {
	m := newModel(t, fashion("mlp"))
	if _, err := m.Forward(nil, false, nil); err == nil {
		t.Error("Forward outside torch.Do accepted")
	}
}
