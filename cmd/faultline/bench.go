package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/faultline/faultline/fault"
	"github.com/faultline/faultline/internal/torch"
	"github.com/spf13/cobra"
)

func (a *app) benchCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure the speed of faultline's engines",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(a.benchFICommand())
	return cmd
}

func (a *app) benchFICommand() *cobra.Command {
	var (
		o      fault.BenchOptions
		device string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "fi [--checkpoint DIR]...",
		Short: "Measure fault-injection faults/s, reference vs batched, on trained checkpoints",
		Long: `fi measures, on each checkpoint and for weight faults and activation faults (at
layer outputs), the faults/s of the reference mode (one fault per forward pass) and
of the batched mode (one fault per sample) on the same uniformly sampled fault list,
each fault on one of the first --images test images (fault i on image i mod
--images). The reference mode runs the first --reference-faults of the list, the
batched mode all --faults.

It also compares a batch carrying one fault per sample with the plain golden forward
of a batch of the same size (--batch images, no hook): the overhead is the batched
mode's seconds per fault-image sample over the golden forward's seconds per image,
minus one.

Only injection is timed. An untimed warm-up first runs a few faults of every layer
in both modes (and one golden pass), so the one-time caches (the golden prefix and
lead-layer outputs of each stage, the output-fault footprints) are built before
timing. --agree N first runs N faults in both modes and counts the faults whose
outcome (SDC, Masked, DUE, Top5) differs.`,
		Example: `  faultline bench fi
  faultline bench fi --checkpoint runs/lenet5 --agree 5000
  faultline bench fi --checkpoint runs/lenet5,runs/vgg11 --faults 10000 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dev, err := torch.ParseDevice(device)
			if err != nil {
				return err
			}
			o.Device = dev
			if !a.quiet {
				o.OnPhase = func(ckpt, target, phase string) {
					if target != "" {
						ckpt += " " + target
					}
					fmt.Fprintf(a.stderr, "bench: %s: %s\n", ckpt, phase)
				}
			}
			r, err := fault.Bench(cmd.Context(), o)
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(a.stdout).Encode(r)
			}
			printBench(a.stdout, r)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&o.Checkpoints, "checkpoint", nil, "checkpoint directory, repeatable or comma-separated (default: those of runs/lenet5 and runs/vgg11 that exist)")
	f.IntVar(&o.Images, "images", 1000, "evaluation images: the first N of the test split; fault i runs on image i mod N")
	f.Int64Var(&o.Faults, "faults", 40000, "faults timed in batched mode")
	f.Int64Var(&o.ReferenceFaults, "reference-faults", 500, "faults timed in reference mode (the first of the same list)")
	f.Int64Var(&o.Agree, "agree", 0, "first run N faults in both modes and count differing outcomes (0 = off)")
	f.IntVar(&o.BatchSize, "batch", 1024, "samples per batched forward pass (and images per golden batch)")
	f.IntVar(&o.Block, "block", 8192, "faults per injector call, as a campaign's --block")
	f.IntVar(&o.Warmup, "warmup", 16, "faults per layer of the untimed warm-up")
	f.IntVar(&o.GoldenImages, "golden-images", 10000, "images the golden forward is timed on")
	f.Int64Var(&o.Seed, "seed", 1, "fault plan seed")
	addRuntimeFlags(f, &o.Threads, &device)
	addDataFlags(f, nil, &o.DataDir)
	f.BoolVar(&asJSON, "json", false, "print the results as JSON")
	return cmd
}

// printBench prints the faults/s table, the one-fault-per-sample overhead and the
// agreement counts.
func printBench(w io.Writer, r *fault.BenchResult) {
	fmt.Fprintf(w, "fault injection: %d test images (fault i on image i mod %d), batch %d, %d threads, %s, BLAS %s, seed %d\n",
		r.Images, r.Images, r.BatchSize, r.Threads, r.Device, r.BLAS, r.Seed)
	fmt.Fprintf(w, "timed: injection calls only, after an untimed warm-up (%d faults per layer in both modes, one golden pass) that builds the prefix/lead caches and footprints\n\n", r.Warmup)
	const row = "%-10s %-12s %18s %16s %18s\n"
	fmt.Fprintf(w, row, "model", "target", "reference faults/s", "batched faults/s", "batched/reference")
	for _, x := range r.Rows {
		fmt.Fprintf(w, row, x.Arch, x.Target, fmt.Sprintf("%.1f", x.Reference.FaultsPerSecond),
			fmt.Sprintf("%.1f", x.Batched.FaultsPerSecond), fmt.Sprintf("%.1fx", x.Speedup))
	}
	fmt.Fprintf(w, "(reference: %d faults, batched: %d faults, the same uniformly sampled list)\n\n", r.ReferenceFaults, r.Faults)
	fmt.Fprintf(w, "one fault per sample vs golden batch (batch %d): overhead = batched seconds per fault-image sample / golden forward seconds per image - 1\n", r.BatchSize)
	for _, row := range r.Rows {
		more := "more"
		if row.SampleOverhead < 0 {
			more = "less"
		}
		fmt.Fprintf(w, "  %s %s: %.1f us/sample batched vs %.1f us/image golden: one-fault-per-sample batch costs %.1f%% %s than the golden batch\n",
			row.Arch, row.Target, 1e6*row.Batched.SecondsPerSample, 1e6*row.Golden.SecondsPerSample, 100*abs(row.SampleOverhead), more)
	}
	if r.Agree > 0 {
		fmt.Fprintf(w, "\nagreement (the first %d faults in both modes; a fault differs when its SDC, Masked, DUE or Top5 count differs):\n", r.Agree)
		for _, row := range r.Rows {
			g := row.Agreement
			if g == nil {
				continue
			}
			fmt.Fprintf(w, "  %s %s: %d of %d faults differ (SDC %d, Masked %d, DUE %d, Top5 %d); critical: %d reference, %d batched\n",
				row.Arch, row.Target, g.Differ, g.Faults, g.SDC, g.Masked, g.DUE, g.Top5, g.ReferenceCritical, g.BatchedCritical)
			for _, d := range g.Examples {
				fmt.Fprintf(w, "    fault %d %s %s%v bits %v image %v: reference %+v, batched %+v\n", d.Fault.ID, d.Fault.Layer, d.Fault.Param, d.Fault.Index, d.Fault.Bits, d.Fault.Images[0],
					outcomeCounts(d.Reference), outcomeCounts(d.Batched))
			}
		}
	}
}

func outcomeCounts(o fault.Outcome) string {
	return fmt.Sprintf("SDC %d Masked %d DUE %d Top5 %d", o.SDC, o.Masked, o.DUE, o.Top5)
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
