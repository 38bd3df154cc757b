package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/faultline/faultline/fault"
	"github.com/faultline/faultline/internal/progress"
	"github.com/faultline/faultline/internal/torch"
	"github.com/spf13/cobra"
)

func (a *app) injectCommand() *cobra.Command {
	var (
		o                                     fault.RunOptions
		target, site, layers, bits, kind      string
		sampler, strata, shard, device, ofile string
		shards                                int
		asJSON                                bool
	)
	cmd := &cobra.Command{
		Use:   "inject --checkpoint DIR --target weights|activations --out DIR2",
		Short: "Run a fault-injection campaign (resumable, shardable) and summarise it",
		Long: `inject runs a statistical fault-injection campaign on a checkpoint: it plans the
faults (exhaustive, uniform or SFI with Leveugle sample sizes), runs each on the first
--images test images against the golden run, and streams DIR2/faults.jsonl (the
replayable fault list with outcomes) and DIR2/summary.json. Started again with the
same arguments, it continues where it stopped.`,
		Example: `  faultline inject --checkpoint runs/lenet5 --target weights --sampler uniform --faults 10000 --images 100 --out runs/fi
  faultline inject --checkpoint runs/lenet5 --target activations --site mac --sampler sfi --margin 0.01 --confidence 0.99 --out runs/sfi
  faultline inject --checkpoint runs/lenet5 --faults-file runs/fi/faults.jsonl --out runs/replay`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Checkpoint == "" {
				return fmt.Errorf("inject: --checkpoint DIR is required")
			}
			dev, err := torch.ParseDevice(device)
			if err != nil {
				return err
			}
			o.Device = dev
			if ofile == "" {
				switch target {
				case "weights", "weight":
					o.Space.Target = fault.Weight
				case "activations", "activation":
					o.Space.Target = fault.Activation
					o.Space.Point = fault.Point(site)
				default:
					return fmt.Errorf("inject: --target %q: want weights or activations", target)
				}
				if cmd.Flags().Changed("site") && o.Space.Target != fault.Activation {
					return fmt.Errorf("inject: --site is for --target activations")
				}
				if layers != "" {
					o.Space.Layers = strings.Split(layers, ",")
				}
				if o.Space.Bits, err = parseBits(bits); err != nil {
					return fmt.Errorf("inject: %w", err)
				}
				o.Space.Kind = fault.Kind(kind)
				if o.Space.Multi < 1 {
					return fmt.Errorf("inject: --multi %d: want at least 1 bit per fault", o.Space.Multi)
				}
				o.Plan.Sampler = fault.Sampler(sampler)
				o.Plan.Strat = fault.Stratification(strata)
				if o.Plan.Sampler == fault.SFI && !cmd.Flags().Changed("margin") {
					return fmt.Errorf("inject: --sampler sfi needs --margin (and --confidence)")
				}
			}
			o.FaultsFile = ofile
			if o.Shard, o.Shards, err = shardFrom(shard, shards); err != nil {
				return err
			}
			var bar *progress.Bar
			o.OnPlan = func(h fault.Header) { describePlan(a, h) }
			o.OnProgress = func(done, total int64, fps float64) {
				if bar == nil {
					bar = progress.New(a.stderr, a.tty, a.quiet, "inject", int(total), "faults")
				}
				bar.Update(int(done), fmt.Sprintf("%.0f faults/s", fps))
			}
			s, err := fault.RunCampaign(cmd.Context(), o)
			if bar != nil {
				bar.Done()
			}
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(a.stdout).Encode(s)
			}
			printSummary(a, s, o.Out)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Checkpoint, "checkpoint", "", "checkpoint directory (from train or import)")
	f.StringVar(&target, "target", "weights", "weights or activations")
	f.StringVar(&site, "site", "output", "activation site: output (a layer's stored output), input (its stored input) or mac (one MAC operand of one neuron)")
	f.StringVar(&layers, "layers", "", "comma-separated layer names (default: all conv and linear layers)")
	f.StringVar(&bits, "bits", "0-31", "bit positions: a list and ranges, e.g. 30,31 or 23-30")
	f.StringVar(&kind, "kind", "bitflip", "bitflip, stuck0, stuck1, random or zero")
	f.IntVar(&o.Space.Multi, "multi", 1, "distinct bits per fault: flipped (bitflip) or forced (stuck0, stuck1)")
	f.BoolVar(&o.Space.Bias, "bias", false, "also inject into the biases (weight faults)")
	f.StringVar(&sampler, "sampler", "uniform", "exhaustive, uniform or sfi")
	f.Int64Var(&o.Plan.Faults, "faults", 1000, "number of faults (uniform sampler)")
	f.Float64Var(&o.Plan.E, "margin", 0.01, "SFI error margin e")
	f.Float64Var(&o.Plan.Confidence, "confidence", 0.99, "SFI confidence (e.g. 0.95, 0.99)")
	f.Float64Var(&o.Plan.P, "p", 0.5, "SFI expected proportion of critical faults")
	f.StringVar(&strata, "strata", "layer", "SFI strata: network, layer or layer-bit")
	f.StringVar(&o.Mode, "mode", "batched", "reference (one fault per forward) or batched (one fault per sample)")
	f.IntVar(&o.Images, "images", 100, "evaluation images: the first N of the test split (0 = all)")
	f.IntVar(&o.ImagesPerFault, "images-per-fault", 0, "images each fault runs on, a window that moves with the fault (0 = all --images)")
	f.Int64Var(&o.Plan.Seed, "seed", 1, "seed: fault i depends only on (seed, i)")
	f.StringVar(&o.Out, "out", "", "output directory (faults.jsonl, summary.json, campaign.json)")
	f.StringVar(&ofile, "faults-file", "", "replay this fault list (JSONL) instead of sampling")
	f.StringVar(&shard, "shard", "", "run slice i of n of the campaign, as i/n (default from SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT or JOB_COMPLETION_INDEX)")
	f.IntVar(&shards, "shards", 0, "number of shards, with JOB_COMPLETION_INDEX (Kubernetes indexed Job)")
	f.IntVar(&o.Block, "block", 8192, "faults per block: the unit of progress, resuming and sharding")
	f.IntVar(&o.BatchSize, "batch", 1024, "fault x image samples per batched forward pass")
	addRuntimeFlags(f, &o.Threads, &device)
	addDataFlags(f, &o.Dataset, &o.DataDir)
	f.BoolVar(&asJSON, "json", false, "print the summary as JSON")
	return cmd
}

