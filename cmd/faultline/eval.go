package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/faultline/faultline/eval"
	"github.com/faultline/faultline/eval/deepvigor"
	"github.com/faultline/faultline/internal/torch"
	"github.com/spf13/cobra"
)

func (a *app) evalCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "eval",
		Short: "Evaluate a checkpoint's vulnerability (DeepVigor+ vulnerability factors)",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(a.evalVFCommand(), a.evalCompareCommand())
	return cmd
}

func (a *app) evalCompareCommand() *cobra.Command {
	var (
		complete  string
		tolerance float64
		asJSON    bool
	)
	cmd := &cobra.Command{
		Use:   "compare --complete DIR SAMPLED_DIR...",
		Short: "Compare sampled DeepVigor+ analyses with the complete one, layer by layer",
		Long: `compare sets sampled eval vf runs (--sampling-ratio < 1) beside a complete one
(--sampling-ratio 1) of the same checkpoint, images and settings: per layer and
target, the absolute LVF difference and whether the sampled run's 95% interval
holds the complete LVF; then, per target over every run and layer, the mean and
largest difference, how many stay under --tolerance (0.005 = 0.5 pp) and how many
intervals hold the complete LVF. Arguments are run directories or vf.json files.
Runs with other settings (tail check, semantics, images, ...) are refused.`,
		Example: `  faultline eval vf --checkpoint runs/lenet5 --sampling-ratio 1 --out runs/vf-full
  for s in 1 2 3; do faultline eval vf --checkpoint runs/lenet5 --seed $s --out runs/vf-s$s; done
  faultline eval compare --complete runs/vf-full runs/vf-s1 runs/vf-s2 runs/vf-s3`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if complete == "" {
				return fmt.Errorf("eval compare: --complete DIR is required (a run with --sampling-ratio 1)")
			}
			if len(args) == 0 {
				return fmt.Errorf("eval compare: give at least one sampled run directory")
			}
			c, err := eval.Compare(complete, args, tolerance)
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(a.stdout).Encode(c)
			}
			printComparison(a, c)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&complete, "complete", "", "the complete analysis (eval vf --sampling-ratio 1): its directory or vf.json")
	f.Float64Var(&tolerance, "tolerance", eval.DefaultTolerance, "LVF difference to count under, as a fraction (0.005 = 0.5 pp)")
	f.BoolVar(&asJSON, "json", false, "print the comparison as JSON")
	return cmd
}

// printComparison prints, per layer and target, the complete LVF and the
// sampled runs' differences (Comparison.Layers), then the per-target summary.
func printComparison(a *app, c *eval.Comparison) {
	w := a.stdout
	fmt.Fprintf(w, "eval compare: %d sampled runs against %s (tolerance %.2f pp)\n", len(c.Runs), c.Complete, 100*c.Tolerance)
	fmt.Fprintf(w, "%-18s %-12s %12s %14s %14s %8s\n", "layer", "target", "complete LVF", "mean |diff|", "max |diff|", "in CI")
	for _, l := range c.Layers {
		for _, st := range l.Stats {
			want := l.LVFWeights
			if st.Target == "activations" {
				want = l.LVFActivations
			}
			fmt.Fprintf(w, "%-18s %-12s %11.3f%% %11.3f pp %11.3f pp %8s\n", l.Name, st.Target, 100**want, 100*st.MeanDiff, 100*st.MaxDiff, fmt.Sprintf("%d/%d", st.InCI, st.WithCI))
		}
	}
	for _, s := range c.Summary {
		fmt.Fprintf(w, "%s: %d layer x run cases, mean |diff| %.3f pp, largest %.3f pp at %s; %d of %d under %.2f pp; the interval held the complete LVF in %d of %d\n",
			s.Target, s.Cases, 100*s.MeanDiff, 100*s.MaxDiff, s.MaxAt, s.UnderTolerance, s.Cases, 100*c.Tolerance, s.InCI, s.WithCI)
	}
}

