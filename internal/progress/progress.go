// Package progress renders the progress of long-running work: a one-line bar with
// rate and ETA, redrawn in place on a terminal, or plain periodic log lines when the
// output is a file or a pipe. Library loops report through hooks; the CLI plugs a
// Bar into them, so no engine package imports this one.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// IsTerminal reports whether f is a character device (an interactive terminal).
func IsTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// Bar shows the progress of one task of known size.
type Bar struct {
	w        io.Writer
	tty      bool
	quiet    bool
	label    string
	total    int
	unit     string
	start    time.Time
	lastDraw time.Time
	lastLine int // last percentage decile logged (plain mode)
	lastDone int // done at the last plain line
	replayed int // units taken over from an earlier run (Replayed)
	now      func() time.Time
}

// New starts a bar of total units (e.g. "img"). tty selects in-place redraws;
// quiet prints nothing.
func New(w io.Writer, tty, quiet bool, label string, total int, unit string) *Bar {
	b := &Bar{w: w, tty: tty, quiet: quiet, label: label, total: total, unit: unit, now: time.Now, lastLine: -1}
	b.start = b.now()
	b.lastDraw = b.start
	return b
}

// Update draws the bar at done units with an extra status text (e.g. the loss).
// On a terminal it redraws at most 10 times a second; otherwise it prints a line
// at every 10% step, and at least every PlainEvery while done advances.
func (b *Bar) Update(done int, status string) {
	if b.quiet || b.total <= 0 {
		return
	}
	now := b.now()
	frac := float64(done) / float64(b.total)
	if frac > 1 {
		frac = 1
	}
	if b.tty {
		if done < b.total && now.Sub(b.lastDraw) < 100*time.Millisecond {
			return
		}
		b.lastDraw = now
		const width = 24
		n := int(frac * width)
		fmt.Fprintf(b.w, "\r\033[K%s [%s%s] %d/%d %s", b.label, strings.Repeat("=", n), strings.Repeat(" ", width-n), done, b.total, b.stats(done, now, status))
		return
	}
	decile := int(frac * 10)
	step := decile > b.lastLine && decile < 10 && decile > 0
	// Long work also logs a line a minute between the 10% steps.
	slow := done > b.lastDone && done < b.total && now.Sub(b.lastDraw) >= PlainEvery
	if step || slow {
		b.lastLine = max(b.lastLine, decile)
		b.lastDraw, b.lastDone = now, done
		fmt.Fprintf(b.w, "%s %3.0f%% %d/%d %s\n", b.label, frac*100, done, b.total, b.stats(done, now, status))
	}
}

// SetTotal changes the size of the task (work found on the way, like the
// channels a precision target adds).
func (b *Bar) SetTotal(total int) { b.total = total }

// Replayed tells the bar that n of the units it counts were taken over from an
// earlier run without work (a resumed run's journal): the rate and ETA leave
// them out, so a resumed run does not show the replay's speed as its own. Call
// it before or after the Update that counts them.
func (b *Bar) Replayed(n int) { b.replayed += n }

// PlainEvery is the longest gap between two plain progress lines while work
// advances.
const PlainEvery = time.Minute

func (b *Bar) stats(done int, now time.Time, status string) string {
	el := now.Sub(b.start).Seconds()
	rate := 0.0
	if el > 0 {
		rate = float64(max(done-b.replayed, 0)) / el
	}
	eta := "?"
	if rate > 0 {
		eta = FormatDuration(time.Duration(float64(b.total-done) / rate * float64(time.Second)))
	}
	r := fmt.Sprintf("%.0f", rate)
	if rate < 10 {
		r = fmt.Sprintf("%.2g", rate) // 2.6, 0.31: slow work still shows its rate
	}
	s := fmt.Sprintf("%s %s/s ETA %s", r, b.unit, eta)
	if status != "" {
		s = status + " " + s
	}
	return s
}

// Done ends the bar's line (on a terminal) so the next output starts cleanly.
func (b *Bar) Done() {
	if b.tty && !b.quiet {
		fmt.Fprint(b.w, "\r\033[K")
	}
}

// FormatDuration renders d compactly: "42s", "3m07s", "1h02m".
func FormatDuration(d time.Duration) string {
	s := int(d.Round(time.Second).Seconds())
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	}
	return fmt.Sprintf("%dh%02dm", s/3600, (s%3600)/60)
}
