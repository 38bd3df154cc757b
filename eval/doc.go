// Package eval measures a checkpoint's vulnerability with DeepVigor+ (package
// eval/deepvigor) and checks it: it loads the checkpoint and its images, runs the
// analysis, validates it against statistical fault injection with the fault
// engine, counts what statistical fault injection would have cost, and writes
// vf.json and vf.csv.
package eval
