package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/faultline/faultline/datasets"
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
}

func (a *app) testCommand() *cobra.Command {
	var (
		ckpt, dataset, dir, split, device string
		limit, batch, threads             int
		asJSON                            bool
	)
	cmd := &cobra.Command{
		Use:   "test --checkpoint DIR",
		Short: "Measure a checkpoint's accuracy on a data set",
		Example: `  faultline test --checkpoint runs/lenet5
  faultline test --checkpoint runs/lenet5 --json --limit 1000`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ckpt == "" {
				return fmt.Errorf("test: --checkpoint DIR is required")
			}
			sp, err := datasets.ParseSplit(split)
			if err != nil {
				return err
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
			if err := stats.Validate(set.C); err != nil {
				return fmt.Errorf("test: %s: normalization: %w", ckpt, err)
			}
			start := time.Now()
			acc, err := train.Evaluate(m, set, stats, batch, dev, nil)
			if err != nil {
				return err
			}
			r := testResult{Accuracy: acc, Correct: int64(acc*float64(set.Len()) + 0.5), Images: set.Len(), Dataset: dataset,
				Split: string(sp), Checkpoint: ckpt, Arch: meta.Arch}
			if asJSON {
				return json.NewEncoder(a.stdout).Encode(r)
			}
			fmt.Fprintf(a.stdout, "accuracy %.2f%% (%d/%d) of %s on %s %s (%.1f s)\n", 100*acc, r.Correct, r.Images, meta.Arch, dataset, sp, time.Since(start).Seconds())
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
	return cmd
}

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
