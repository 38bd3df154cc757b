package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/faultline/faultline/configs"
	"github.com/faultline/faultline/harden"
	"github.com/faultline/faultline/internal/torch"
	"github.com/spf13/cobra"
)

func (a *app) hardenCommand() *cobra.Command {
	var (
		o            harden.Options
		device, file string
		asJSON       bool
		keys         = map[string]string{}
	)
	def := harden.Defaults()
	cmd := &cobra.Command{
		Use:   "harden --checkpoint DIR --out DIR2",
		Short: "Harden a checkpoint (range restriction and fault-aware training) and measure it before and after",
		Long: `harden returns a hardened copy of a checkpoint, with proof.

1. Before: clean accuracy on the test split, DeepVigor+ vulnerability factors
   (--vf-ratio of the channels, more where a layer's interval is wider than
   +-(--vf-precision), --vf-images test images, tail check on) and
   accuracy under bit error rates over all weight bits (--ber, --ber-trials
   trials each, --ber-images test images).
2. Range restriction (--clamps): every conv and linear layer's output is clamped
   to its range on --profile-images training images (widened by --margin).
   The bounds are saved in the checkpoint and applied by every command.
3. Fault-aware fine-tuning (--fat): --epochs epochs at --lr-scale times the
   checkpoint's learning rate; each step carries, with probability
   --fault-prob, --faults-per-step transient weight bit flips (a --pool-share
   of them from the critical faults importance sampling finds on the clamped
   model, the rest fresh). Such a step's gradient is that of clean + --lambda x
   faulty loss on the same batch: the faulty pass runs first (its gradients
   dropped when not finite, clipped to --max-grad-norm), the flips are undone,
   the clean pass adds its gradients and the update lands on the clean
   weights. With --refresh the clamps are re-profiled and the critical pool
   searched again before every epoch after the first. --permanent FILE keeps a
   known fault map on in every step (permanent-fault mode) and reports the
   accuracy with it on, before and after.
4. After: the same measurements on the saved hardened checkpoint.

The recipe comes from the harden.* keys of the default preset, then --config
FILE, then FAULTLINE_HARDEN_* variables, then these flags.

Writes the hardened checkpoint (model.ot, model.npz, model.json with the recipe
and bounds, and model.onnx: the graph with a Clip node carrying the bounds after
every clamped layer, for any ONNX runtime) and DIR2/report.json (kind faultline.harden_report: before, after,
change, recipe); the raw measurements go to DIR2/before and DIR2/after.`,
		Example: `  faultline harden --checkpoint runs/lenet5 --out runs/lenet5-hard
  faultline harden --checkpoint runs/lenet5 --fat=false --out runs/lenet5-clamps
  faultline harden --checkpoint runs/lenet5 --config harden.yaml --out runs/lenet5-hard`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Checkpoint == "" {
				return fmt.Errorf("harden: --checkpoint DIR is required")
			}
			if o.Out == "" {
				return fmt.Errorf("harden: --out DIR is required")
			}
			cfg, err := configs.Load(configs.Source{File: file, Env: configEnv(), Flags: cmd.Flags(), FlagKeys: keys})
			if err != nil {
				return err
			}
			r := harden.FromConfig(cfg.Harden)
			r.Checkpoint, r.Out, r.Dataset, r.DataDir, r.Threads, r.Seed = o.Checkpoint, o.Out, o.Dataset, o.DataDir, o.Threads, cfg.Runtime.Seed
			if r.Device, err = torch.ParseDevice(device); err != nil {
				return err
			}
			update, _, finish := a.phaseBars(func(phase string) string {
				switch {
				case strings.Contains(phase, "ber"):
					return "trials"
				case strings.Contains(phase, "fault-aware"):
					return "steps"
				case strings.Contains(phase, "importance"):
					return "faults"
				}
				return "targets"
			})
			r.OnProgress = update
			if !a.quiet {
				r.OnPhase = func(p string) { fmt.Fprintf(a.stderr, "harden: %s\n", p) }
			}
			rep, err := harden.Run(cmd.Context(), r)
			finish()
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(a.stdout).Encode(rep)
			}
			printHarden(a, rep)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Checkpoint, "checkpoint", "", "checkpoint directory (from train or import)")
	f.StringVar(&o.Out, "out", "", "output directory: the hardened checkpoint and report.json")
	f.StringVar(&file, "config", "", "YAML file with harden.* keys (FAULTLINE_HARDEN_* variables and flags override it)")
	key := func(name, k string) { keys[name] = k }
	f.Bool("clamps", def.Clamps, "range restriction: clamp layer outputs to their profiled range")
	key("clamps", "harden.clamps")
	f.Int("profile-images", def.ProfileImages, "training images the clamp bounds are profiled on (0 = all)")
	key("profile-images", "harden.profile_images")
	f.Float64("margin", def.Margin, "widen each bound by this share of the range's width")
	key("margin", "harden.margin")
	f.Bool("weight-clamps", def.WeightClamps, "clamp each layer's weights, as they are read, to the range of the hardened weights")
	key("weight-clamps", "harden.weight_clamps")
	f.Bool("fat", def.FAT, "fault-aware fine-tuning")
	key("fat", "harden.fat")
	f.Int("epochs", def.Epochs, "fault-aware training epochs")
	key("epochs", "harden.epochs")
	f.Float64("lr-scale", def.LRScale, "fine-tuning learning rate, as a share of the checkpoint's")
	key("lr-scale", "harden.lr_scale")
	f.Float64("fault-prob", def.FaultProb, "probability that a training step carries faults")
	key("fault-prob", "harden.fault_prob")
	f.Int("faults-per-step", def.FaultsPerStep, "transient weight bit flips per faulty step")
	key("faults-per-step", "harden.faults_per_step")
	f.Float64("pool-share", def.PoolShare, "share of the faults taken from the critical pool (0 = no importance search)")
	key("pool-share", "harden.pool_share")
	f.Int("pool-budget", def.PoolBudget, "importance-sampling injections that build the critical pool")
	key("pool-budget", "harden.pool_budget")
	f.Int("pool-images", def.PoolImages, "test images the critical pool is searched on")
	key("pool-images", "harden.pool_images")
	f.Float64("lambda", def.Lambda, "weight of the faulty pass: loss = clean + lambda x faulty, on the same batch")
	key("lambda", "harden.lambda")
	f.Float64("max-grad-norm", def.MaxGradNorm, "clip the faulty pass's gradients to this global L2 norm (0 = off)")
	key("max-grad-norm", "harden.max_grad_norm")
	f.Bool("refresh", def.Refresh, "re-profile the clamps and search the critical pool again before every epoch after the first")
	key("refresh", "harden.refresh")
	f.String("permanent", def.Permanent, "fault-list JSONL (inject's format) of weight faults kept on in every step: permanent-fault mode")
	key("permanent", "harden.permanent")
	f.Float64("vf-ratio", def.VFRatio, "DeepVigor+ channel sampling ratio of the before/after measurements")
	key("vf-ratio", "harden.vf_ratio")
	f.Float64("vf-precision", def.VFPrecision, "draw more channels where a layer's LVF 95% interval is wider than +-this fraction, as eval vf's --lvf-precision (0 = the first draw only)")
	key("vf-precision", "harden.vf_precision")
	f.Int("vf-images", def.VFImages, "DeepVigor+ images")
	key("vf-images", "harden.vf_images")
	f.String("ber", "1e-7,1e-6,1e-5,1e-4", "comma-separated bit error rates over all weight bits")
	key("ber", "harden.ber")
	f.Int("ber-trials", def.BERTrials, "trials per bit error rate")
	key("ber-trials", "harden.ber_trials")
	f.Int("ber-images", def.BERImages, "test images of each BER trial")
	key("ber-images", "harden.ber_images")
	f.Bool("ablation", def.Ablation, "also harden with clamps only and with fault-aware training only, and compare the three (about three times longer)")
	key("ablation", "harden.ablation")
	f.Int64("seed", def.Seed, "seed of every random choice")
	key("seed", "runtime.seed")
	addRuntimeFlags(f, &o.Threads, &device)
	addDataFlags(f, &o.Dataset, &o.DataDir)
	f.BoolVar(&asJSON, "json", false, "print report.json to stdout instead of the table")
	return cmd
}

