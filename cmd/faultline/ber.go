package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/faultline/faultline/fault"
	"github.com/faultline/faultline/internal/progress"
	"github.com/faultline/faultline/internal/torch"
	"github.com/spf13/cobra"
)

// defaultBERs are the bit error rates of `faultline ber` without --ber or --count.
const defaultBERs = "1e-7,1e-6,1e-5,1e-4"

func (a *app) berCommand() *cobra.Command {
	var (
		o                           fault.BERRunOptions
		rates, layers, bits, device string
		asJSON                      bool
	)
	cmd := &cobra.Command{
		Use:   "ber --checkpoint DIR --out DIR2 [--ber RATES | --count N]",
		Short: "Measure accuracy under many concurrent weight bit flips (a bit-error-rate curve)",
		Long: `ber measures how a checkpoint degrades when many weight bits are wrong at once, as
in a memory with a raw bit error rate. For each rate of --ber, each of --trials trials
flips every weight bit of the selected layers independently with that probability
(or, with --count N, exactly N distinct bits), evaluates the first --images test
images with all the flips in place, and restores the weights bit for bit.

A trial's flips depend only on (--seed, trial): the flips at a lower rate are a subset
of those at a higher one, so the curve is smooth with few trials. The curve (every
trial, and per rate the mean flips, the accuracy with its confidence interval, the
accuracy drop, SDC and DUE rates) goes to DIR2/ber.json (kind faultline.ber_curve);
a table is printed.`,
		Example: `  faultline ber --checkpoint runs/lenet5 --out runs/ber
  faultline ber --checkpoint runs/lenet5 --ber 1e-6,1e-5,1e-4,1e-3 --trials 20 --layers conv1,conv2 --out runs/ber-conv
  faultline ber --checkpoint runs/lenet5 --count 100 --bits 23-30 --keep-flips --out runs/ber-exp`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Checkpoint == "" {
				return fmt.Errorf("ber: --checkpoint DIR is required")
			}
			if o.Out == "" {
				return fmt.Errorf("ber: --out DIR is required")
			}
			var err error
			switch fs := cmd.Flags(); {
			case fs.Changed("ber") && fs.Changed("count"):
				return fmt.Errorf("ber: give --ber or --count, not both")
			case fs.Changed("count"):
				if o.BER.Count < 1 {
					return fmt.Errorf("ber: --count %d: want at least 1 flipped bit per trial", o.BER.Count)
				}
			default:
				if o.BER.BERs, err = parseRates(rates); err != nil {
					return fmt.Errorf("ber: %w", err)
				}
			}
			if o.BER.Trials < 1 {
				return fmt.Errorf("ber: --trials %d: want at least 1", o.BER.Trials)
			}
			if !(o.BER.Confidence > 0 && o.BER.Confidence < 1) {
				return fmt.Errorf("ber: --confidence %g: want a fraction in (0, 1), e.g. 0.95", o.BER.Confidence)
			}
			if layers != "" {
				o.BER.Space.Layers = strings.Split(layers, ",")
			}
			if o.BER.Space.Bits, err = parseBits(bits); err != nil {
				return fmt.Errorf("ber: %w", err)
			}
			if o.Device, err = torch.ParseDevice(device); err != nil {
				return err
			}
			var bar *progress.Bar
			o.OnProgress = func(done, total int) {
				if bar == nil {
					bar = progress.New(a.stderr, a.tty, a.quiet, "ber", total, "trials")
				}
				bar.Update(done, "")
			}
			c, err := fault.RunBERCurve(cmd.Context(), o)
			if bar != nil {
				bar.Done()
			}
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(a.stdout).Encode(c)
			}
			printBERCurve(a, c, filepath.Join(o.Out, fault.BERFile))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Checkpoint, "checkpoint", "", "checkpoint directory (from train or import)")
	f.StringVar(&rates, "ber", defaultBERs, "bit error rates, comma-separated fractions in (0, 1] (not with --count)")
	f.IntVar(&o.BER.Count, "count", 0, "flip exactly N distinct bits per trial instead of a rate (not with --ber)")
	f.IntVar(&o.BER.Trials, "trials", 10, "trials per rate (or for --count)")
	f.StringVar(&layers, "layers", "", "comma-separated layer names (default: all conv and linear layers)")
	f.StringVar(&bits, "bits", "0-31", "bit positions that may flip: a list and ranges, e.g. 30,31 or 23-30")
	f.BoolVar(&o.BER.Space.Bias, "bias", false, "also flip bits of the biases")
	f.IntVar(&o.Images, "images", 1000, "evaluation images: the first N of the test split (0 = all)")
	f.IntVar(&o.BatchSize, "batch", 1000, "images per forward pass")
	f.Int64Var(&o.BER.Seed, "seed", 1, "seed: trial t's flips depend only on (seed, t)")
	f.Float64Var(&o.BER.Confidence, "confidence", 0.95, "confidence of the accuracy interval (Student t over trials)")
	f.BoolVar(&o.BER.KeepFlips, "keep-flips", false, "record every trial's flipped bits in ber.json (large at high rates)")
	f.StringVar(&o.Out, "out", "", "output directory (ber.json)")
	addRuntimeFlags(f, &o.Threads, &device)
	addDataFlags(f, &o.Dataset, &o.DataDir)
	f.BoolVar(&asJSON, "json", false, "print the curve as JSON instead of the table")
	return cmd
}

