package main

import (
	"encoding/json"
	"fmt"

	"github.com/faultline/faultline/configs"
	"github.com/faultline/faultline/model"
	"github.com/faultline/faultline/train"
	"github.com/spf13/cobra"
)

func (a *app) importCommand() *cobra.Command {
	var (
		arch, weights, out, dataset, dir string
		width                            float64
		hidden                           []int
		batchNorm, asJSON                bool
	)
	cmd := &cobra.Command{
		Use:   "import --arch NAME --weights FILE --out DIR",
		Short: "Turn PyTorch-trained weights of a zoo architecture into a faultline checkpoint",
		Long: `Import weights trained in PyTorch for a zoo architecture: an .npz of state_dict
arrays (numpy.savez(path, **{k: v.numpy() for k, v in sd.items()})) or a
state_dict saved with torch.save (.pt/.pth). Every name and shape is checked
against the architecture; the checkpoint's test accuracy is measured on the
data set and recorded.`,
		Example: `  faultline import --arch lenet5 --weights lenet5_state_dict.pt --out runs/imported`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if arch == "" || weights == "" || out == "" {
				return fmt.Errorf("import: --arch, --weights and --out are required")
			}
			cfg, err := configs.Preset(arch + "-fashion")
			if err != nil {
				return fmt.Errorf("import: --arch %q: want one of %v", arch, model.Architectures())
			}
			cfg.Data.Dataset, cfg.Data.Dir = dataset, dir
			if cmd.Flags().Changed("width") {
				cfg.Model.Width = width
			}
			if cmd.Flags().Changed("hidden") {
				cfg.Model.Hidden = hidden
			}
			if cmd.Flags().Changed("batch-norm") {
				cfg.Model.BatchNorm = batchNorm
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			data, err := train.LoadData(cfg.Data)
			if err != nil {
				return err
			}
			m, err := model.Import(train.SpecFor(cfg.Model, data.Train), weights)
			if err != nil {
				return err
			}
			acc, err := train.Evaluate(m, data.Test, data.Stats, 1000, m.Device(), nil)
			if err != nil {
				return err
			}
			cfgJSON, _ := json.Marshal(cfg)
			meta := model.Metadata{Dataset: data.Name, Normalization: model.Normalization{Mean: data.Stats.Mean, Std: data.Stats.Std},
				TestAccuracy: acc, Source: "import:" + weights, Config: cfgJSON}
			if err := m.Save(out, meta); err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(a.stdout).Encode(map[string]any{"arch": arch, "weights": weights, "dataset": data.Name,
					"test_accuracy": acc, "checkpoint": out})
			}
			fmt.Fprintf(a.stdout, "imported %s from %s: test accuracy %.2f%% on %s; checkpoint in %s\n", arch, weights, 100*acc, data.Name, out)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&arch, "arch", "", "architecture: mlp, lenet5, vgg11 or resnet20 (required)")
	f.StringVar(&weights, "weights", "", "weights file: .npz or torch.save state_dict .pt/.pth (required)")
	f.StringVar(&out, "out", "", "checkpoint directory to write (required)")
	f.StringVar(&dataset, "dataset", configs.DatasetFashionMNIST, "data set the weights were trained on (input shape, normalisation, accuracy check)")
	f.StringVar(&dir, "data-dir", "", "data set directory")
	f.Float64Var(&width, "width", 1, "channel width multiplier the weights were trained with (default: the preset's)")
	f.IntSliceVar(&hidden, "hidden", nil, "mlp hidden sizes (default: the preset's)")
	f.BoolVar(&asJSON, "json", false, `print {"arch", "weights", "dataset", "test_accuracy", "checkpoint"} as JSON`)
	f.BoolVar(&batchNorm, "batch-norm", false, "vgg11 with BatchNorm (default: the preset's)")
	return cmd
}
