package main

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/faultline/faultline/report"
	"github.com/spf13/cobra"
)

func (a *app) reportCommand() *cobra.Command {
	var (
		in     []string
		out    string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "report --in DIR [--in DIR2 ...] --out report.html",
		Short: "Render the JSON results under directories as one self-contained HTML report",
		Long: `report walks each --in directory recursively, reads every faultline result file
(*.json, by its kind and schema_version: vf, ber_curve, fault_campaign, importance,
ranking, harden_report, checkpoint) and writes one self-contained HTML file (no
network, scripts or fonts) with hand-drawn SVG figures: per-layer LVF bars, CVF heat
maps, accuracy against bit error rate with percentile bands, precision@k of
importance sampling against uniform, SDC per bit position, the critical-neuron list,
the before/after hardening table, and the configuration and versions behind each.
Sections whose inputs are absent are left out; files of unknown kinds are listed and
skipped.`,
		Example: `  faultline report --in runs/demo --out runs/demo/report.html
  faultline report --in runs/lenet5-hard --in runs/fi --out /tmp/report.html --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(in) == 0 {
				return fmt.Errorf("report: --in DIR is required")
			}
			if out == "" {
				return fmt.Errorf("report: --out FILE is required")
			}
			r, err := report.Generate(in, out)
			if err != nil {
				return err
			}
			sum := r.Summarize(out)
			if asJSON {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				enc.SetEscapeHTML(false)
				return enc.Encode(sum)
			}
			if !a.quiet {
				for _, in := range sum.Inputs {
					if !in.Used && strings.HasPrefix(in.Note, "skipped") {
						fmt.Fprintf(a.stderr, "report: %s: %s\n", in.Path, in.Note)
					}
				}
			}
			used := 0
			for _, in := range sum.Inputs {
				if in.Used {
					used++
				}
			}
			fmt.Fprintf(a.stdout, "wrote %s: %d figures, %d tables from %d result files\n", out, len(sum.Figures), len(sum.Tables), used)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringArrayVar(&in, "in", nil, "directory to read result JSON from, recursively (repeatable)")
	fs.StringVar(&out, "out", "", "HTML file to write")
	fs.BoolVar(&asJSON, "json", false, "print a JSON summary (output path, figures, inputs used)")
	return cmd
}
