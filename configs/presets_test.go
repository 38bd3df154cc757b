package configs

import (
	"reflect"
	"strings"
	"testing"
)

func TestPresets(t *testing.T) {
	want := []string{"lenet5-fashion", "mlp-fashion", "resnet20-fashion", "vgg11-fashion"}
	if got := Presets(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Presets() = %v, want %v", got, want)
	}
	tests := []struct {
		name  string
		check func(t *testing.T, c Config)
	}{
		{"lenet5-fashion", func(t *testing.T, c Config) {
			expect(t, "arch", c.Model.Arch, ArchLeNet5)
			expect(t, "optimizer", c.Train.Optimizer, OptimizerAdam)
			expect(t, "lr", c.Train.LR, 2e-3)
			expect(t, "schedule", c.Train.Schedule, ScheduleCosine)
		}},
		{"mlp-fashion", func(t *testing.T, c Config) {
			expect(t, "arch", c.Model.Arch, ArchMLP)
			expect(t, "hidden", c.Model.Hidden, []int{256, 128})
			expect(t, "lr", c.Train.LR, 1e-3)
		}},
		{"resnet20-fashion", func(t *testing.T, c Config) {
			expect(t, "arch", c.Model.Arch, ArchResNet20)
			expect(t, "optimizer", c.Train.Optimizer, OptimizerSGD)
			expect(t, "lr", c.Train.LR, 0.1)
			expect(t, "weight_decay", c.Train.WeightDecay, 5e-4)
		}},
		{"vgg11-fashion", func(t *testing.T, c Config) {
			expect(t, "arch", c.Model.Arch, ArchVGG11)
			expect(t, "width", c.Model.Width, 0.25)
			expect(t, "batch_norm", c.Model.BatchNorm, true)
			expect(t, "nesterov", c.Train.Nesterov, true)
			expect(t, "momentum", c.Train.Momentum, 0.9)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Preset(tt.name)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			expect(t, "dataset", c.Data.Dataset, DatasetFashionMNIST)
			expect(t, "seed", c.Runtime.Seed, int64(1))
			expect(t, "device", c.Runtime.Device, DeviceCPU)
			expect(t, "threads", c.Runtime.Threads, 0)
			tt.check(t, c)

			loaded, err := Load(Source{Preset: tt.name})
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if !reflect.DeepEqual(loaded, c) {
				t.Errorf("Load(preset) = %+v, want %+v", loaded, c)
			}
		})
	}
}

func TestUnknownPreset(t *testing.T) {
	_, err := Preset("alexnet-fashion")
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range append([]string{`"alexnet-fashion"`}, Presets()...) {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	if _, err := Load(Source{Preset: "nope"}); err == nil {
		t.Error("Load with unknown preset: no error")
	}
}

func TestDefault(t *testing.T) {
	want, err := Preset(DefaultPreset)
	if err != nil {
		t.Fatal(err)
	}
	if got := Default(); !reflect.DeepEqual(got, want) {
		t.Errorf("Default() = %+v, want %+v", got, want)
	}
	if got, err := Load(Source{}); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("Load(Source{}) = %+v, %v; want the default", got, err)
	}
}

func expect[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}
