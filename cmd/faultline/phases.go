package main

import "github.com/faultline/faultline/internal/progress"

// phaseBars returns a progress callback that keeps one bar per phase (unit
// names what is counted in it), a callback for the units of a phase taken over
// from a journal (left out of the bar's rate, progress.Bar.Replayed) and a
// function that finishes every bar.
func (a *app) phaseBars(unit func(phase string) string) (update func(phase string, done, total int64), replay func(phase string, n int64), done func()) {
	bars := map[string]*progress.Bar{}
	pending := map[string]int{} // replayed before the phase's bar exists
	update = func(phase string, d, total int64) {
		b := bars[phase]
		if b == nil {
			b = progress.New(a.stderr, a.tty, a.quiet, phase, int(total), unit(phase))
			b.Replayed(pending[phase])
			bars[phase] = b
		}
		b.SetTotal(int(total))
		b.Update(int(d), "")
	}
	replay = func(phase string, n int64) {
		if b := bars[phase]; b != nil {
			b.Replayed(int(n))
		} else {
			pending[phase] += int(n)
		}
	}
	done = func() {
		for _, b := range bars {
			b.Done()
		}
	}
	return update, replay, done
}
