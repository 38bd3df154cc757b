// Package harden makes a trained model more resilient to bit flips and proves
// it: range restriction (per-layer clamps on layer outputs, profiled on
// training data, Ranger-style), fault-aware fine-tuning with critical faults
// found by importance sampling plus fresh ones, and the same measurements
// (clean accuracy, DeepVigor+ vulnerability factors with the tail check on,
// accuracy under bit error rates) before and after. The README's harden section
// describes the method.
package harden