// printHarden prints the before/after table.
func printHarden(a *app, r *harden.Report) {
	w := a.stdout
	pct := func(v *float64) string {
		if v == nil {
			return "-"
		}
		return fmt.Sprintf("%.3f%%", 100**v)
	}
	fmt.Fprintf(w, "harden: %s -> %s\n", r.Checkpoint, r.Hardened)
	if r.Recipe.Clamps != nil {
		fmt.Fprintf(w, "range restriction: %d layers clamped (bounds from %d training images)\n", len(r.Recipe.Clamps), r.Recipe.ProfileImages)
	}
	if r.Recipe.WeightClamps != nil {
		fmt.Fprintf(w, "weight range restriction: %d layers' weights clamped to their range\n", len(r.Recipe.WeightClamps))
	}
	if f := r.Recipe.FAT; f != nil {
		fmt.Fprintf(w, "fault-aware training: %d epochs, lr %g, %d steps, %d faults injected (%d from the critical pool; %d in its last search), %d steps skipped (non-finite loss)\n",
			f.Epochs, f.LR, f.Steps, f.Injected, f.FromPool, f.PoolSize, f.SkippedSteps)
		fmt.Fprintf(w, "  loss = clean + %g x faulty: %d faulty passes, %d dropped (not finite), %d clipped to norm %g; %d refreshes of clamps and pool\n",
			f.Lambda, f.FaultySteps, f.FaultySkipped, f.FaultyClipped, f.MaxGradNorm, f.Refreshes)
		if p := f.Permanent; p != nil {
			fmt.Fprintf(w, "  permanent faults (%s, %d faults): accuracy %.2f%% before, %.2f%% after fault-aware training\n",
				p.File, p.Faults, 100*p.AccuracyBefore, 100*p.AccuracyAfter)
		}
	}
	// Each figure with its 95% interval (report.json's *_ci95 fields).
	iv := func(ci *[2]float64, prec int) string {
		if ci == nil {
			return "-"
		}
		return fmt.Sprintf("[%.*f, %.*f]", prec, 100*ci[0], prec, 100*ci[1])
	}
	row := func(name, b, bci, a, aci string) {
		fmt.Fprintf(w, "%-28s %10s %-18s %10s %-18s\n", name, b, bci, a, aci)
	}
	acc := func(v float64) string { return fmt.Sprintf("%.2f%%", 100*v) }
	row("", "before", "95% interval", "after", "95% interval")
	row("clean accuracy", acc(r.Before.CleanAccuracy), iv(&r.Before.CleanAccuracyCI, 2), acc(r.After.CleanAccuracy), iv(&r.After.CleanAccuracyCI, 2))
	if b, a := r.Before.VF, r.After.VF; b != nil && a != nil {
		row("MVF activations", pct(b.MVF.Activations), iv(b.MVF.ActivationsCI, 3), pct(a.MVF.Activations), iv(a.MVF.ActivationsCI, 3))
		row("MVF weights", pct(b.MVF.Weights), iv(b.MVF.WeightsCI, 3), pct(a.MVF.Weights), iv(a.MVF.WeightsCI, 3))
		row("MVF total", pct(b.MVF.Total), iv(b.MVF.TotalCI, 3), pct(a.MVF.Total), iv(a.MVF.TotalCI, 3))
	}
	var keys []string
	for k := range r.Before.BER {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return r.Before.BER[keys[i]].BER < r.Before.BER[keys[j]].BER })
	for _, k := range keys {
		b, af := r.Before.BER[k], r.After.BER[k]
		row("BER "+k+" mean accuracy", acc(b.Mean), iv(&b.MeanCI, 2), acc(af.Mean), iv(&af.MeanCI, 2))
		row("BER "+k+" p5 accuracy", acc(b.P5), iv(&b.P5CI, 2), acc(af.P5), iv(&af.P5CI, 2))
		row("BER "+k+" catastrophic", fmt.Sprintf("%.1f%%", 100*b.Catastrophic), iv(&b.CatastrophicCI, 1),
			fmt.Sprintf("%.1f%%", 100*af.Catastrophic), iv(&af.CatastrophicCI, 1))
	}
	if len(r.Ablation) > 0 {
		fmt.Fprintf(w, "ablation (after):\n%-10s %10s %12s", "variant", "clean", "MVF total")
		for _, k := range keys {
			fmt.Fprintf(w, " %14s", "BER "+k)
		}
		fmt.Fprintln(w)
		for _, row := range r.Ablation {
			var mvf *float64
			if row.After.VF != nil {
				mvf = row.After.VF.MVF.Total
			}
			fmt.Fprintf(w, "%-10s %9.2f%% %12s", row.Variant, 100*row.After.CleanAccuracy, pct(mvf))
			for _, k := range keys {
				fmt.Fprintf(w, " %13.2f%%", 100*row.After.BER[k].Mean)
			}
			fmt.Fprintln(w)
		}
	}
	if c := r.Change.MVFTotal; c != nil {
		fmt.Fprintf(w, "MVF total reduced by %.1f%%; clean accuracy %+.2f pp\n", 100**c, 100*r.Change.CleanAccuracy)
	}
	fmt.Fprintf(w, "wrote %s\n", filepath.Join(r.Hardened, harden.ReportFile))
}
