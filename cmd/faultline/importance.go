package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strconv"

	"github.com/faultline/faultline/importance"
	"github.com/faultline/faultline/internal/torch"
	"github.com/spf13/cobra"
)

func (a *app) importanceCommand() *cobra.Command {
	var (
		o                           importance.Options
		target, mode, score, device string
		asJSON                      bool
	)
	cmd := &cobra.Command{
		Use:   "importance --checkpoint DIR --out DIR2",
		Short: "Importance sampling of critical faults (ISimDL) with unbiased VF estimates and a critical-neuron ranking",
		Long: `importance draws --budget single-bit faults from a proposal that puts them where
they matter (gradient sensitivity of each weight or activation, times the exact
effect of flipping each bit of its stored value, mixed with --alpha of uniform),
and --budget more uniformly, runs both on the evaluation set (the first --images
test images, class by class in equal shares) and compares them.

A fault is critical when it lowers the evaluation set's accuracy by at least
--tau relative to the golden accuracy. --mode search draws without replacement
(to find distinct critical faults); --mode estimate draws with replacement, and
its importance-weighted VF (share of fault x image pairs whose prediction
changes) is unbiased, with a 95% interval.

Writes DIR2/summary.json (kind faultline.importance: precision@k, injections to
find --m critical faults, VF estimates with intervals, effective sample size, per
layer and bit class, the selective protection curve), DIR2/critical.jsonl
(critical faults, replayable with inject --faults), DIR2/draws.jsonl (every
drawn fault with q, p and outcome) and the ranking of output channels and units
by criticality (DIR2/ranking.json, DIR2/ranking.csv).`,
		Example: `  faultline importance --checkpoint runs/lenet5 --target weights --budget 1000 --out runs/is-w
  faultline importance --checkpoint runs/lenet5 --target activations --mode estimate --budget 5000 --out runs/is-a`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Checkpoint == "" {
				return fmt.Errorf("importance: --checkpoint DIR is required")
			}
			if o.Out == "" {
				return fmt.Errorf("importance: --out DIR is required")
			}
			var err error
			if o.Target, err = importance.ParseTarget(target); err != nil {
				return err
			}
			if o.Mode, err = importance.ParseMode(mode); err != nil {
				return err
			}
			if o.Score, err = importance.ParseScore(score); err != nil {
				return err
			}
			if o.Device, err = torch.ParseDevice(device); err != nil {
				return err
			}
			var finish func()
			o.OnProgress, o.OnReplay, finish = a.phaseBars(func(string) string { return "faults" })
			o.OnResume = func(n int64) {
				if !a.quiet {
					fmt.Fprintf(a.stderr, "importance: resuming: %d injections recorded in %s are replayed\n", n, filepath.Join(o.Out, importance.JournalFile))
				}
			}
			s, err := importance.Run(cmd.Context(), o)
			finish()
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(a.stdout).Encode(s)
			}
			printImportance(a, s, o.Out)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Checkpoint, "checkpoint", "", "checkpoint directory (from train or import)")
	f.StringVar(&target, "target", "weights", "weights or activations")
	f.IntVar(&o.Budget, "budget", 1000, "injections for importance sampling, and as many for the uniform comparison")
	f.StringVar(&mode, "mode", "search", "search (without replacement) or estimate (with replacement, unbiased)")
	f.Float64Var(&o.Tau, "tau", 0.05, "relative accuracy drop that makes a fault critical, in (0, 1]")
	f.IntVar(&o.Images, "images", 1000, "evaluation images: the first N of the test split, class-stratified")
	f.Float64Var(&o.Alpha, "alpha", 0.1, "uniform share of the proposal, in [0, 1] (1 = uniform)")
	f.StringVar(&score, "score", "fisher", "element sensitivity: fisher (RMS loss gradient) or isimdl (the authors')")
	f.Float64Var(&o.ScoreFloor, "score-floor", 1, "add this many times its layer's mean score to every element's score (>= 0; 0 = none)")
	f.Float64Var(&o.Cap, "cap", importance.DefaultCap, "cap on a bit flip's effect |flip(x) - x| in the bit weighting")
	f.IntVar(&o.SensBatches, "sens-batches", 4, "training batches for the sensitivities")
	f.IntVar(&o.SensBatchSize, "sens-batch-size", 128, "images per sensitivity batch")
	f.IntVar(&o.M, "m", 50, "critical faults to find (injections_to_m_critical)")
	f.Int64Var(&o.Seed, "seed", 1, "sampling seed")
	f.IntVar(&o.BatchSize, "batch", 1024, "fault-injection samples per forward pass")
	f.BoolVar(&o.Stratify, "stratify", false, "estimate mode: stratify by layer x bit class")
	f.StringVar((*string)(&o.Allocation), "allocation", "proposal", "stratified budget: proposal (in proportion to q's mass) or neyman (pilot, then share x sd)")
	f.StringVar(&o.CompareRanking, "compare-ranking", "", "another run's ranking.json: report Kendall's tau between the two rankings")
	f.StringVar(&o.Out, "out", "", "output directory")
	addRuntimeFlags(f, &o.Threads, &device)
	addDataFlags(f, &o.Dataset, &o.DataDir)
	f.BoolVar(&asJSON, "json", false, "print summary.json to stdout instead of the table")
	return cmd
}

