package fault

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/faultline/faultline/internal/testckpt"
	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model"
	"github.com/sugarme/gotch"
)

// TestSoakFaultCampaign runs two 200,000-fault batched campaigns, weight faults and
// then activation faults at layer outputs (100 test images, one per fault, blocks of
// 8,192), on runs/lenet5, or on a small LeNet-5 trained on synthetic data when that
// checkpoint is missing. It checks that the process RSS stays flat after warm-up
// (the first block, which builds the golden prefix and lead-layer caches and the
// output-fault footprints): every tensor created per batch is dropped. It runs only
// with FAULTLINE_SOAK=1 (`make soak`).
func TestSoakFaultCampaign(t *testing.T) {
	if os.Getenv("FAULTLINE_SOAK") == "" {
		t.Skip("soak: runs with FAULTLINE_SOAK=1 (make soak)")
	}
	const (
		faults = 200000
		block  = 8192
		// About 375 batches of 512 samples run after warm-up: leaking each batch's
		// logits ([512, 10] float32) would add 7.5 MiB, leaking one conv1 output
		// ([512, 6, 28, 28], 9.2 MiB) 3.4 GiB; allocator and Go heap noise is a few
		// MiB (the Go heap holds one block's 8,192 faults and their JSON).
		bound = 64 << 20
	)
	ckpt := "../runs/lenet5"
	if _, err := os.Stat(filepath.Join(ckpt, model.MetadataFile)); err != nil {
		t.Logf("%s is missing: training a small LeNet-5 on synthetic data instead", ckpt)
		ckpt = testckpt.Trained(t, 0)
	}
	mib := func(b int64) float64 { return float64(b) / (1 << 20) }
	for _, sp := range []Space{{Target: Weight}, {Target: Activation, Point: Output}} {
		t.Run(string(sp.Target), func(t *testing.T) {
			var rssStart, rssWarm, rssEnd, rssMax int64
			blocks := 0
			start := time.Now()
			o := RunOptions{Checkpoint: ckpt, Device: gotch.CPU, Out: t.TempDir(), Images: 100, ImagesPerFault: 1, Block: block, BatchSize: 512,
				Space: sp, Plan: PlanOptions{Sampler: Uniform, Faults: faults, Seed: 1}}
			o.OnPlan = func(Header) { rssStart = torch.RSSBytes() }
			o.OnProgress = func(done, total int64, fps float64) {
				blocks++
				rss := torch.RSSBytes()
				if blocks == 1 {
					rssWarm = rss
				}
				rssEnd, rssMax = rss, max(rssMax, rss)
				t.Logf("block %2d: %6d/%d faults, %6.0f faults/s, RSS %.1f MiB", blocks, done, total, fps, mib(rss))
			}
			s, err := RunCampaign(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			if s.Faults != faults || s.Pairs != faults {
				t.Errorf("summary: %d faults, %d pairs; want %d each", s.Faults, s.Pairs, faults)
			}
			t.Logf("%s: %d faults in %.1f s (%.0f faults/s injecting), VF %.4f%%", sp.Target, s.Faults, time.Since(start).Seconds(), s.FaultsPerSecond, 100*s.VF)
			t.Logf("RSS at start %.1f MiB, after warm-up (block 1) %.1f MiB, at the end (block %d) %.1f MiB, max %.1f MiB (%+.1f MiB after warm-up); after the summary %.1f MiB",
				mib(rssStart), mib(rssWarm), blocks, mib(rssEnd), mib(rssMax), mib(rssEnd-rssWarm), mib(torch.RSSBytes()))
			if grow := rssEnd - rssWarm; grow > bound {
				t.Errorf("RSS grew by %.1f MiB after warm-up (bound %.0f MiB)", mib(grow), mib(bound))
			}
			if grow := rssMax - rssWarm; grow > bound {
				t.Errorf("RSS peaked %.1f MiB above its post-warm-up value (bound %.0f MiB)", mib(grow), mib(bound))
			}
		})
	}
}
