package train

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// plainForward is a hand-written libtorch forward pass of LeNet-5 or VGG-11 on the
// model's own weights, without faultline's hook machinery: the baseline for the
// hook overhead.
func plainForward(m *model.Model, x *ts.Tensor) (*ts.Tensor, error) {
	p := func(name string) *ts.Tensor { t, _ := m.Param(name); return t }
	var err error
	y := x
	own := false
	next := func(t *ts.Tensor, e error) {
		if own && t != y {
			y.Drop()
		}
		y, err, own = t, e, true
	}
	k2 := []int64{2, 2}
	switch m.Spec().Arch {
	case "lenet5":
		next(ts.Conv2d(y, p("conv1.weight"), p("conv1.bias"), []int64{1, 1}, []int64{2, 2}, []int64{1, 1}, 1))
		next(y.Relu(false))
		next(y.MaxPool2d(k2, k2, []int64{0, 0}, []int64{1, 1}, false, false))
		next(ts.Conv2d(y, p("conv2.weight"), p("conv2.bias"), []int64{1, 1}, []int64{0, 0}, []int64{1, 1}, 1))
		next(y.Relu(false))
		next(y.MaxPool2d(k2, k2, []int64{0, 0}, []int64{1, 1}, false, false))
		next(y.Flatten(1, -1, false))
		for i, l := range []string{"fc1", "fc2", "fc3"} {
			next(ts.Linear(y, p(l+".weight"), p(l+".bias")))
			if i < 2 {
				next(y.Relu(false))
			}
		}
	case "vgg11":
		for _, s := range m.Sites() {
			if s.Kind == model.Linear {
				next(y.AdaptiveAvgPool2d([]int64{1, 1}, false))
				next(y.Flatten(1, -1, false))
				next(ts.Linear(y, p(s.Name+".weight"), p(s.Name+".bias")))
				break
			}
			next(ts.Conv2d(y, p(s.Name+".weight"), p(s.Name+".bias"), []int64{1, 1}, []int64{1, 1}, []int64{1, 1}, 1))
			bn := fmt.Sprintf("features.%d", s.Index*0+bnIndex(s.Name))
			next(ts.BatchNorm(y, p(bn+".weight"), p(bn+".bias"), p(bn+".running_mean"), p(bn+".running_var"), true, 0.1, 1e-5, false))
			next(y.Relu(false))
			if sz, _ := y.Size(); sz[2] > 1 && poolsAfter(m, s) {
				next(y.MaxPool2d(k2, k2, []int64{0, 0}, []int64{1, 1}, false, false))
			}
		}
	default:
		return nil, fmt.Errorf("no plain forward for %s", m.Spec().Arch)
	}
	return y, err
}

// bnIndex is the BatchNorm after conv features.i: features.(i+1).
func bnIndex(conv string) int {
	var i int
	fmt.Sscanf(conv, "features.%d", &i)
	return i + 1
}

// poolsAfter reports whether the model's next layer after site s halves the map.
func poolsAfter(m *model.Model, s model.Site) bool {
	sites := m.Sites()
	if s.Index+1 >= len(sites) {
		return false
	}
	n := sites[s.Index+1]
	return n.Kind == model.Conv && n.InShape[1] < s.OutShape[1]
}

// trainStep runs forward, cross-entropy, backward and an SGD step.
func trainStep(opt *ts.COptimizer, fwd func(*ts.Tensor) (*ts.Tensor, error), x, y *ts.Tensor) error {
	logits, err := fwd(x)
	if err != nil {
		return err
	}
	defer logits.Drop()
	loss, err := logits.CrossEntropyLoss(y, ts.NewTensor(), 1, -100, 0, false)
	if err != nil {
		return err
	}
	defer loss.Drop()
	if err := opt.ZeroGrad(); err != nil {
		return err
	}
	if err := loss.Backward(); err != nil {
		return err
	}
	return opt.Step()
}

