// Package eval measures a model's vulnerability with DeepVigor+ (package
// eval/deepvigor) and checks it: it runs the analysis on the model's images,
// validates it against statistical fault injection with the fault engine,
// counts what statistical fault injection would have cost, and writes vf.json
// and vf.csv. RunVF loads a checkpoint and its images; RunVFOn takes a model in
// memory with them (fault.Loaded).
package eval
