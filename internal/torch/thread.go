package torch

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
)

// job is one piece of work for the torch goroutine.
type job struct {
	fn   func() error
	done chan error
}

var (
	startOnce sync.Once
	jobs      chan job
	torchTID  atomic.Int64 // OS thread id of the torch goroutine
)

// start launches the torch goroutine, locked to its OS thread for the life of the
// process.
func start() {
	jobs = make(chan job)
	worker()
}

// worker starts the goroutine that serves jobs and waits until it is ready. When a
// job ends its goroutine with runtime.Goexit (t.Fatal inside Do, say), the job gets
// an error and a fresh worker on a fresh locked OS thread takes over.
func worker() {
	ready := make(chan struct{})
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		torchTID.Store(int64(syscall.Gettid()))
		close(ready)
		var cur *job
		defer func() {
			if cur != nil {
				torchTID.Store(0)
				worker()
				cur.done <- fmt.Errorf("torch: the work called runtime.Goexit (t.Fatal or t.FailNow inside torch.Do?); it was abandoned")
			}
		}()
		for j := range jobs {
			cur = &j
			err := run(j.fn)
			cur = nil
			j.done <- err
		}
	}()
	<-ready
}

// run calls fn and turns a panic into an error, so a programming error in torch
// code reaches the caller as an error instead of killing the torch goroutine.
func run(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if os.Getenv("FAULTLINE_DEBUG") != "" {
				fmt.Fprintf(os.Stderr, "faultline: panic on the torch thread: %v\n%s", r, debug.Stack())
			}
			err = fmt.Errorf("internal error on the torch thread: %v (set FAULTLINE_DEBUG=1 for a stack trace)", r)
		}
	}()
	return fn()
}

// OnTorchThread reports whether the caller is running on the torch goroutine.
func OnTorchThread() bool {
	tid := torchTID.Load()
	return tid != 0 && int64(syscall.Gettid()) == tid
}

// Do runs fn on the torch goroutine and returns its error. Calls from inside the
// torch goroutine (nested Do) run fn directly. A panic inside fn is returned as an
// error.
func Do(fn func() error) error {
	startOnce.Do(start)
	if OnTorchThread() {
		return run(fn)
	}
	done := make(chan error, 1)
	jobs <- job{fn: fn, done: done}
	return <-done
}

// mustBeOnTorchThread returns an error when called off the torch goroutine; the
// grad-mode helpers use it, since grad mode set on another thread would not apply.
func mustBeOnTorchThread(what string) error {
	if !OnTorchThread() {
		return fmt.Errorf("torch: %s called outside torch.Do (grad mode is per OS thread)", what)
	}
	return nil
}
