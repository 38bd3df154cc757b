package fault

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// Bench result kind and schema.
const (
	BenchKind   = "faultline.fi_bench"
	BenchSchema = 1
)

// DefaultBenchCheckpoints are the checkpoints Bench measures when none is given
// (those of them that exist).
var DefaultBenchCheckpoints = []string{"runs/lenet5", "runs/vgg11"}

// BenchOptions configure Bench. Zero values take the defaults in brackets.
type BenchOptions struct {
	Checkpoints []string
	DataDir     string
	Device      gotch.Device
	Threads     int // libtorch intra-op threads (0 = number of cores)
	// Images is the evaluation images, the first N of the checkpoint's test split
	// [1000]; fault i runs on image i mod Images alone.
	Images int
	// Faults is the number of uniformly sampled faults timed in batched mode
	// [40000]; ReferenceFaults [500] is the first of them, timed in reference mode.
	Faults, ReferenceFaults int64
	// Agree, when > 0, runs the first Agree faults in both modes before timing and
	// compares their outcomes fault by fault.
	Agree     int64
	BatchSize int   // samples per batched forward pass and images per golden batch [1024]
	Block     int   // faults per RunBatched or RunReference call, as a campaign's block [8192]
	Warmup    int   // faults per layer of the untimed warm-up run [16]
	Seed      int64 // plan seed
	// GoldenImages is the images the golden forward is timed on [10000]; batches of
	// BatchSize cycle through the evaluation images.
	GoldenImages int
	// OnPhase, when set, is called as each phase starts (progress reporting).
	OnPhase func(checkpoint string, target string, phase string)
}

// BenchResult is the output of Bench (`faultline bench fi --json`).
type BenchResult struct {
	Kind            string     `json:"kind"`
	SchemaVersion   int        `json:"schema_version"`
	Images          int        `json:"images"`
	Faults          int64      `json:"faults"`
	ReferenceFaults int64      `json:"reference_faults"`
	Agree           int64      `json:"agree"`
	BatchSize       int        `json:"batch_size"`
	Block           int        `json:"block"`
	Warmup          int        `json:"warmup_faults_per_layer"`
	Threads         int        `json:"threads"`
	Seed            int64      `json:"seed"`
	Device          string     `json:"device"`
	BLAS            string     `json:"blas"`
	Rows            []BenchRow `json:"rows"`
}

// BenchRow is one model and fault target.
type BenchRow struct {
	Checkpoint     string  `json:"checkpoint"`
	Arch           string  `json:"arch"`
	Dataset        string  `json:"dataset"`
	Images         int     `json:"images"` // evaluation images actually used
	GoldenAccuracy float64 `json:"golden_accuracy"`
	Target         string  `json:"target"` // weights or activations (output site)
	Space          Space   `json:"space"`
	Population     int64   `json:"population"` // faults in the space
	Reference      Timed   `json:"reference"`
	Batched        Timed   `json:"batched"`
	// Speedup is Batched.FaultsPerSecond / Reference.FaultsPerSecond.
	Speedup float64 `json:"speedup"`
	Golden  Timed   `json:"golden"` // the plain golden forward: Samples are images
	// SampleOverhead is what a batch carrying one fault per sample costs more than
	// the same-size golden batch, per sample: Batched.SecondsPerSample /
	// Golden.SecondsPerSample - 1 (0.25 = 25% more; negative = cheaper, which prefix
	// reuse and the lead-layer shortcuts make possible since they skip layers).
	SampleOverhead float64    `json:"sample_overhead"`
	Agreement      *Agreement `json:"agreement,omitempty"`
}

// Timed is one timed run. Samples are fault x image pairs (images for Golden).
type Timed struct {
	Faults           int64   `json:"faults,omitempty"`
	Samples          int64   `json:"samples"`
	Seconds          float64 `json:"seconds"`
	FaultsPerSecond  float64 `json:"faults_per_second,omitempty"`
	SecondsPerSample float64 `json:"seconds_per_sample"`
}

