package fault

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/faultline/faultline/internal/corpus"
	"github.com/faultline/faultline/internal/testgraph"
	"github.com/faultline/faultline/internal/torch"
	"github.com/sugarme/gotch"
)

// corpusEval reads the first n corpus images (normalised, [N, 1, 28, 28]) and
// their labels.
func corpusEval(t testing.TB, dir string, n int) ([]float32, []int) {
	t.Helper()
	c := &corpus.Corpus{Dir: dir} // no manifest: the default file names
	x, shape, err := c.Images(n)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(shape[1:], []int64{1, 28, 28}) {
		t.Fatalf("images of shape %v, want [N 1 28 28]", shape)
	}
	v, err := c.Labels(int(shape[0]))
	if err != nil {
		t.Fatal(err)
	}
	labels := make([]int, len(v))
	for i, l := range v {
		labels[i] = int(l)
	}
	return x, labels
}

// envInt is the integer value of an environment variable, or def.
func envInt(t testing.TB, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 0 {
		t.Fatalf("%s=%q: want a count", name, s)
	}
	return v
}

// TestBenchImported is `bench fi` on imported corpus models (opt-in:
// FAULTLINE_FI_BENCH=1; the corpus directory is FAULTLINE_ONNX_CORPUS or
// /tmp/onnx-corpus): for weight and activation (output) faults, the first
// FAULTLINE_FI_BENCH_AGREE [5000] faults run in both modes and must agree fault
// by fault, then reference and batched faults/s are measured as Bench does
// (FAULTLINE_FI_BENCH_FAULTS [20000] batched, FAULTLINE_FI_BENCH_REFERENCE
// [500] reference, one image each of FAULTLINE_FI_BENCH_IMAGES [1000], one
// libtorch thread). FAULTLINE_FI_BENCH_MODELS lists corpus files (default the
// opset-13 eval exports of ResNet-18 and MobileNetV2) and
// FAULTLINE_FI_BENCH_TARGETS the targets (weights, activations; default both).
// Weight faults must run
// batched at least 20x faster than reference.
func TestBenchImported(t *testing.T) {
	if os.Getenv("FAULTLINE_FI_BENCH") != "1" {
		t.Skip("FAULTLINE_FI_BENCH=1 not set")
	}
	files := []string{"resnet18-opset13-eval.onnx", "mobilenet_v2-opset13-eval.onnx"}
	if s := os.Getenv("FAULTLINE_FI_BENCH_MODELS"); s != "" {
		files = strings.Split(s, ",")
	}
	o := BenchOptions{Images: envInt(t, "FAULTLINE_FI_BENCH_IMAGES", 1000), Faults: int64(envInt(t, "FAULTLINE_FI_BENCH_FAULTS", 20000)),
		ReferenceFaults: int64(envInt(t, "FAULTLINE_FI_BENCH_REFERENCE", 500)), Agree: int64(envInt(t, "FAULTLINE_FI_BENCH_AGREE", 5000)),
		BatchSize: 1024, Block: 8192, Warmup: 16, GoldenImages: 10000, Seed: 1}
	if s := os.Getenv("FAULTLINE_FI_BENCH_TARGETS"); s != "" { // weights, activations or both
		saved := benchTargets
		defer func() { benchTargets = saved }()
		benchTargets = nil
		for _, tg := range saved {
			if strings.Contains(s, tg.name) {
				benchTargets = append(benchTargets, tg)
			}
		}
	}
	if _, err := torch.SetThreads(1); err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		t.Run(file, func(t *testing.T) {
			path := corpusFile(t, file)
			m := testgraph.FromONNX(t, path)
			xs, labels := corpusEval(t, filepath.Dir(path), o.Images)
			var (
				inj *Injector
				ev  *EvalSet
			)
			do(t, func() error {
				var err error
				if inj, err = NewInjector(m); err != nil {
					return err
				}
				inj.BatchSize = o.BatchSize
				x, err := torch.FromFloat32(xs, []int64{int64(len(labels)), 1, 28, 28}, gotch.CPU)
				if err != nil {
					return err
				}
				ev, err = inj.NewEvalSet(x, labels)
				return err
			})
			defer do(t, func() error { ev.Drop(); return nil })
			o.OnPhase = func(_, target, phase string) { t.Logf("%s %s: %s", file, target, phase) }
			rows, err := BenchModel(context.Background(), o, file, "graph", "corpus", inj, ev)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rows {
				js, _ := json.Marshal(r)
				t.Logf("%s", js)
				t.Logf("%s %s: %d sites, %d stages; agreement %d of %d differ; reference %.1f faults/s, batched %.1f faults/s, speedup %.1fx",
					file, r.Target, len(m.Sites()), m.NumStages(), r.Agreement.Differ, r.Agreement.Faults, r.Reference.FaultsPerSecond, r.Batched.FaultsPerSecond, r.Speedup)
				if r.Agreement.Differ != 0 {
					t.Errorf("%s %s: %d of %d faults differ between reference and batched", file, r.Target, r.Agreement.Differ, r.Agreement.Faults)
				}
				if r.Target == "weights" && r.Speedup < 20 {
					t.Errorf("%s weights: batched only %.1fx the reference", file, r.Speedup)
				}
			}
		})
	}
}
