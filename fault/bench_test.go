package fault

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/faultline/faultline/internal/testckpt"
	"github.com/faultline/faultline/model"
	"github.com/sugarme/gotch"
)

// benchCheckpoints are the checkpoints BenchmarkFI measures: ../runs/lenet5 (the
// repository's runs/lenet5 seen from this package), or the comma-separated list in
// FAULTLINE_BENCH_CHECKPOINTS.
func benchCheckpoints() []string {
	if env := os.Getenv("FAULTLINE_BENCH_CHECKPOINTS"); env != "" {
		return strings.Split(env, ",")
	}
	return []string{"../runs/lenet5"}
}

// BenchmarkFI runs Bench (what `faultline bench fi` runs) with its defaults: 1000
// test images, one per fault, 40,000 batched and 500 reference faults of the same
// list, for weights and activations, and reports faults/s per mode, the batched /
// reference ratio and the one-fault-per-sample overhead against the golden batch.
func BenchmarkFI(b *testing.B) {
	ckpts := benchCheckpoints()
	for _, c := range ckpts {
		if _, err := os.Stat(filepath.Join(c, model.MetadataFile)); err != nil {
			b.Skipf("checkpoint %s is missing; train it with: bin/faultline train --preset lenet5-fashion --out runs/lenet5", c)
		}
	}
	for _, c := range ckpts {
		b.Run(filepath.Base(c), func(b *testing.B) {
			sum := map[string]*BenchRow{}
			var order []string
			for i := 0; i < b.N; i++ {
				r, err := Bench(context.Background(), BenchOptions{Checkpoints: []string{c}, Device: gotch.CPU, Seed: 1})
				if err != nil {
					b.Fatal(err)
				}
				for _, row := range r.Rows {
					s := sum[row.Target]
					if s == nil {
						s = &BenchRow{}
						sum[row.Target] = s
						order = append(order, row.Target)
					}
					s.Reference.FaultsPerSecond += row.Reference.FaultsPerSecond / float64(b.N)
					s.Batched.FaultsPerSecond += row.Batched.FaultsPerSecond / float64(b.N)
					s.Speedup += row.Speedup / float64(b.N)
					s.SampleOverhead += row.SampleOverhead / float64(b.N)
				}
			}
			for _, t := range order {
				s := sum[t]
				b.ReportMetric(s.Reference.FaultsPerSecond, t+"-reference-faults/s")
				b.ReportMetric(s.Batched.FaultsPerSecond, t+"-batched-faults/s")
				b.ReportMetric(s.Speedup, t+"-batched/reference")
				b.ReportMetric(100*s.SampleOverhead, t+"-sample-overhead-%")
			}
		})
	}
}

// TestBenchCheckpoints checks the choice of checkpoints and that errors name the
// missing directory.
func TestBenchCheckpoints(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	os.MkdirAll(good, 0o755)
	os.WriteFile(filepath.Join(good, model.MetadataFile), []byte("{}"), 0o644)
	missing := filepath.Join(dir, "missing")
	if got, err := BenchCheckpoints([]string{good}); err != nil || len(got) != 1 || got[0] != good {
		t.Errorf("existing checkpoint: %v, %v", got, err)
	}
	if _, err := BenchCheckpoints([]string{good, missing}); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing checkpoint: error %v does not name %s", err, missing)
	}
	old := DefaultBenchCheckpoints
	defer func() { DefaultBenchCheckpoints = old }()
	DefaultBenchCheckpoints = []string{missing, good}
	if got, err := BenchCheckpoints(nil); err != nil || len(got) != 1 || got[0] != good {
		t.Errorf("defaults: %v, %v (want only the existing one)", got, err)
	}
	DefaultBenchCheckpoints = []string{missing}
	if _, err := BenchCheckpoints(nil); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("no default exists: error %v does not name %s", err, missing)
	}
}

// TestBenchSmall runs Bench at a tiny size on an untrained LeNet-5 saved for
// synthetic data, and checks the result's bookkeeping.
func TestBenchSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("loads a model")
	}
	ckpt := testckpt.Untrained(t)
	var phases []string
	r, err := Bench(context.Background(), BenchOptions{Checkpoints: []string{ckpt}, Device: gotch.CPU, Threads: 1, Images: 20, Faults: 150,
		ReferenceFaults: 30, Agree: 40, BatchSize: 64, Block: 64, Warmup: 2, GoldenImages: 128, Seed: 3,
		OnPhase: func(_, target, phase string) { phases = append(phases, target+" "+phase) }})
	if err != nil {
		t.Fatal(err)
	}
	if r.Kind != BenchKind || len(r.Rows) != 2 || r.Rows[0].Target != "weights" || r.Rows[1].Target != "activations" {
		t.Fatalf("result %+v", r)
	}
	for _, row := range r.Rows {
		if row.Reference.Faults != 30 || row.Batched.Faults != 150 || row.Batched.Samples != 150 || row.Golden.Samples < 128 || row.Golden.Samples%64 != 0 {
			t.Errorf("%s: counts reference %+v batched %+v golden %+v", row.Target, row.Reference, row.Batched, row.Golden)
		}
		if row.Speedup <= 0 || row.Golden.SecondsPerSample <= 0 || row.Batched.SecondsPerSample <= 0 {
			t.Errorf("%s: timings %+v", row.Target, row)
		}
		want := row.Batched.SecondsPerSample/row.Golden.SecondsPerSample - 1
		if row.SampleOverhead != want {
			t.Errorf("%s: overhead %v, want %v", row.Target, row.SampleOverhead, want)
		}
		if a := row.Agreement; a == nil || a.Faults != 40 || a.Differ > a.Faults || int64(len(a.Examples)) > min(a.Differ, 5) {
			t.Errorf("%s: agreement %+v", row.Target, a)
		}
	}
	if len(phases) == 0 || !strings.Contains(strings.Join(phases, "\n"), "warm-up") {
		t.Errorf("phases %q", phases)
	}
}
