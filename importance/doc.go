// Package importance draws faults where they matter. Gradient sensitivities of
// weights and activations, combined with the exact effect of flipping each bit
// of the stored value, give a proposal q over the single-bit fault space; faults
// drawn from q find critical faults with far fewer injections than uniform
// sampling (ISimDL), and, re-weighted by p/q, still give unbiased estimates of the
// vulnerability factor with confidence intervals. The package also ranks neurons
// and channels by estimated criticality: by a lower confidence bound on their
// score (Unit.ScoreLower), so that a unit drawn once or twice does not top the
// ranking on the strength of one lucky draw.
//
// Run reads a checkpoint and its data; RunOn takes a model in memory
// (fault.Loaded) and the training split, and returns the results
// (Result: the summary, the critical faults, the ranking) besides writing them,
// so that a caller such as harden chains it with its own steps in memory.
//
// The README's importance section describes the method, its sources and the
// differences from ISimDL's code.
package importance