// parseBits reads "0-31", "30,31" or "23-30,31". Its errors name the --bits flag;
// the caller prefixes its command.
func parseBits(s string) ([]int, error) {
	var out []int
	seen := map[int]bool{}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, fmt.Errorf("--bits %q: %q is not a bit position", s, part)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("--bits %q: bad range %q", s, part)
			}
		}
		for x := a; x <= b; x++ {
			if x < 0 || x > 31 {
				return nil, fmt.Errorf("--bits %q: bit %d outside 0..31", s, x)
			}
			if !seen[x] {
				seen[x] = true
				out = append(out, x)
			}
		}
	}
	return out, nil
}

// shardFrom reads --shard i/n, else Slurm's array variables, else a Kubernetes
// indexed Job's JOB_COMPLETION_INDEX with --shards n.
func shardFrom(flag string, shards int) (int, int, error) {
	parse := func(i, n, from string) (int, int, error) {
		a, err1 := strconv.Atoi(i)
		b, err2 := strconv.Atoi(n)
		if err1 != nil || err2 != nil || b < 1 || a < 0 || a >= b {
			return 0, 0, fmt.Errorf("inject: shard %s/%s (from %s): want i/n with 0 <= i < n", i, n, from)
		}
		return a, b, nil
	}
	if flag != "" {
		i, n, ok := strings.Cut(flag, "/")
		if !ok {
			return 0, 0, fmt.Errorf("inject: --shard %q: want i/n", flag)
		}
		return parse(i, n, "--shard")
	}
	if id, ok := os.LookupEnv("SLURM_ARRAY_TASK_ID"); ok {
		n := os.Getenv("SLURM_ARRAY_TASK_COUNT")
		if shards > 0 {
			n = strconv.Itoa(shards)
		}
		return parse(id, n, "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT")
	}
	if id, ok := os.LookupEnv("JOB_COMPLETION_INDEX"); ok {
		if shards < 1 {
			return 0, 0, fmt.Errorf("inject: JOB_COMPLETION_INDEX is set: give the number of shards with --shards")
		}
		return parse(id, strconv.Itoa(shards), "JOB_COMPLETION_INDEX and --shards")
	}
	if shards > 1 {
		return 0, 0, fmt.Errorf("inject: --shards %d without --shard i/n, Slurm or JOB_COMPLETION_INDEX", shards)
	}
	return 0, 1, nil
}

// describePlan prints the plan before the campaign runs.
func describePlan(a *app, h fault.Header) {
	if a.quiet {
		return
	}
	w := a.stderr
	fmt.Fprintf(w, "campaign: %s %s, %d faults on %d images (golden accuracy %.2f%%), mode %s, shard %d/%d\n",
		h.Arch, h.Checkpoint, h.Faults, h.Images, 100*h.GoldenAccuracy, h.Mode, h.Shard, h.Shards)
	if p := h.Plan; p != nil {
		fmt.Fprintf(w, "plan: %s sampler over %d faults of %s", p.Sampler, p.Population, p.Space.Target)
		if p.Space.Point != "" {
			fmt.Fprintf(w, " (%s)", p.Space.Point)
		}
		fmt.Fprintln(w)
		if p.Sampler == fault.SFI {
			fmt.Fprintf(w, "SFI (Leveugle): e=%g, confidence %g (t=%.4f), p=%g, %s strata\n", p.E, p.Confidence, p.T, p.P, p.Strat)
			for _, st := range p.Strata {
				name := st.Layer
				if name == "" {
					name = "all layers"
				}
				if st.Bit != nil {
					name += fmt.Sprintf(" bit %d", *st.Bit)
				}
				fmt.Fprintf(w, "  %-28s N=%-12d n=%d\n", name, st.Population, st.N)
			}
		}
	}
}