// BenchmarkTrainThroughput measures training images/s of faultline's forward pass
// (nil hook, and a no-op hook at every site) against the plain libtorch forward,
// interleaved step by step in one run, and reports the hook overhead (goal < 3%).
func BenchmarkTrainThroughput(b *testing.B) {
	for _, arch := range []string{"lenet5", "vgg11"} {
		b.Run(arch, func(b *testing.B) {
			cfg := tinyConfig(arch)
			spec := SpecFor(cfg.Model, syntheticData(b, 256).Train)
			m, err := model.New(spec, gotch.CPU)
			if err != nil {
				b.Fatal(err)
			}
			batch, steps := 128, 30
			if arch == "vgg11" {
				steps = 10
			}
			noop := func(*model.Site, *ts.Tensor, *ts.Tensor) (*ts.Tensor, error) { return nil, nil }
			variants := []struct {
				name string
				fwd  func(*ts.Tensor) (*ts.Tensor, error)
			}{
				{"plain", func(x *ts.Tensor) (*ts.Tensor, error) { return plainForward(m, x) }},
				{"faultline", func(x *ts.Tensor) (*ts.Tensor, error) { return m.Forward(x, true, nil) }},
				{"noop-hook", func(x *ts.Tensor) (*ts.Tensor, error) { return m.Forward(x, true, noop) }},
			}
			spent := make([]time.Duration, len(variants))
			err = torch.Do(func() error {
				opt, err := newOptimizer(cfg.Train, m)
				if err != nil {
					return err
				}
				defer opt.Drop()
				x, err := ts.Randn([]int64{int64(batch), spec.InChannels, spec.Height, spec.Width}, gotch.Float, gotch.CPU)
				if err != nil {
					return err
				}
				defer x.Drop()
				y, err := ts.Zeros([]int64{int64(batch)}, gotch.Int64, gotch.CPU)
				if err != nil {
					return err
				}
				defer y.Drop()
				for _, v := range variants { // warm-up
					if err := trainStep(opt, v.fwd, x, y); err != nil {
						return fmt.Errorf("%s: %w", v.name, err)
					}
				}
				b.ResetTimer()
				for i := 0; i < b.N*steps; i++ {
					for k, v := range variants {
						t0 := time.Now()
						if err := trainStep(opt, v.fwd, x, y); err != nil {
							return err
						}
						spent[k] += time.Since(t0)
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			imgs := float64(b.N * steps * batch)
			for k, v := range variants {
				b.ReportMetric(imgs/spent[k].Seconds(), v.name+"-img/s")
			}
			b.ReportMetric(100*(spent[1].Seconds()/spent[0].Seconds()-1), "hook-overhead-%")
			b.ReportMetric(100*(spent[2].Seconds()/spent[0].Seconds()-1), "noop-hook-overhead-%")
		})
	}
}

// TestSoakTrainRSS trains LeNet-5 for 400 steps (2,000 with FAULTLINE_SOAK=1, as
// `make soak` runs it) and checks that the process RSS stays flat after warm-up
// (the first 200 steps, two epochs with their evaluations and best-model snapshots):
// every tensor created in the loop is dropped.
func TestSoakTrainRSS(t *testing.T) {
	const warm = 200
	steps := 400
	if os.Getenv("FAULTLINE_SOAK") != "" {
		steps = 2000
	} else if testing.Short() {
		t.Skip("soak")
	}
	cfg := tinyConfig("lenet5")
	cfg.Train.BatchSize = 32
	data := syntheticData(t, 3200) // 100 steps per epoch
	cfg.Train.Epochs = steps / 100
	var rssStart, rssWarm, rssEnd int64
	_, err := Run(context.Background(), Options{Config: cfg, Data: data, Device: gotch.CPU, Hooks: Hooks{OnStep: func(s Step) {
		switch s.GlobalStep {
		case 1:
			rssStart = torch.RSSBytes()
		case warm:
			rssWarm = torch.RSSBytes()
		case int64(steps):
			rssEnd = torch.RSSBytes()
		}
	}}})
	if err != nil {
		t.Fatal(err)
	}
	mib := func(b int64) float64 { return float64(b) / (1 << 20) }
	t.Logf("RSS at step 1 %.1f MiB, after %d warm-up steps %.1f MiB, after %d steps %.1f MiB (%+.1f KiB/step after warm-up)",
		mib(rssStart), warm, mib(rssWarm), steps, mib(rssEnd), float64(rssEnd-rssWarm)/1024/float64(steps-warm))
	// Leaking just the input batch (32x784 float32) would be 98 KiB per step, 172 MiB
	// over 1,800 steps; allocator noise is a few MiB.
	if grow := rssEnd - rssWarm; grow > 16<<20 {
		t.Errorf("RSS grew by %.1f MiB over %d steps", mib(grow), steps-warm)
	}
}