// parseRates reads a comma-separated list of bit error rates such as "1e-7,1e-6".
// Its errors name the --ber flag and the bad value; the caller prefixes its command.
func parseRates(s string) ([]float64, error) {
	var out []float64
	seen := map[float64]bool{}
	for _, part := range strings.Split(s, ",") {
		v := strings.TrimSpace(part)
		if v == "" {
			return nil, fmt.Errorf("--ber %q: empty rate (want e.g. 1e-7,1e-6,1e-5)", s)
		}
		p, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return nil, fmt.Errorf("--ber %q: %q is not a number (want e.g. 1e-7,1e-6,1e-5)", s, v)
		}
		if !(p > 0 && p <= 1) {
			return nil, fmt.Errorf("--ber %q: %s is not a bit error rate: want a fraction in (0, 1], e.g. 1e-6 for one bit in a million", s, v)
		}
		if seen[p] {
			return nil, fmt.Errorf("--ber %q: rate %s given twice", s, v)
		}
		seen[p] = true
		out = append(out, p)
	}
	return out, nil
}

// printBERCurve prints the curve as a table, one line per rate (or the count).
func printBERCurve(a *app, c *fault.BERCurve, path string) {
	w := a.stdout
	fmt.Fprintf(w, "ber: %s %s on %s, %d images, golden accuracy %.2f%%\n", c.Arch, c.Checkpoint, c.Dataset, c.Images, 100*c.GoldenAccuracy)
	nbits := len(c.Space.Bits)
	if nbits == 0 {
		nbits = fault.Float32Bits
	}
	what := "weight"
	if c.Space.Bias {
		what = "weight and bias"
	}
	fmt.Fprintf(w, "%d %s bits (%d positions per value) in %s; %d trials per point, seed %d\n",
		c.Bits, what, nbits, strings.Join(c.Layers, ", "), c.TrialsPerPoint, c.Seed)
	first := "BER"
	if c.Mode == "count" {
		first = "count"
	}
	ci := fmt.Sprintf("%g%% CI", 100*c.Confidence)
	fmt.Fprintf(w, "%-9s %12s %9s  %-17s  %8s %8s %8s %7s\n", first, "mean flips", "accuracy", ci, "drop", "SDC", "DUE", "masked")
	for _, p := range c.Points {
		x := strconv.FormatFloat(p.BER, 'g', -1, 64)
		if c.Mode == "count" {
			x = strconv.Itoa(p.Count)
		}
		fmt.Fprintf(w, "%-9s %12.1f %8.2f%%  [%6.2f, %6.2f]%%  %7.2f%% %7.3f%% %7.3f%% %7s\n", x, p.MeanFlips,
			100*p.Accuracy, 100*p.AccuracyCI[0], 100*p.AccuracyCI[1], 100*p.AccuracyDrop, 100*p.SDCRate, 100*p.DUERate,
			fmt.Sprintf("%d/%d", p.MaskedTrials, p.Trials))
	}
	fmt.Fprintf(w, "%.1f trials/s; wrote %s\n", c.Timing.TrialsPerSecond, path)
}
