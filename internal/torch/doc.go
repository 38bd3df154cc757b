// Package torch is faultline's one door to gotch's risky parts: it runs all libtorch
// work on a single goroutine locked to its OS thread (libtorch's grad mode is
// per thread, and gotch races when tensors are created concurrently), provides a
// no-grad helper that restores the previous state, and error-returning helpers in
// place of gotch's Must* functions, which end the process with log.Fatal.
//
// Library code that touches tensors runs inside Do; parallelism comes from
// libtorch's intra-op threads (SetThreads), not from goroutines.
package torch
