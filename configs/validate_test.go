package configs

import (
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		preset string // "" = default
		mutate func(c *Config)
		want   []string // substrings of the error; none = valid
	}{
		{name: "default is valid", mutate: func(c *Config) {}},
		{name: "edge values are valid", mutate: func(c *Config) {
			c.Train.Optimizer, c.Train.Momentum, c.Train.Gamma = OptimizerSGD, 0, 1
			c.Train.Schedule, c.Train.StepSize, c.Train.WarmupEpochs = ScheduleStep, 1, c.Train.Epochs-1
			c.Train.LabelSmoothing, c.Train.WeightDecay, c.Runtime.Threads = 0, 0, 0
			c.Runtime.Device, c.Data.Dataset, c.Data.Augment = DeviceCUDA, DatasetSynthetic, AugmentFlipCrop
		}},

		{name: "arch", mutate: func(c *Config) { c.Model.Arch = "alexnet" },
			want: []string{`model.arch: must be one of mlp, lenet5, vgg11, resnet20, got "alexnet"`}},
		{name: "width zero", mutate: func(c *Config) { c.Model.Width = 0 }, want: []string{"model.width: must be > 0, got 0"}},
		{name: "width NaN", mutate: func(c *Config) { c.Model.Width = math.NaN() },
			want: []string{"model.width: must be a finite number, got NaN"}},
		{name: "mlp without hidden", preset: "mlp-fashion", mutate: func(c *Config) { c.Model.Hidden = nil },
			want: []string{"model.hidden: arch mlp needs at least one hidden layer size"}},
		{name: "hidden size zero", preset: "mlp-fashion", mutate: func(c *Config) { c.Model.Hidden = []int{256, 0} },
			want: []string{"model.hidden[1]: must be >= 1, got 0"}},

		{name: "dataset", mutate: func(c *Config) { c.Data.Dataset = "imagenet" },
			want: []string{`data.dataset: must be one of fashion-mnist, mnist, cifar10, synthetic, got "imagenet"`}},
		{name: "train limit", mutate: func(c *Config) { c.Data.TrainLimit = -1 }, want: []string{"data.train_limit: must be >= 0, got -1"}},
		{name: "test limit", mutate: func(c *Config) { c.Data.TestLimit = -5 }, want: []string{"data.test_limit: must be >= 0, got -5"}},
		{name: "augment", mutate: func(c *Config) { c.Data.Augment = "flip" },
			want: []string{`data.augment: must be one of none, flip-crop, got "flip"`}},

		{name: "epochs", mutate: func(c *Config) { c.Train.Epochs = 0 }, want: []string{"train.epochs: must be >= 1, got 0"}},
		{name: "batch size", mutate: func(c *Config) { c.Train.BatchSize = 0 }, want: []string{"train.batch_size: must be >= 1, got 0"}},
		{name: "eval batch size", mutate: func(c *Config) { c.Train.EvalBatchSize = -1 },
			want: []string{"train.eval_batch_size: must be >= 1, got -1"}},
		{name: "optimizer", mutate: func(c *Config) { c.Train.Optimizer = "rmsprop" },
			want: []string{`train.optimizer: must be one of sgd, adam, got "rmsprop"`}},
		{name: "lr negative", mutate: func(c *Config) { c.Train.LR = -0.1 }, want: []string{"train.lr: must be > 0, got -0.1"}},
		{name: "lr zero", mutate: func(c *Config) { c.Train.LR = 0 }, want: []string{"train.lr: must be > 0, got 0"}},
		{name: "lr infinite", mutate: func(c *Config) { c.Train.LR = math.Inf(1) },
			want: []string{"train.lr: must be a finite number, got +Inf"}},
		{name: "momentum one", mutate: func(c *Config) { c.Train.Momentum = 1 }, want: []string{"train.momentum: must be in [0, 1), got 1"}},
		{name: "momentum negative", mutate: func(c *Config) { c.Train.Momentum = -0.5 },
			want: []string{"train.momentum: must be in [0, 1), got -0.5"}},
		{name: "nesterov with adam", mutate: func(c *Config) { c.Train.Nesterov, c.Train.Momentum = true, 0.9 },
			want: []string{"train.nesterov: needs train.optimizer sgd and train.momentum > 0"}},
		{name: "nesterov without momentum", preset: "vgg11-fashion", mutate: func(c *Config) { c.Train.Momentum = 0 },
			want: []string{`train.nesterov: needs train.optimizer sgd and train.momentum > 0, got optimizer "sgd" and momentum 0`}},
		{name: "weight decay", mutate: func(c *Config) { c.Train.WeightDecay = -1e-4 },
			want: []string{"train.weight_decay: must be >= 0, got -0.0001"}},
		{name: "schedule", mutate: func(c *Config) { c.Train.Schedule = "linear" },
			want: []string{`train.schedule: must be one of none, step, cosine, onecycle, got "linear"`}},
		{name: "step schedule needs step size", mutate: func(c *Config) { c.Train.Schedule, c.Train.StepSize = ScheduleStep, 0 },
			want: []string{"train.step_size: must be >= 1 when train.schedule is step, got 0"}},
		{name: "step size negative", mutate: func(c *Config) { c.Train.StepSize = -2 },
			want: []string{"train.step_size: must be >= 0, got -2"}},
		{name: "gamma zero", mutate: func(c *Config) { c.Train.Gamma = 0 }, want: []string{"train.gamma: must be in (0, 1], got 0"}},
		{name: "gamma above one", mutate: func(c *Config) { c.Train.Gamma = 1.5 }, want: []string{"train.gamma: must be in (0, 1], got 1.5"}},
		{name: "warmup as long as training", mutate: func(c *Config) { c.Train.WarmupEpochs = c.Train.Epochs },
			want: []string{"train.warmup_epochs: must be < train.epochs (8), got 8"}},
		{name: "warmup negative", mutate: func(c *Config) { c.Train.WarmupEpochs = -1 },
			want: []string{"train.warmup_epochs: must be >= 0, got -1"}},
		{name: "label smoothing one", mutate: func(c *Config) { c.Train.LabelSmoothing = 1 },
			want: []string{"train.label_smoothing: must be in [0, 1), got 1"}},
		{name: "label smoothing negative", mutate: func(c *Config) { c.Train.LabelSmoothing = -0.1 },
			want: []string{"train.label_smoothing: must be in [0, 1), got -0.1"}},

		{name: "threads", mutate: func(c *Config) { c.Runtime.Threads = -1 }, want: []string{"runtime.threads: must be >= 0, got -1"}},
		{name: "device", mutate: func(c *Config) { c.Runtime.Device = "tpu" },
			want: []string{`runtime.device: must be one of cpu, cuda, got "tpu"`}},

		{name: "harden vf precision", mutate: func(c *Config) { c.Harden.VFPrecision = 1 },
			want: []string{"harden.vf_precision: 1 is outside [0, 1)"}},
		{name: "harden vf precision NaN", mutate: func(c *Config) { c.Harden.VFPrecision = math.NaN() },
			want: []string{"harden.vf_precision: NaN is outside [0, 1)"}},

		{name: "all problems reported", mutate: func(c *Config) {
			c.Model.Width, c.Data.Dataset, c.Train.LR, c.Train.Epochs, c.Runtime.Device = -1, "x", -0.1, 0, "tpu"
		}, want: []string{"model.width", "data.dataset", "train.lr", "train.epochs", "runtime.device"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			if tt.preset != "" {
				c = mustPreset(t, tt.preset)
			}
			tt.mutate(&c)
			err := c.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
			if n := strings.Count(err.Error(), "\n") + 1; n != len(tt.want) {
				t.Errorf("%d problems reported, want %d:\n%v", n, len(tt.want), err)
			}
		})
	}
}

// TestEverySectionValidates makes sure a new section cannot be added without a
// Validate method (Config.Validate finds sections by reflection).
func TestEverySectionValidates(t *testing.T) {
	ct := reflect.TypeFor[Config]()
	v := reflect.TypeFor[interface{ Validate() error }]()
	for i := range ct.NumField() {
		if f := ct.Field(i); !f.Type.Implements(v) {
			t.Errorf("section %s (%s) has no Validate method", f.Name, f.Type)
		}
	}
}