// printImportance prints the comparison of importance and uniform sampling.
func printImportance(a *app, s *importance.Summary, dir string) {
	w := a.stdout
	fmt.Fprintf(w, "importance: %s %s, %s, %s mode, budget %d, %d images (golden accuracy %.2f%%), tau %g, alpha %g, %s score, seed %d\n",
		s.Arch, s.Checkpoint, s.Target, s.Mode, s.Budget, s.Images, 100*s.GoldenAccuracy, s.Tau, s.Alpha, s.Score, s.Seed)
	var ks []int
	for k := range s.PrecisionAtK["is"] {
		n, _ := strconv.Atoi(k)
		ks = append(ks, n)
	}
	sort.Ints(ks)
	for _, k := range ks {
		key := strconv.Itoa(k)
		is, u := s.PrecisionAtK["is"][key], s.PrecisionAtK["uniform"][key]
		ratio := "-"
		if u > 0 {
			ratio = fmt.Sprintf("%.1fx", is/u)
		}
		fmt.Fprintf(w, "precision@%-6d IS %.3f  uniform %.3f  (%s)\n", k, is, u, ratio)
	}
	inj := func(p *int) string {
		if p == nil {
			return "not found"
		}
		return strconv.Itoa(*p)
	}
	fmt.Fprintf(w, "injections to %d critical faults: IS %s, uniform %s\n", s.M, inj(s.InjectionsToM["is"]), inj(s.InjectionsToM["uniform"]))
	vr := "-"
	if s.VarianceRatio != nil {
		vr = fmt.Sprintf("%.1fx", *s.VarianceRatio)
	}
	fmt.Fprintf(w, "VF: IS %.4f%% [%.4f, %.4f], uniform %.4f%% [%.4f, %.4f]; ESS %.0f; variance per injection uniform/IS %s\n",
		100*s.VFIS, 100*s.VFISCI[0], 100*s.VFISCI[1], 100*s.VFUniform, 100*s.VFUniformCI[0], 100*s.VFUniformCI[1], s.ESS, vr)
	if n := len(s.Protection); n > 0 {
		p := s.Protection[n-1]
		fmt.Fprintf(w, "protecting %.0f%% of the elements: VF %.4f%% by the ranking, %.4f%% by a random one (unprotected %.4f%%)\n",
			100*p.Share, 100*p.Ranked, 100*p.Random, 100*s.Protection[0].Ranked)
	}
	if sh := s.SplitHalf; sh != nil {
		fmt.Fprintf(w, "ranking, even vs odd IS draws (%d each): Kendall tau %.3f over %d units\n", sh.Draws, sh.KendallTau, sh.Units)
	}
	if st := s.Stability; st != nil {
		fmt.Fprintf(w, "ranking vs %s: Kendall tau %.3f over %d units\n", st.Other, st.KendallTau, st.Units)
	}
	fmt.Fprintf(w, "wrote %s, %s, %s, %s\n", filepath.Join(dir, importance.SummaryFile), filepath.Join(dir, importance.CriticalFile),
		filepath.Join(dir, importance.RankingCSV), filepath.Join(dir, importance.DrawsFile))
}
