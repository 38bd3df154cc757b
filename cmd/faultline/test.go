package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"gorgonia.org/tensor"

	"github.com/faultline/faultline/datasets"
	"github.com/faultline/faultline/internal/atomicfile"
	"github.com/faultline/faultline/internal/npz"
	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model"
	"github.com/faultline/faultline/train"
	"github.com/spf13/cobra"
)

// testResult is what `faultline test --json` prints.
type testResult struct {
	Accuracy   float64 `json:"accuracy"`
	Correct    int64   `json:"correct"`
	Images     int     `json:"images"`
	Dataset    string  `json:"dataset"`
	Split      string  `json:"split"`
	Checkpoint string  `json:"checkpoint"`
	Arch       string  `json:"arch"`
	// Compare is the agreement with another runtime's logits
	// (--compare-logits).
	Compare *compareResult `json:"compare,omitempty"`
}

// compareResult is test --compare-logits' report.
type compareResult struct {
	File string `json:"file"`
	train.LogitsAgreement
}

func (a *app) testCommand() *cobra.Command {
	var (
		ckpt, dataset, dir, split, device string
		saveLogits, saveInputs, compare   string
		limit, batch, threads             int
		asJSON                            bool
	)
	cmd := &cobra.Command{
		Use:   "test --checkpoint DIR",
		Short: "Measure a checkpoint's accuracy on a data set",
		Example: `  faultline test --checkpoint runs/lenet5
  faultline test --checkpoint runs/lenet5 --json --limit 1000
  faultline test --checkpoint runs/lenet5 --limit 100 --save-logits logits.npy
  faultline test --checkpoint runs/lenet5 --save-inputs inputs.npy
  node scripts/ort-run.js --model runs/lenet5/model.onnx --input inputs.npy --out ort.npy
  faultline test --checkpoint runs/lenet5 --compare-logits ort.npy`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ckpt == "" {
				return fmt.Errorf("test: --checkpoint DIR is required")
			}
			sp, err := datasets.ParseSplit(split)
			if err != nil {
				return err
			}
			if limit < 0 {
				return fmt.Errorf("test: --limit %d: want a number of images, or 0 for all", limit)
			}
			for _, o := range []struct{ flag, file string }{{"--save-logits", saveLogits}, {"--save-inputs", saveInputs}} {
				if o.file == "" {
					continue
				}
				if err := checkOutputFile(o.file); err != nil {
					return fmt.Errorf("test: %s: %w", o.flag, err)
				}
			}
			var theirs []float32
			if compare != "" {
				var err error
				if theirs, err = readLogits(compare); err != nil {
					return fmt.Errorf("test: --compare-logits: %w", err)
				}
			}
			if _, err := torch.SetThreads(threads); err != nil {
				return err
			}
			dev, err := torch.ParseDevice(device)
			if err != nil {
				return err
			}
			m, meta, err := model.Load(ckpt, dev)
			if err != nil {
				return err
			}
			if dataset == "" {
				dataset = meta.Dataset
			}
			set, err := datasets.Load(dataset, dir, sp)
			if err != nil {
				return err
			}
			if limit > 0 {
				if set, err = set.Head(min(limit, set.Len())); err != nil {
					return err
				}
			}
			stats := datasets.Stats{Mean: meta.Normalization.Mean, Std: meta.Normalization.Std}
			if err := checkNormalization(stats, set.C); err != nil {
				return fmt.Errorf("test: %s: normalization: %w", ckpt, err)
			}
			start := time.Now()
			var acc float64
			var logits []float32
			var classes int
			if saveLogits == "" && compare == "" {
				acc, err = train.Evaluate(m, set, stats, batch, dev, nil)
			} else {
				acc, logits, classes, err = train.EvaluateLogits(m, set, stats, batch, dev)
			}
			if err != nil {
				return err
			}
			if saveLogits != "" {
				if err := writeLogits(saveLogits, logits, set.Len(), classes); err != nil {
					return fmt.Errorf("test: --save-logits: %w", err)
				}
			}
			if saveInputs != "" {
				if err := writeInputs(saveInputs, set, stats); err != nil {
					return fmt.Errorf("test: --save-inputs: %w", err)
				}
			}
			r := testResult{Accuracy: acc, Correct: int64(acc*float64(set.Len()) + 0.5), Images: set.Len(), Dataset: dataset,
				Split: string(sp), Checkpoint: ckpt, Arch: meta.Arch}
			if compare != "" {
				ag, err := train.LogitsAgree(logits, theirs, classes, set.Labels)
				if err != nil {
					return fmt.Errorf("test: --compare-logits %s: %w", compare, err)
				}
				r.Compare = &compareResult{File: compare, LogitsAgreement: ag}
			}
			if asJSON {
				return json.NewEncoder(a.stdout).Encode(r)
			}
			fmt.Fprintf(a.stdout, "accuracy %.2f%% (%d/%d) of %s on %s %s (%.1f s)\n", 100*acc, r.Correct, r.Images, meta.Arch, dataset, sp, time.Since(start).Seconds())
			if saveLogits != "" {
				fmt.Fprintf(a.stdout, "wrote %s: float32 logits [%d, %d]\n", saveLogits, set.Len(), classes)
			}
			if saveInputs != "" {
				fmt.Fprintf(a.stdout, "wrote %s: float32 inputs [%d, %d, %d, %d], normalised as the model reads them\n", saveInputs, set.Len(), set.C, set.H, set.W)
			}
			if c := r.Compare; c != nil {
				fmt.Fprintf(a.stdout, "%s: same top-1 on %d/%d images (%.2f%%), accuracy %.2f%% (%+.2f pp), max |logit difference| %.3g (max |logit| %.3g)\n",
					compare, c.SameTop1, c.Images, 100*c.SameTop1Fraction, 100*c.Accuracy, 100*c.AccuracyDiff, c.MaxAbsDiff, c.MaxAbsLogit)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&ckpt, "checkpoint", "", "checkpoint directory (required)")
	addDataFlags(f, &dataset, &dir)
	f.StringVar(&split, "split", "test", "train or test")
	f.IntVar(&limit, "limit", 0, "use only the first N images (0 = all)")
	f.IntVar(&batch, "batch-size", 1000, "evaluation batch size")
	addRuntimeFlags(f, &threads, &device)
	f.BoolVar(&asJSON, "json", false, `print {"accuracy": ...} as JSON on stdout`)
	f.StringVar(&saveLogits, "save-logits", "", "write the logits of the evaluated images (the first --limit N) to FILE.npy: float32 [N, classes], in split order")
	f.StringVar(&saveInputs, "save-inputs", "", "write the evaluated images as the model reads them (normalised) to FILE.npy: float32 [N, C, H, W], in split order, for another runtime")
	f.StringVar(&compare, "compare-logits", "", "compare another runtime's logits for the same images (FILE.npy, float32 [N, classes]): same top-1, its accuracy, largest difference")
	return cmd
}

// checkOutputFile checks, before any work, that a file can be written at path:
// not a directory, in a directory that exists (or can be made) and is writable.
func checkOutputFile(path string) error {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("%s is a directory", path)
	}
	return atomicfile.CheckDir(filepath.Dir(path))
}

