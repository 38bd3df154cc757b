package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/faultline/faultline/configs"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// app holds what every command shares: output streams and global flags.
type app struct {
	stdout, stderr io.Writer
	quiet          bool
	tty            bool
}

// run builds the command tree, executes it and returns the exit code.
func run(args []string) int {
	a := &app{stdout: os.Stdout, stderr: os.Stderr}
	root := a.rootCommand()
	root.SetArgs(args)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := root.ExecuteContext(ctx); err != nil {
		if errors.Is(err, context.Canceled) {
			fmt.Fprintln(a.stderr, "faultline: interrupted")
			return 130
		}
		fmt.Fprintln(a.stderr, "faultline:", err)
		return 1
	}
	return 0
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "faultline",
		Short: "Fault injection, vulnerability analysis and hardening of neural networks",
		Long: `faultline makes deep neural networks resilient to hardware faults: it trains
models (libtorch), measures their vulnerability to bit flips, finds the critical
neurons and faults, and hardens them.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, _ []string) {
			if f, ok := a.stderr.(*os.File); ok {
				a.tty = isTerminal(f)
			}
		},
	}
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.PersistentFlags().BoolVarP(&a.quiet, "quiet", "q", false, "print no progress, only results and errors")
	root.AddCommand(a.trainCommand(), a.testCommand(), a.importCommand(), a.configCommand(), a.versionCommand(), a.injectCommand(), a.mergeCommand())
	root.AddCommand(a.benchCommand())
	root.AddCommand(a.berCommand())
	root.AddCommand(a.evalCommand())
	root.AddCommand(a.importanceCommand())
	root.AddCommand(a.hardenCommand())
	root.AddCommand(a.reportCommand())
	return root
}

// configFlags are the flags that set configuration keys, shared by the commands
// that load a configuration.
type configFlags struct {
	preset string
	file   string
	keys   map[string]string // flag name -> config key
}

// addRuntimeFlags declares --threads and --device, shared by the commands that
// load a checkpoint.
func addRuntimeFlags(fs *pflag.FlagSet, threads *int, device *string) {
	fs.IntVar(threads, "threads", 0, "libtorch intra-op threads (0 = number of cores)")
	fs.StringVar(device, "device", "cpu", "cpu or cuda")
}

// addDataFlags declares --data-dir and, when dataset is not nil, --dataset, for
// the commands that evaluate a checkpoint on its data set.
func addDataFlags(fs *pflag.FlagSet, dataset, dir *string) {
	if dataset != nil {
		fs.StringVar(dataset, "dataset", "", "data set (default: the one the checkpoint was trained on)")
	}
	fs.StringVar(dir, "data-dir", "", "data set directory (default: the data set's standard place)")
}

// addConfigFlags registers --preset, --config and the key-setting flags.
func addConfigFlags(fs *pflag.FlagSet, cf *configFlags) {
	fs.StringVar(&cf.preset, "preset", configs.DefaultPreset, "embedded preset: "+strings.Join(configs.Presets(), ", "))
	fs.StringVar(&cf.file, "config", "", "YAML config file (overrides the preset; FAULTLINE_* variables and flags override it)")
	cf.keys = map[string]string{}
	str := func(name, key, usage string) { fs.String(name, "", usage); cf.keys[name] = key }
	integer := func(name, key, usage string) { fs.Int(name, 0, usage); cf.keys[name] = key }
	float := func(name, key, usage string) { fs.Float64(name, 0, usage); cf.keys[name] = key }
	integer("epochs", "train.epochs", "training epochs")
	fs.Int64("seed", 0, "random seed (weights, shuffling, augmentation)")
	cf.keys["seed"] = "runtime.seed"
	integer("batch-size", "train.batch_size", "training batch size")
	float("lr", "train.lr", "peak learning rate")
	str("optimizer", "train.optimizer", "sgd or adam")
	str("schedule", "train.schedule", "none, step, cosine or onecycle")
	integer("threads", "runtime.threads", "libtorch intra-op threads (0 = number of cores)")
	str("device", "runtime.device", "cpu or cuda")
	str("dataset", "data.dataset", "fashion-mnist, mnist, cifar10 or synthetic")
	str("data-dir", "data.dir", "data set directory (default: the data set's standard place)")
	integer("train-limit", "data.train_limit", "use only the first N training images (0 = all)")
	integer("test-limit", "data.test_limit", "use only the first N test images (0 = all)")
	str("arch", "model.arch", "mlp, lenet5, vgg11 or resnet20")
	float("width", "model.width", "channel width multiplier")
}

// load returns the effective configuration: preset < file < FAULTLINE_* < flags.
func (cf *configFlags) load(fs *pflag.FlagSet) (configs.Config, error) {
	return configs.Load(configs.Source{Preset: cf.preset, File: cf.file, Env: configEnv(), Flags: fs, FlagKeys: cf.keys})
}

// toolEnv are FAULTLINE_* variables that configure the tool, not the model.
var toolEnv = map[string]bool{"FAULTLINE_DEBUG": true}

// configEnv is the environment without the tool's own FAULTLINE_* variables.
func configEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !toolEnv[name] {
			env = append(env, kv)
		}
	}
	return env
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
