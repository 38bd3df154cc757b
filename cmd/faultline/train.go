package main

import (
	"encoding/json"
	"fmt"

	"github.com/faultline/faultline/configs"
	"github.com/faultline/faultline/datasets"
	"github.com/faultline/faultline/model"
	"github.com/spf13/pflag"

	"github.com/faultline/faultline/internal/progress"
	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/train"
	"github.com/spf13/cobra"
)

func (a *app) trainCommand() *cobra.Command {
	var (
		cf     configFlags
		out    string
		base   string
		resume bool
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "train (--preset NAME | --checkpoint DIR) --out DIR",
		Short: "Train a model of the zoo, or fine-tune a checkpoint, and save the checkpoint",
		Long: `Train a model (MLP, LeNet-5, VGG-11, ResNet-20) on a data set, or fine-tune
any checkpoint (an imported ONNX graph included) with --checkpoint, and write
DIR/model.ot (libtorch), DIR/model.npz (NumPy, PyTorch state_dict names),
DIR/model.onnx and DIR/model.json (metadata: arch, dataset, epochs, seed,
test_accuracy, ...).

--checkpoint starts from that checkpoint's weights, on its data set and input
normalisation unless --dataset/--data-dir say otherwise; the preset or config
gives the training settings (epochs, optimiser, learning rate, schedule), and
the model settings (--arch, --width) do not apply and are not recorded. BatchNorm trains in
training mode and its running statistics update.

--resume makes a long run survive interruption: after every epoch the state is
kept in DIR.resume, and the same command run again continues after the last
finished epoch (the data order and learning-rate schedule continue exactly; the
optimiser's momentum restarts). DIR.resume is removed when DIR is written.`,
		Example: `  faultline train --preset lenet5-fashion --out runs/lenet5
  faultline train --preset vgg11-fashion --epochs 2 --seed 7 --out runs/vgg
  faultline train --checkpoint runs/r18-imported --preset resnet20-fashion --epochs 3 --resume --out runs/r18`,
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
			opts := train.Options{Config: cfg, Device: dev, Out: out, Resume: resume, Hooks: a.trainProgress(cfg.Train.BatchSize)}
			if base != "" {
				if err := a.fineTuneFrom(cmd.Flags(), base, &opts); err != nil {
					return err
				}
			}
			res, err := train.Run(cmd.Context(), opts)
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
	cmd.Flags().StringVar(&base, "checkpoint", "", "fine-tune this checkpoint instead of training a new model")
	cmd.Flags().BoolVar(&resume, "resume", false, "keep state after every epoch in OUT.resume and continue from it when present")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON on stdout")
	return cmd
}

// fineTuneFrom loads the checkpoint in dir as the model to train and its data
// set (unless --dataset/--data-dir are given) with its input normalisation.
func (a *app) fineTuneFrom(fs *pflag.FlagSet, dir string, opts *train.Options) error {
	if fs.Changed("arch") || fs.Changed("width") {
		return fmt.Errorf("train: --arch and --width do not apply with --checkpoint %s: the model is the checkpoint's", dir)
	}
	m, meta, err := model.Load(dir, opts.Device)
	if err != nil {
		return err
	}
	cfg := &opts.Config
	var was configs.Config
	if len(meta.Config) > 0 {
		if err := json.Unmarshal(meta.Config, &was); err != nil {
			return fmt.Errorf("train: %s: config: %w", dir, err)
		}
	}
	if !fs.Changed("dataset") {
		cfg.Data.Dataset = meta.Dataset
	}
	if !fs.Changed("data-dir") && cfg.Data.Dataset == meta.Dataset {
		cfg.Data.Dir = was.Data.Dir
	}
	data, err := train.LoadData(cfg.Data)
	if err != nil {
		return err
	}
	data.Stats = datasets.Stats{Mean: meta.Normalization.Mean, Std: meta.Normalization.Std}
	opts.Model, opts.Base, opts.Data = m, &meta, data
	opts.Source = "finetune:" + dir
	return nil
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
