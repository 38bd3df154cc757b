package main

import (
	"encoding/json"
	"fmt"

	"github.com/faultline/faultline/internal/progress"
	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/train"
	"github.com/spf13/cobra"
)

func (a *app) trainCommand() *cobra.Command {
	var (
		cf     configFlags
		out    string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "train --preset NAME --out DIR",
		Short: "Train a model of the zoo and save the checkpoint",
		Long: `Train a model (MLP, LeNet-5, VGG-11, ResNet-20) on a data set and write
DIR/model.ot (libtorch), DIR/model.npz (NumPy, PyTorch state_dict names) and
DIR/model.json (metadata: arch, dataset, epochs, seed, test_accuracy, ...).`,
		Example: `  faultline train --preset lenet5-fashion --out runs/lenet5
  faultline train --preset vgg11-fashion --epochs 2 --seed 7 --out runs/vgg`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return fmt.Errorf("train: --out DIR is required")
			}
			cfg, err := cf.load(cmd.Flags())
			if err != nil {
				return err
			}
			dev, err := torch.ParseDevice(cfg.Runtime.Device)
			if err != nil {
				return err
			}
			res, err := train.Run(cmd.Context(), train.Options{Config: cfg, Device: dev, Out: out, Hooks: a.trainProgress(cfg.Train.BatchSize)})
			if err != nil {
				return err
			}
			if asJSON {
				// timings apart, under "timing": the rest is identical between runs
				epochSeconds := make([]float64, len(res.Epochs))
				for i, e := range res.Epochs {
					epochSeconds[i] = e.Seconds
				}
				return json.NewEncoder(a.stdout).Encode(map[string]any{"checkpoint": out, "arch": res.Meta.Arch,
					"test_accuracy": res.TestAccuracy, "epochs": res.Epochs,
					"timing": map[string]any{"train_seconds": res.TrainSeconds, "epoch_seconds": epochSeconds}})
			}
			fmt.Fprintf(a.stdout, "test accuracy %.2f%% (%s, %d epochs, %s); checkpoint in %s\n", 100*res.TestAccuracy,
				res.Meta.Arch, len(res.Epochs), progress.FormatDuration(secs(res.TrainSeconds)), out)
			return nil
		},
	}
	addConfigFlags(cmd.Flags(), &cf)
	cmd.Flags().StringVar(&out, "out", "", "checkpoint directory to write (required)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON on stdout")
	return cmd
}

// trainProgress shows a bar per epoch and a line per finished epoch on stderr.
func (a *app) trainProgress(batch int) train.Hooks {
	var (
		bar   *progress.Bar
		start train.Start
	)
	return train.Hooks{
		OnStart: func(s train.Start) {
			start = s
			if !a.quiet {
				fmt.Fprintf(a.stderr, "training %s (%d parameters) on %d images, testing on %d; %d epochs of %d steps; %d threads\n",
					s.Arch, s.Params, s.TrainImages, s.TestImages, s.Epochs, s.StepsPerEpoch, s.Threads)
			}
		},
		OnStep: func(s train.Step) {
			if bar == nil {
				bar = progress.New(a.stderr, a.tty, a.quiet, fmt.Sprintf("epoch %d/%d", s.Epoch+1, start.Epochs), start.StepsPerEpoch*batch, "img")
			}
			bar.Update(s.Images, fmt.Sprintf("loss %.4f", s.Loss))
		},
		OnEpoch: func(e train.Epoch) {
			if bar != nil {
				bar.Done()
				bar = nil
			}
			if !a.quiet {
				fmt.Fprintf(a.stderr, "epoch %d/%d: train loss %.4f, train accuracy %.2f%%, test accuracy %.2f%% (%s)\n",
					e.Epoch, start.Epochs, e.TrainLoss, 100*e.TrainAccuracy, 100*e.TestAccuracy, progress.FormatDuration(secs(e.Seconds)))
			}
		},
	}
}
