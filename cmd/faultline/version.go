package main

import (
	"encoding/json"
	"fmt"
	"runtime"

	"github.com/faultline/faultline/model"
	"github.com/spf13/cobra"
)

func (a *app) versionCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print faultline's version and the libtorch, BLAS and cores it runs with",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			sw := model.CurrentSoftware()
			if asJSON {
				return json.NewEncoder(a.stdout).Encode(sw)
			}
			fmt.Fprintf(a.stdout, "faultline %s\ngotch     %s\nlibtorch  %s\nBLAS      %s\ncores     %d (runtime.threads 0, the default, uses them all)\ngo        %s\n",
				sw.Faultline, sw.Gotch, sw.Libtorch, sw.BLAS, runtime.NumCPU(), sw.Go)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}
