package fault

import (
	"testing"

	"github.com/faultline/faultline/model"
	"github.com/sugarme/gotch"
)

// Which stages' weight faults take the one-channel shortcut (channel.go): the
// probe must find every plain chain of layers channel-local (VGG-11's last conv
// too: its global pooling is in its stage, and the classifier is the next
// stage's lead), and refuse the stages followed by one without a lead layer (a
// residual block) and the last stage.
func TestChannelLocalStages(t *testing.T) {
	cases := []struct {
		spec model.Spec
		want map[string]bool // by lead layer
	}{
		{model.Spec{Arch: "lenet5", InChannels: 1, Height: 28, Width: 28, Classes: 10, WidthMult: 0.5},
			map[string]bool{"conv1": true, "conv2": true, "fc1": true, "fc2": true, "fc3": false}},
		{model.Spec{Arch: "mlp", InChannels: 1, Height: 4, Width: 4, Classes: 3, Hidden: []int{6, 5}, WidthMult: 1},
			map[string]bool{"fc2": true, "fc3": false}},
		{model.Spec{Arch: "vgg11", InChannels: 1, Height: 28, Width: 28, Classes: 10, WidthMult: 0.125, BatchNorm: true},
			map[string]bool{"features.0": true, "features.4": true, "features.8": true, "features.11": true, "features.15": true,
				"features.18": true, "features.22": true, "features.25": true, "classifier": false}},
		// A residual stage has no lead layer: the stem's channels meet in it.
		{model.Spec{Arch: "resnet20", InChannels: 1, Height: 16, Width: 16, Classes: 10, WidthMult: 0.25},
			map[string]bool{"conv1": false}},
	}
	for _, c := range cases {
		t.Run(c.spec.Arch, func(t *testing.T) {
			got := map[string]bool{}
			do(t, func() error {
				m, err := model.New(c.spec, gotch.CPU)
				if err != nil {
					return err
				}
				inj, err := NewInjector(m)
				if err != nil {
					return err
				}
				for st := range m.NumStages() {
					if m.Lead(st) == "" {
						continue
					}
					if got[m.Lead(st)], err = inj.channelLocal(st); err != nil {
						return err
					}
				}
				return nil
			})
			t.Logf("%v", got)
			for name, want := range c.want {
				if g, ok := got[name]; !ok || g != want {
					t.Errorf("%s: channel-local %v (probed: %v), want %v", name, g, ok, want)
				}
			}
		})
	}
}
