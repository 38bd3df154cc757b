// Package train is faultline's training loop: seeded, deterministic mini-batch
// training of a zoo model with SGD (momentum, Nesterov) or Adam, step, cosine and
// one-cycle learning-rate schedules, weight decay, label smoothing, per-epoch
// evaluation and best-checkpoint keeping.
//
// The loop exposes hooks (OnStart, OnStep, OnEpoch, OnEnd, and a forward hook plus
// before/after-step callbacks for fault-aware training); progress bars and logs are
// hooks supplied by the caller, so this package prints nothing.
package train