func (a *app) evalVFCommand() *cobra.Command {
	var (
		o                 eval.VFOptions
		semantics, layers string
		device            string
		asJSON            bool
	)
	cmd := &cobra.Command{
		Use:   "vf --checkpoint DIR --out DIR2",
		Short: "DeepVigor+ vulnerability factors per channel, layer and model, optionally validated by fault injection",
		Long: `vf computes DeepVigor+ vulnerability factors (VFs: the probability that a single
bit flip misclassifies an image) of every conv and linear layer, for activations
(a flip in one input operand of one neuron's multiply-accumulate) and weights (a
flip in one weight of a filter), on the first --images test images:

  CVF per channel, LVF per layer (mean of its channels), MVF per model (mean of
  the layers) and the total MVF of the paper's Eq. 15 (layers weighted by
  neurons and weights). "mvf" covers conv and linear layers, "mvf_paper" only
  the conv layers, as the paper does.

Each target's single-bit errors are computed exactly; a search on the real network
finds which of them misclassify. --sampling-ratio analyses that share of each
layer's channels (at least two, stratified by gradient sensitivity, and log2(H*W)
neurons per channel) with a 95% interval per layer; 1 is the complete analysis.
--validate F runs fault injection on a share F of the analysed channels and reports
MAE, max error and rank correlation. Writes DIR2/vf.json (kind faultline.vf) and
DIR2/vf.csv (one row per channel).

--semantics exact (default) uses true IEEE-754 flips; reference reproduces the
authors' reference implementation, quirks included (BatchNorm-free models only).
--tail-check decides errors of magnitude 2^10 and more (up to the largest finite
float32, and infinities) with the network instead of counting them critical, as
the paper does; auto (the default) turns it on for exact semantics, the accurate
mode, and off for reference. Compare runs only with identical settings.`,
		Example: `  faultline eval vf --checkpoint runs/lenet5 --out runs/vf
  faultline eval vf --checkpoint runs/lenet5 --sampling-ratio 1 --validate 1 --out runs/vf-full
  faultline eval vf --checkpoint runs/vgg11 --target weights --validate 0.15 --out runs/vgg-vf`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Checkpoint == "" {
				return fmt.Errorf("eval vf: --checkpoint DIR is required")
			}
			if o.Out == "" {
				return fmt.Errorf("eval vf: --out DIR is required")
			}
			var err error
			if o.Semantics, err = deepvigor.ParseSemantics(semantics); err != nil {
				return fmt.Errorf("eval vf: --semantics: %w", err)
			}
			if layers != "" {
				o.Layers = strings.Split(layers, ",")
			}
			if o.Device, err = torch.ParseDevice(device); err != nil {
				return err
			}
			var finish func()
			o.OnProgress, o.OnReplay, finish = a.phaseBars(func(phase string) string {
				if phase == "validation" {
					return "faults"
				}
				return "targets"
			})
			o.OnResume = func(channels, units int) {
				if !a.quiet {
					fmt.Fprintf(a.stderr, "eval vf: resuming: %d analysed channels and %d validated units recorded in %s are taken over\n",
						channels, units, filepath.Join(o.Out, eval.JournalFile))
				}
			}
			vf, err := eval.RunVF(cmd.Context(), o)
			finish()
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(a.stdout).Encode(vf)
			}
			printVF(a, vf, filepath.Join(o.Out, eval.VFFile))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Checkpoint, "checkpoint", "", "checkpoint directory (from train or import)")
	f.StringVar(&o.Target, "target", "both", "activations, weights or both")
	f.Float64Var(&o.Ratio, "sampling-ratio", 0.1, "share of each layer's output channels analysed, in (0, 1] (1 = complete)")
	f.Float64Var(&o.Precision, "lvf-precision", eval.DefaultPrecision, "draw more channels where a sampled layer's LVF 95% interval is wider than +-this fraction (0.005 = 0.5 pp; 0 = off: the first draw only)")
	f.IntVar(&o.Images, "images", 100, "analysis images: the first N of the test split")
	f.Float64Var(&o.Validate, "validate", 0, "share of channels validated by fault injection on the same images (0 = none)")
	f.IntVar(&o.ValidateNeurons, "validate-neurons", 1, "analysed neurons per validated channel that activation fault injection covers, drawn at random positions (from 2 on, border and interior neurons both)")
	f.IntVar(&o.ValidateOperands, "validate-operands", 0, "cap on the weights per filter (operands per neuron) whose bits validation flips: a seeded sample (0 = all, exhaustive)")
	f.StringVar(&semantics, "semantics", "exact", "exact or reference")
	f.StringVar(&o.TailCheck, "tail-check", "auto", "auto, on or off: let the network decide errors of magnitude >= 2^10 (exact only; auto: on for exact, off for reference)")
	f.Int64Var(&o.Seed, "seed", 1, "seed of the channel and neuron sampling")
	f.StringVar(&layers, "layers", "", "comma-separated layer names (default: every conv and linear layer)")
	f.IntVar(&o.PerOctave, "thresholds-per-octave", deepvigor.DefaultPerOctave, "exact semantics: candidate error values per factor of two")
	f.StringVar((*string)(&o.WeightErrors), "weight-errors", "", "weight analysis errors: mean (exact's default: one per fault, its errors over the channel's positions averaged with loss-gradient weights), fault (one per fault, its largest over the positions) or position (the paper's and reference's: one per output position)")
	f.IntVar(&o.BatchSize, "batch", 1024, "fault-injection samples per forward pass (validation)")
	f.StringVar(&o.Out, "out", "", "output directory (vf.json, vf.csv)")
	addRuntimeFlags(f, &o.Threads, &device)
	addDataFlags(f, &o.Dataset, &o.DataDir)
	f.BoolVar(&asJSON, "json", false, "print vf.json to stdout instead of the table")
	return cmd
}

