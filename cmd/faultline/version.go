package main

import (
	"encoding/json"
	"fmt"

	"github.com/faultline/faultline/model"
	"github.com/spf13/cobra"
)

func (a *app) versionCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print faultline's version and the libtorch, BLAS and thread count it runs with",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			sw := model.CurrentSoftware()
			if asJSON {
				return json.NewEncoder(a.stdout).Encode(sw)
			}
			fmt.Fprintf(a.stdout, "faultline %s\ngotch     %s\nlibtorch  %s\nBLAS      %s\nthreads   %d\ngo        %s\n",
				sw.Faultline, sw.Gotch, sw.Libtorch, sw.BLAS, sw.Threads, sw.Go)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return cmd
}