// benchTargets are the fault spaces Bench measures.
var benchTargets = []struct {
	name  string
	space Space
}{
	{"weights", Space{Target: Weight}},
	{"activations", Space{Target: Activation, Point: Output}},
}

// BenchCheckpoints returns the checkpoints to measure: the given ones, each of
// which must exist, or else those of DefaultBenchCheckpoints that exist. Errors
// name the missing directory.
func BenchCheckpoints(given []string) ([]string, error) {
	exists := func(dir string) bool {
		_, err := os.Stat(filepath.Join(dir, model.MetadataFile))
		return err == nil
	}
	if len(given) > 0 {
		for _, d := range given {
			if !exists(d) {
				return nil, fmt.Errorf("bench: checkpoint %s not found (no %s); train it with: faultline train --preset lenet5-fashion --out %s", d, filepath.Join(d, model.MetadataFile), d)
			}
		}
		return given, nil
	}
	var out []string
	for _, d := range DefaultBenchCheckpoints {
		if exists(d) {
			out = append(out, d)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("bench: no checkpoint given and none of the defaults %v exists; train one with: faultline train --preset lenet5-fashion --out runs/lenet5", DefaultBenchCheckpoints)
	}
	return out, nil
}

// Bench measures, on each checkpoint and for weight and activation (output) faults,
// the faults/s of the reference mode (Injector.RunReference) and of the batched mode
// (Injector.RunBatched) on the same uniformly sampled fault list, one image per
// fault, and the cost of a batch carrying one fault per sample against the plain
// golden forward of a batch of the same size.
//
// Only injection is timed: loading, the golden run of the evaluation set and fault
// generation are not, and an untimed warm-up (Warmup faults per layer in both modes,
// and one golden pass) builds the one-time caches first (the golden prefix and
// lead-layer outputs of each stage, the output-fault footprints, libtorch's own
// first-call set-up), so the numbers are the steady state of a long campaign.
func Bench(ctx context.Context, o BenchOptions) (*BenchResult, error) {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&o.Images, 1000)
	def(&o.BatchSize, 1024)
	def(&o.Block, 8192)
	def(&o.Warmup, 16)
	def(&o.GoldenImages, 10000)
	if o.Faults == 0 {
		o.Faults = 40000
	}
	if o.ReferenceFaults == 0 {
		o.ReferenceFaults = 500
	}
	if o.Images < 1 || o.Faults < 1 || o.ReferenceFaults < 1 || o.Agree < 0 || o.BatchSize < 1 || o.Block < 1 || o.Warmup < 1 || o.GoldenImages < 1 {
		return nil, fmt.Errorf("bench: images, faults, reference faults, batch, block, warm-up and golden images must be >= 1 (agree >= 0)")
	}
	ckpts, err := BenchCheckpoints(o.Checkpoints)
	if err != nil {
		return nil, err
	}
	threads, err := torch.SetThreads(o.Threads)
	if err != nil {
		return nil, err
	}
	r := &BenchResult{Kind: BenchKind, SchemaVersion: BenchSchema, Images: o.Images, Faults: o.Faults, ReferenceFaults: o.ReferenceFaults,
		Agree: o.Agree, BatchSize: o.BatchSize, Block: o.Block, Warmup: o.Warmup, Threads: threads, Seed: o.Seed,
		Device: deviceName(o.Device), BLAS: torch.BLAS()}
	for _, c := range ckpts {
		rows, err := benchCheckpoint(ctx, o, c)
		if err != nil {
			return nil, fmt.Errorf("bench: %s: %w", c, err)
		}
		r.Rows = append(r.Rows, rows...)
	}
	return r, nil
}

func deviceName(d gotch.Device) string {
	if d.IsCuda() {
		return fmt.Sprintf("cuda:%d", d.Value)
	}
	return "cpu"
}

