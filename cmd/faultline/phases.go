package main

import "github.com/faultline/faultline/internal/progress"

// phaseBars returns a progress callback that keeps one bar per phase (unit
// names what is counted in it) and a function that finishes every bar.
func (a *app) phaseBars(unit func(phase string) string) (update func(phase string, done, total int64), done func()) {
	bars := map[string]*progress.Bar{}
	update = func(phase string, d, total int64) {
		b := bars[phase]
		if b == nil {
			b = progress.New(a.stderr, a.tty, a.quiet, phase, int(total), unit(phase))
			bars[phase] = b
		}
		b.Update(int(d), "")
	}
	done = func() {
		for _, b := range bars {
			b.Done()
		}
	}
	return update, done
}
