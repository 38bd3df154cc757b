// Package deepvigor computes DeepVigor+ vulnerability factors of a model's conv
// and linear layers (per neuron, channel, layer and model) semi-analytically:
// every single-bit flip of a target's operands becomes an exact output error, and
// a short search on the real network finds which errors misclassify.
//
// It has two semantics: Exact (true IEEE-754 flips, no padding fault sites,
// eval-mode BatchNorm, per-image error distributions, errors up to the largest
// float32 decided by the network, a search guided by the logits' Jacobian, weight
// faults averaged into one delta or searched along their own error pattern) and
// Reference (the authors' reference implementation, quirks included; the README's
// eval vf section lists them).
package deepvigor