// printVF prints the per-layer LVFs, the MVFs, the costs and the validation.
func printVF(a *app, vf *eval.VF, path string) {
	w := a.stdout
	pct := func(v *float64) string {
		if v == nil {
			return "-"
		}
		return fmt.Sprintf("%.3f%%", 100**v)
	}
	precision := ""
	if vf.Precision > 0 {
		precision = fmt.Sprintf(" (LVF intervals at most +-%.2f pp)", 100*vf.Precision)
	}
	fmt.Fprintf(w, "eval vf: %s %s on %s, %d images (golden accuracy %.2f%%), %s semantics, tail check %v, sampling %g%s, seed %d\n",
		vf.Arch, vf.Checkpoint, vf.Dataset, vf.Images, 100*vf.GoldenAccuracy, vf.Semantics, vf.TailCheck, vf.SamplingRatio, precision, vf.Seed)
	fmt.Fprintf(w, "%-18s %-6s %9s %12s %12s\n", "layer", "kind", "channels", "LVF act", "LVF weights")
	for _, l := range vf.Layers {
		fmt.Fprintf(w, "%-18s %-6s %4d/%-4d %12s %12s\n", l.Name, l.Kind, len(l.ChannelVFs), l.Channels, pct(l.LVFActivations), pct(l.LVFWeights))
	}
	fmt.Fprintf(w, "MVF (conv+linear): activations %s, weights %s, total %s\n", pct(vf.MVF.Activations), pct(vf.MVF.Weights), pct(vf.MVF.Total))
	fmt.Fprintf(w, "MVF (paper, conv): activations %s, weights %s, total %s\n", pct(vf.MVFPaper.Activations), pct(vf.MVFPaper.Weights), pct(vf.MVFPaper.Total))
	fmt.Fprintf(w, "cost: %d image-forwards (%d batch forwards) in %.1f s", vf.ImageForwards, vf.BatchForwards, vf.Timing.Analysis)
	for _, s := range vf.SFIBaseline.Confidences {
		fmt.Fprintf(w, "; data-aware SFI at %g%%: %d image-forwards (%.1fx)", 100*s.Confidence, s.DataAwareImageForwards, s.Reduction)
	}
	fmt.Fprintln(w)
	if v := vf.Validation; v != nil {
		for _, x := range []struct {
			name string
			a    *eval.Agreement
		}{{"weights (filter FI)", v.Weights}, {"activations (MAC FI)", v.Activations}, {"activations (output FI)", v.ActivationsOutput}} {
			if x.a == nil {
				continue
			}
			rho := spearmanText(x.a.Spearman)
			fmt.Fprintf(w, "validation %-24s n=%-4d MAE %.3f pp, max %.3f pp, mean DV %.3f%% vs FI %.3f%%, Spearman %s\n",
				x.name, x.a.N, 100*x.a.MAE, 100*x.a.Max, 100*x.a.MeanDV, 100*x.a.MeanFI, rho)
		}
		for _, l := range v.Layers {
			for _, x := range []struct {
				name string
				a    *eval.Agreement
			}{{"weights", l.Weights}, {"activations", l.Activations}} {
				if x.a == nil {
					continue
				}
				fmt.Fprintf(w, "  %-16s %-11s n=%-4d MAE %.3f pp, max %.3f pp, mean DV %.3f%% vs FI %.3f%%, Spearman %s\n",
					l.Layer, x.name, x.a.N, 100*x.a.MAE, 100*x.a.Max, 100*x.a.MeanDV, 100*x.a.MeanFI, spearmanText(x.a.Spearman))
			}
		}
	}
	fmt.Fprintf(w, "wrote %s\n", path)
}

// spearmanText prints a rank correlation, "-" where there is none.
func spearmanText(r *float64) string {
	if r == nil {
		return "-"
	}
	return fmt.Sprintf("%.3f", *r)
}