// writeLogits writes n x classes logits (row-major) to path as a float32 .npy
// array of shape [n, classes], atomically.
func writeLogits(path string, logits []float32, n, classes int) error {
	if len(logits) != n*classes {
		return fmt.Errorf("%d logits for %d images of %d classes", len(logits), n, classes)
	}
	t := tensor.New(tensor.WithShape(n, classes), tensor.WithBacking(logits))
	return atomicfile.Write(path, 0o644, func(w io.Writer) error { return npz.WriteNpy(w, t) })
}

// writeInputs writes set's images, normalised with stats as the model reads
// them, to path as float32 [N, C, H, W].
func writeInputs(path string, set *datasets.Set, stats datasets.Stats) error {
	loader, err := datasets.NewLoader(set, datasets.LoaderOptions{BatchSize: 1000, Stats: stats})
	if err != nil {
		return err
	}
	x := make([]float32, 0, set.Len()*set.C*set.H*set.W)
	it := loader.Epoch(0)
	for {
		b, ok := it.Next()
		if !ok {
			break
		}
		x = append(x, b.X...)
	}
	if len(x) != set.Len()*set.C*set.H*set.W {
		return fmt.Errorf("%d values for %d images of %dx%dx%d", len(x), set.Len(), set.C, set.H, set.W)
	}
	t := tensor.New(tensor.WithShape(set.Len(), set.C, set.H, set.W), tensor.WithBacking(x))
	return atomicfile.Write(path, 0o644, func(w io.Writer) error { return npz.WriteNpy(w, t) })
}

// readLogits reads a float32 [N, classes] .npy file of logits.
func readLogits(path string) ([]float32, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t, err := npz.ReadNpy(f, path)
	if err != nil {
		return nil, err
	}
	v, ok := t.Data().([]float32)
	if !ok || t.Dims() != 2 {
		return nil, fmt.Errorf("%s: %v of shape %v, want float32 [images, classes]", path, t.Dtype(), t.Shape())
	}
	return v, nil
}

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// checkNormalization checks a checkpoint's normalisation against the data
// set's channels: one mean and std per channel, or none (pixel/255, as an
// import with --normalization none records).
func checkNormalization(st datasets.Stats, channels int) error {
	if len(st.Mean) == 0 && len(st.Std) == 0 {
		return nil
	}
	return st.Validate(channels)
}
