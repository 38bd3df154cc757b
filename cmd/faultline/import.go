package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/faultline/faultline/configs"
	"github.com/faultline/faultline/datasets"
	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model"
	"github.com/faultline/faultline/train"
	"github.com/spf13/cobra"
	"github.com/sugarme/gotch"
)

// importFlags are the import command's flags.
type importFlags struct {
	arch, weights, onnxFile, out, dataset, dir string
	normalization, labels                      string
	mean, std                                  []float32
	width                                      float64
	hidden                                     []int
	threads                                    int
	batchNorm, asJSON                          bool
}

func (a *app) importCommand() *cobra.Command {
	var fl importFlags
	cmd := &cobra.Command{
		Use:   "import (--arch NAME --weights FILE | --onnx FILE) --out DIR",
		Short: "Turn PyTorch-trained zoo weights, or your own ONNX model, into a faultline checkpoint",
		Long: `Import a model trained elsewhere and measure its test accuracy on the data set.

--arch NAME --weights FILE: weights trained in PyTorch for a zoo architecture, an
.npz of state_dict arrays (numpy.savez(path, **{k: v.numpy() for k, v in
sd.items()})) or a state_dict saved with torch.save (.pt/.pth). Every name and
shape is checked against the architecture.

--onnx FILE: any CNN exported to ONNX (torch.onnx.export, opsets 11 to 17) whose
ops faultline runs. The graph's input must be [batch, C, H, W] with C, H and W
those of the data set's images (a mismatch names both shapes; export with a
dynamic batch and static spatial sizes); every unsupported op is listed with its
nodes in one error. Its conv and linear layers become the fault sites, named by
their PyTorch modules. The checkpoint holds model.onnx (rebuilt from it on load),
the weights, and in model.json the file's SHA-256, opset, producer and input and
output names.

The checkpoint records the input normalisation images get: by default the data
set's standard one (the per-channel mean and std of pixel/255 the zoo trains
with: fashion-mnist 0.2860406/0.3530242, mnist 0.1307/0.3081, cifar10
0.4914,0.4822,0.4465/0.2470,0.2435,0.2616; computed from the training split for
synthetic); --mean/--std give your own, --normalization none feeds pixel/255.

Nothing is written unless every check passes.`,
		Example: `  faultline import --arch lenet5 --weights lenet5_state_dict.pt --out runs/imported
  faultline import --onnx resnet18.onnx --dataset fashion-mnist --out runs/resnet18
  faultline import --onnx net.onnx --mean 0.5 --std 0.5 --labels classes.txt --out runs/net`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runImport(cmd, fl) },
	}
	f := cmd.Flags()
	f.StringVar(&fl.arch, "arch", "", "zoo architecture of --weights: mlp, lenet5, vgg11 or resnet20")
	f.StringVar(&fl.weights, "weights", "", "weights file for --arch: .npz or torch.save state_dict .pt/.pth")
	f.StringVar(&fl.onnxFile, "onnx", "", "ONNX model file to import (instead of --arch and --weights)")
	f.StringVar(&fl.out, "out", "", "checkpoint directory to write (required)")
	f.IntVar(&fl.threads, "threads", 0, "libtorch intra-op threads (0 = number of cores)")
	f.StringVar(&fl.dataset, "dataset", configs.DatasetFashionMNIST, "data set the model was trained on (input shape, normalisation, accuracy check)")
	f.StringVar(&fl.dir, "data-dir", "", "data set directory")
	f.Float32SliceVar(&fl.mean, "mean", nil, "per-channel mean of pixel/255 to subtract (default: the data set's standard normalisation; needs --std)")
	f.Float32SliceVar(&fl.std, "std", nil, "per-channel std of pixel/255 to divide by (default: the data set's standard normalisation; needs --mean)")
	f.StringVar(&fl.normalization, "normalization", "dataset", `"dataset" (the data set's standard normalisation, or --mean/--std) or "none" (pixel/255)`)
	f.StringVar(&fl.labels, "labels", "", "file of class names, one per line in output order, recorded in model.json (as many as the model's classes)")
	f.Float64Var(&fl.width, "width", 1, "channel width multiplier the weights were trained with (default: the preset's)")
	f.IntSliceVar(&fl.hidden, "hidden", nil, "mlp hidden sizes (default: the preset's)")
	f.BoolVar(&fl.asJSON, "json", false, `print {"arch", "weights" or "onnx", "dataset", "test_accuracy", "checkpoint"} as JSON`)
	f.BoolVar(&fl.batchNorm, "batch-norm", false, "vgg11 with BatchNorm (default: the preset's)")
	return cmd
}

