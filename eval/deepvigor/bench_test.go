package deepvigor

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/faultline/faultline/fault"
	"github.com/faultline/faultline/internal/torch"
	"github.com/sugarme/gotch"
)

// BenchmarkAnalyze times the complete analysis (both targets, exact semantics,
// tail check on) of LeNet-5's conv2 on 100 test images of runs/lenet5 (skipped
// when that checkpoint is missing) and reports image-forwards per second and
// seconds per target.
func BenchmarkAnalyze(b *testing.B) {
	ckpt := "../../runs/lenet5"
	if _, err := os.Stat(ckpt); err != nil {
		b.Skipf("%s is missing: train it with bin/faultline train --preset lenet5-fashion --out runs/lenet5", ckpt)
	}
	var ld *fault.Loaded
	var ev *fault.EvalSet
	do(b, func() error {
		var err error
		if ld, err = fault.LoadCheckpoint(ckpt, "", "", gotch.CPU); err != nil {
			return err
		}
		_, ev, err = ld.EvalSet(100, 0)
		return err
	})
	defer torch.Do(func() error { ev.Drop(); return nil })
	o := Options{Activations: true, Weights: true, Semantics: Exact, TailCheck: true, SamplingRatio: 1, Layers: []string{"conv2"}}
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		var res *Result
		do(b, func() error {
			var err error
			res, err = Analyze(context.Background(), ld.Model, ev.X, ev.Golden, o)
			return err
		})
		s := time.Since(start).Seconds()
		b.ReportMetric(float64(res.ImageForwards)/s, "image-forwards/s")
		b.ReportMetric(s/float64(16*100+16), "s/target")
	}
}
