// Command faultline measures and improves the resilience of neural networks to
// hardware faults. Run `faultline --help` for the commands.
package main

import "os"

func main() { os.Exit(run(os.Args[1:])) }
