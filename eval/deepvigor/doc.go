// Package deepvigor computes DeepVigor+ vulnerability factors of a model's conv
// and linear layers (per neuron, channel, layer and model) semi-analytically:
// every single-bit flip of a target's operands becomes an exact output error, and
// a short search on the real network finds which errors misclassify.
//
// The algorithm follows faultline's specification (shared/specs/deepvigor.md) with
// two semantics: Exact (true IEEE-754 flips, no padding fault sites, eval-mode
// BatchNorm, bisection over a finer grid of candidate errors, optional tail check)
// and Reference (the authors' reference implementation, quirks included).
package deepvigor