// benchCheckpoint measures one checkpoint for every target.
func benchCheckpoint(ctx context.Context, o BenchOptions, ckpt string) ([]BenchRow, error) {
	if o.OnPhase != nil {
		o.OnPhase(ckpt, "", "load")
	}
	cd, err := LoadCheckpoint(ckpt, "", o.DataDir, o.Device)
	if err != nil {
		return nil, err
	}
	meta, set := cd.Meta, cd.Set
	images := min(o.Images, set.Len())
	var inj *Injector
	var ev *EvalSet
	err = torch.Do(func() error {
		inj, ev, err = cd.EvalSet(images, o.BatchSize)
		return err
	})
	if err != nil {
		return nil, err
	}
	defer torch.Do(func() error { ev.Drop(); return nil })
	return BenchModel(ctx, o, ckpt, meta.Arch, meta.Dataset, inj, ev)
}

// BenchModel measures the rows of Bench on the injector's model in memory (an
// imported graph, say) and evaluation set ev, labelled ckpt, arch and dataset;
// o's Checkpoints, DataDir, Device and Threads are not used, and zero fields
// of the rest take no defaults (Bench fills them).
func BenchModel(ctx context.Context, o BenchOptions, ckpt, arch, dataset string, inj *Injector, ev *EvalSet) ([]BenchRow, error) {
	phase := func(target, p string) {
		if o.OnPhase != nil {
			o.OnPhase(ckpt, target, p)
		}
	}
	m, images := inj.Model(), ev.Len()
	var rows []BenchRow
	for _, tg := range benchTargets {
		row := BenchRow{Checkpoint: ckpt, Arch: arch, Dataset: dataset, Images: images, GoldenAccuracy: ev.Accuracy(), Target: tg.name}
		plan, err := NewPlan(m, tg.space, PlanOptions{Sampler: Uniform, Faults: max(o.Faults, o.ReferenceFaults, o.Agree), Seed: o.Seed})
		if err != nil {
			return nil, err
		}
		row.Space, row.Population = plan.Space, plan.Population
		faults := func(n int64) []Fault {
			out := make([]Fault, min(n, plan.Total))
			for i := range out {
				out[i] = plan.Fault(int64(i))
				out[i].Images = []int64{int64(i % images), 1}
			}
			return out
		}
		if o.Agree > 0 {
			phase(tg.name, fmt.Sprintf("agreement, %d faults in both modes", o.Agree))
			if row.Agreement, err = agree(ctx, inj, ev, faults(o.Agree), o.Block); err != nil {
				return nil, err
			}
		}
		phase(tg.name, "warm-up")
		warm, err := warmupFaults(m, tg.space, o.Warmup, o.Seed, images)
		if err != nil {
			return nil, err
		}
		if _, err := runTimed(ctx, inj, ev, warm, "batched", o.Block); err != nil {
			return nil, err
		}
		if _, err := runTimed(ctx, inj, ev, warm[:min(len(warm), 8)], "reference", o.Block); err != nil {
			return nil, err
		}
		phase(tg.name, fmt.Sprintf("reference, %d faults", o.ReferenceFaults))
		if row.Reference, err = runTimed(ctx, inj, ev, faults(o.ReferenceFaults), "reference", o.Block); err != nil {
			return nil, err
		}
		phase(tg.name, fmt.Sprintf("batched, %d faults", o.Faults))
		if row.Batched, err = runTimed(ctx, inj, ev, faults(o.Faults), "batched", o.Block); err != nil {
			return nil, err
		}
		phase(tg.name, fmt.Sprintf("golden forward, %d images", o.GoldenImages))
		if row.Golden, err = timeGolden(inj, ev, o.GoldenImages); err != nil {
			return nil, err
		}
		if row.Reference.FaultsPerSecond > 0 {
			row.Speedup = row.Batched.FaultsPerSecond / row.Reference.FaultsPerSecond
		}
		if row.Golden.SecondsPerSample > 0 {
			row.SampleOverhead = row.Batched.SecondsPerSample/row.Golden.SecondsPerSample - 1
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// warmupFaults draws n faults of every layer of the space (so every stage's
// caches get built), each on one image.
func warmupFaults(m *model.Model, sp Space, n int, seed int64, images int) ([]Fault, error) {
	var out []Fault
	for _, name := range m.SiteNames() {
		s := sp
		s.Layers = []string{name}
		p, err := NewPlan(m, s, PlanOptions{Sampler: Uniform, Faults: int64(n), Seed: seed + 0x3a11})
		if err != nil {
			return nil, err
		}
		for i := int64(0); i < p.Total; i++ {
			f := p.Fault(i)
			f.ID = int64(len(out))
			f.Images = []int64{f.ID % int64(images), 1}
			out = append(out, f)
		}
	}
	return out, nil
}

// runTimed runs faults (in place) in blocks in the given mode and times the
// injection calls alone.
func runTimed(ctx context.Context, inj *Injector, ev *EvalSet, faults []Fault, mode string, block int) (Timed, error) {
	var t Timed
	var spent time.Duration
	for lo := 0; lo < len(faults); lo += block {
		if err := ctx.Err(); err != nil {
			return t, err
		}
		hi := min(lo+block, len(faults))
		ptrs := make([]*Fault, 0, hi-lo)
		for i := lo; i < hi; i++ {
			ptrs = append(ptrs, &faults[i])
			_, n := imageRange(&faults[i], ev.Len())
			t.Samples += int64(n)
		}
		t0 := time.Now()
		err := torch.Do(func() error {
			if mode == "reference" {
				return inj.RunReference(ev, ptrs)
			}
			return inj.RunBatched(ev, ptrs)
		})
		spent += time.Since(t0)
		if err != nil {
			return t, fmt.Errorf("%s mode: %w", mode, err)
		}
	}
	t.Faults = int64(len(faults))
	t.Seconds = spent.Seconds()
	if t.Seconds > 0 {
		t.FaultsPerSecond = float64(t.Faults) / t.Seconds
	}
	if t.Samples > 0 {
		t.SecondsPerSample = t.Seconds / float64(t.Samples)
	}
	return t, nil
}

// timeGolden times the plain golden forward pass (model.Forward with no hook, and
// reading the logits to the host as the injector does) on batches of exactly
// inj.BatchSize evaluation images, cycling through them, until n images have run.
// Building the batches and one untimed pass over them are not timed.
func timeGolden(inj *Injector, ev *EvalSet, n int) (Timed, error) {
	var t Timed
	err := torch.Do(func() error {
		return torch.NoGrad(func() error {
			b := inj.BatchSize
			nb := (ev.Len() + b - 1) / b
			var batches []*ts.Tensor
			defer func() {
				for _, x := range batches {
					x.Drop()
				}
			}()
			idx := make([]int64, b)
			for j := 0; j < nb; j++ {
				for k := range idx {
					idx[k] = int64((j*b + k) % ev.Len())
				}
				it, err := torch.FromInt64(idx, []int64{int64(b)}, inj.m.Device())
				if err != nil {
					return err
				}
				x, err := ev.X.IndexSelect(0, it, false)
				it.Drop()
				if err != nil {
					return err
				}
				batches = append(batches, x)
			}
			forward := func(x *ts.Tensor) error {
				y, err := inj.m.Forward(x, false, nil)
				if err != nil {
					return err
				}
				defer y.Drop()
				_, err = torch.Float32s(y)
				return err
			}
			for _, x := range batches { // warm-up
				if err := forward(x); err != nil {
					return err
				}
			}
			t0 := time.Now()
			for j := 0; t.Samples < int64(n); j++ {
				if err := forward(batches[j%nb]); err != nil {
					return err
				}
				t.Samples += int64(b)
			}
			t.Seconds = time.Since(t0).Seconds()
			return nil
		})
	})
	if err != nil {
		return t, fmt.Errorf("golden forward: %w", err)
	}
	t.SecondsPerSample = t.Seconds / float64(t.Samples)
	return t, nil
}