// printSummary prints a campaign's summary. When the campaign can hold inactive
// faults (every kind but bitflip), its headline rates are labelled as over the
// active faults and followed by the inactive counts and the rates over all.
func printSummary(a *app, s *fault.Summary, dir string) {
	w := a.stdout
	over := ""
	if s.SummaryAllFaults != nil {
		over = " over active faults"
	}
	fmt.Fprintf(w, "%d faults x %d images: SDC %.4f%%, DUE %.4f%%, VF %.4f%% (95%% CI %.4f..%.4f%%)%s\n",
		s.Faults, s.Images, 100*s.SDCRate, 100*s.DUERate, 100*s.VF, 100*s.VFCI95[0], 100*s.VFCI95[1], over)
	activeFaults := s.Faults
	if all := s.SummaryAllFaults; all != nil {
		activeFaults = all.ActiveFaults
		fmt.Fprintf(w, "inactive (the fault left the value unchanged): %d of %d fault x image pairs, %d of %d faults on all their images\n",
			all.Inactive, s.Pairs, all.InactiveFaults, s.Faults)
		fmt.Fprintf(w, "over all faults: SDC %.4f%%, DUE %.4f%%, VF %.4f%% (95%% CI %.4f..%.4f%%), critical faults %.4f%%\n",
			100*all.SDCRateAll, 100*all.DUERateAll, 100*all.VFAll, 100*all.VFAllCI95[0], 100*all.VFAllCI95[1], 100*all.CriticalFaultRateAll)
	}
	fmt.Fprintf(w, "critical faults (an SDC or DUE on any of their images): %d of %d, %.4f%% (95%% CI %.4f..%.4f%%)%s\n",
		s.CriticalFaults, activeFaults, 100*s.CriticalFaultRate, 100*s.CriticalFaultRateCI[0], 100*s.CriticalFaultRateCI[1], over)
	fmt.Fprintf(w, "accuracy %.2f%% golden, %.2f%% under faults; %.0f faults/s (injection alone)\n",
		100*s.GoldenAccuracy, 100*s.FaultyAccuracy, s.Timing.FaultsPerSecond)
	fmt.Fprintf(w, "per layer%s:\n", over)
	for _, b := range s.PerLayer {
		fmt.Fprintf(w, "  %-24s %8d faults  VF %.4f%%%s\n", b.Key, b.Faults, 100*b.VF, inactiveNote(b))
	}
	if len(s.PerBit) > 0 {
		fmt.Fprintf(w, "per bit (VF%s):\n", over)
		for _, b := range s.PerBit {
			if b.VF > 0 {
				fmt.Fprintf(w, "  bit %-3s %8d faults  VF %.4f%%  critical faults %.4f%%%s\n", b.Key, b.Faults, 100*b.VF, 100*b.CriticalFaultRate, inactiveNote(b))
			}
		}
	}
	fmt.Fprintf(w, "wrote %s/faults.jsonl and %s/summary.json\n", dir, dir)
}

// inactiveNote is a breakdown's inactive share, for campaigns that count it.
func inactiveNote(b fault.Breakdown) string {
	if b.AllFaults == nil || b.Pairs == 0 {
		return ""
	}
	return fmt.Sprintf("  (%.1f%% of pairs inactive; VF over all %.4f%%)", 100*float64(b.Inactive)/float64(b.Pairs), 100*b.VFAll)
}

func (a *app) mergeCommand() *cobra.Command {
	var (
		out    string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "merge --out DIR SHARD_DIR...",
		Short: "Combine the shard directories of a campaign into one result",
		Long: `merge combines the outputs of a campaign run as shards (inject --shard i/n) into
the result the unsharded campaign writes: the same faults.jsonl and summary.json
(timings aside).`,
		Example: "  faultline merge --out runs/fi runs/fi-0 runs/fi-1 runs/fi-2",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(_ *cobra.Command, dirs []string) error {
			if out == "" {
				return fmt.Errorf("merge: --out DIR is required")
			}
			s, err := fault.Merge(out, dirs)
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(a.stdout).Encode(s)
			}
			printSummary(a, s, out)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "output directory")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the merged summary as JSON")
	return cmd
}
