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
// The README's importance section describes the method, its sources and the
// differences from ISimDL's code.
package importance