// runImport checks everything, builds the model, measures its accuracy and
// only then writes the checkpoint.
func (a *app) runImport(cmd *cobra.Command, fl importFlags) error {
	if fl.out == "" || (fl.onnxFile == "") == (fl.arch == "" && fl.weights == "") {
		return fmt.Errorf("import: give --out and either --onnx FILE or --arch NAME --weights FILE (not both)")
	}
	if fl.onnxFile == "" && (fl.arch == "" || fl.weights == "") {
		return fmt.Errorf("import: --arch and --weights go together")
	}
	if fl.onnxFile != "" {
		for _, name := range []string{"width", "hidden", "batch-norm"} {
			if cmd.Flags().Changed(name) {
				return fmt.Errorf("import: --%s describes a zoo architecture (--arch), not an --onnx model", name)
			}
		}
	}
	switch fl.normalization {
	case "dataset":
	case "none":
		if fl.mean != nil || fl.std != nil {
			return fmt.Errorf("import: --normalization none and --mean/--std contradict each other")
		}
	default:
		return fmt.Errorf(`import: --normalization %q: want "dataset" or "none"`, fl.normalization)
	}
	if (fl.mean == nil) != (fl.std == nil) {
		return fmt.Errorf("import: --mean and --std go together")
	}
	var labels []string
	if fl.labels != "" {
		var err error
		if labels, err = readLabels(fl.labels); err != nil {
			return err
		}
	}
	cfg := configs.Default()
	if fl.arch != "" {
		var err error
		if cfg, err = configs.Preset(fl.arch + "-fashion"); err != nil {
			return fmt.Errorf("import: --arch %q: want one of %v", fl.arch, model.Architectures())
		}
	}
	cfg.Data.Dataset, cfg.Data.Dir = fl.dataset, fl.dir
	if cmd.Flags().Changed("width") {
		cfg.Model.Width = fl.width
	}
	if cmd.Flags().Changed("hidden") {
		cfg.Model.Hidden = fl.hidden
	}
	if cmd.Flags().Changed("batch-norm") {
		cfg.Model.BatchNorm = fl.batchNorm
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if fl.onnxFile != "" {
		if _, err := os.Stat(fl.onnxFile); err != nil {
			return fmt.Errorf("import: --onnx: %w", err)
		}
	}
	data, err := train.LoadData(cfg.Data)
	if err != nil {
		return err
	}
	stats := data.Stats
	switch {
	case fl.normalization == "none":
		stats = datasets.Stats{}
	case fl.mean != nil:
		stats = datasets.Stats{Mean: fl.mean, Std: fl.std}
		if err := stats.Validate(data.Test.C); err != nil {
			return fmt.Errorf("import: --mean/--std for the %d channels of %s: %w", data.Test.C, data.Name, err)
		}
	}
	var (
		m      *model.Model
		source = "import:" + fl.weights
		cfgRaw []byte
		what   = fl.arch
		from   = fl.weights
		onnx   *model.ONNXSource
	)
	if fl.onnxFile != "" {
		shape := []int64{int64(data.Test.C), int64(data.Test.H), int64(data.Test.W)}
		if m, onnx, err = model.ImportONNX(fl.onnxFile, shape, gotch.CPU); err != nil {
			return fmt.Errorf("import: %w", err)
		}
		if c := m.Spec().Classes; c != int64(data.Test.Classes) {
			return fmt.Errorf("import: %s has %d outputs, %s has %d classes", fl.onnxFile, c, data.Name, data.Test.Classes)
		}
		source, what, from = "import:"+fl.onnxFile, "ONNX model", fl.onnxFile
		// The data section only: an ONNX model has no zoo configuration.
		cfgRaw, err = json.Marshal(struct {
			Data configs.DataConfig `json:"data"`
		}{cfg.Data})
	} else {
		if m, err = model.Import(train.SpecFor(cfg.Model, data.Train), fl.weights); err != nil {
			return err
		}
		cfgRaw, err = json.Marshal(cfg)
	}
	if err != nil {
		return err
	}
	if labels != nil && int64(len(labels)) != m.Spec().Classes {
		return fmt.Errorf("import: --labels %s: %d class names, the model has %d classes", fl.labels, len(labels), m.Spec().Classes)
	}
	if _, err := torch.SetThreads(fl.threads); err != nil {
		return err
	}
	if !a.quiet {
		fmt.Fprintf(a.stderr, "measuring the test accuracy of the %s on %d %s images\n", what, data.Test.Len(), data.Name)
	}
	acc, err := train.Evaluate(m, data.Test, stats, 1000, m.Device(), nil)
	if err != nil {
		return err
	}
	meta := model.Metadata{Dataset: data.Name, Normalization: model.Normalization{Mean: stats.Mean, Std: stats.Std},
		TestAccuracy: acc, Source: source, Config: cfgRaw, ONNX: onnx, Labels: labels}
	if err := m.Save(fl.out, meta); err != nil {
		return err
	}
	if fl.asJSON {
		res := map[string]any{"dataset": data.Name, "test_accuracy": acc, "checkpoint": fl.out, "sites": len(m.Sites())}
		if onnx != nil {
			res["onnx"], res["arch"] = fl.onnxFile, model.GraphArch
		} else {
			res["arch"], res["weights"] = fl.arch, fl.weights
		}
		return json.NewEncoder(a.stdout).Encode(res)
	}
	fmt.Fprintf(a.stdout, "imported %s from %s: test accuracy %.2f%% on %s; checkpoint in %s\n", what, from, 100*acc, data.Name, fl.out)
	if onnx != nil {
		fmt.Fprintf(a.stdout, "  opset %d, %s %s; input %q %v, output %q; %d conv/linear sites, %d stages\n", onnx.Opset,
			onnx.Producer, onnx.ProducerVersion, onnx.Input, onnx.InputShape, onnx.Output, len(m.Sites()), m.NumStages())
	}
	return nil
}

// readLabels reads a file of class names, one per line (surrounding spaces and
// a final empty line ignored); an empty name is an error.
func readLabels(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("import: --labels: %w", err)
	}
	lines := strings.Split(strings.TrimRight(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n"), "\n")
	for i, l := range lines {
		if lines[i] = strings.TrimSpace(l); lines[i] == "" {
			return nil, fmt.Errorf("import: --labels %s: line %d is empty (one class name per line)", path, i+1)
		}
	}
	return lines, nil
}
