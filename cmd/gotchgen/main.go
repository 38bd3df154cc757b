// Command gotchgen adapts gotch v0.8.0 to the installed libtorch (see package
// internal/gotchgen). `make setup` runs it; a module that imports faultline as a
// library runs it the same way:
//
//	go run github.com/faultline/faultline/cmd/gotchgen -out .gotch -workspace .
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/faultline/faultline/internal/gotchgen"
)

func main() {
	out := flag.String("out", ".gotch", "folder to write the adapted gotch into")
	ws := flag.String("workspace", ".", "folder of the main module to write go.work into (empty: none)")
	lt := flag.String("libtorch", "", "unpacked libtorch archive (default: $LIBTORCH, else Debian's libtorch-dev)")
	force := flag.Bool("force", false, "regenerate even when up to date")
	quiet := flag.Bool("quiet", false, "print nothing but errors")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "gotchgen: unexpected arguments %q (use -out DIR)\n", flag.Args())
		os.Exit(2)
	}
	opts := gotchgen.Options{Out: *out, Workspace: *ws, Libtorch: *lt, Force: *force, Log: os.Stderr}
	if *quiet {
		opts.Log = nil
	}
	if _, err := gotchgen.Generate(opts); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
