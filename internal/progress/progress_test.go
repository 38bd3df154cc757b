package progress

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestPlainLinesEveryTenPercent(t *testing.T) {
	var buf bytes.Buffer
	b := New(&buf, false, false, "epoch 1/2", 100, "img")
	clock := b.start
	b.now = func() time.Time { return clock }
	for i := 1; i <= 100; i++ {
		clock = clock.Add(10 * time.Millisecond)
		b.Update(i, "loss 0.5")
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 9 {
		t.Fatalf("%d lines:\n%s", len(lines), buf.String())
	}
	if !strings.Contains(lines[0], "10% 10/100 loss 0.5 100 img/s ETA 1s") {
		t.Errorf("first line %q", lines[0])
	}
}

// Slow work logs a line a minute between the 10% steps, with its rate to two
// digits.
func TestPlainLinesEveryMinuteWhenSlow(t *testing.T) {
	var buf bytes.Buffer
	b := New(&buf, false, false, "validation", 1000, "faults")
	clock := b.start
	b.now = func() time.Time { return clock }
	for i := 1; i <= 50; i++ { // 5% in 5 minutes
		clock = clock.Add(6 * time.Second)
		b.Update(i, "")
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 5 {
		t.Fatalf("%d lines in 5 minutes, want 5:\n%s", len(lines), buf.String())
	}
	if !strings.Contains(lines[0], "1% 10/1000 0.17 faults/s ETA 1h39m") {
		t.Errorf("first line %q", lines[0])
	}
	// No line while nothing advances; the first advance after a stall logs.
	buf.Reset()
	clock = clock.Add(10 * time.Minute)
	b.Update(50, "")
	if buf.Len() != 0 {
		t.Errorf("a line without progress: %q", buf.String())
	}
	b.Update(51, "")
	b.Update(52, "")
	if n := strings.Count(buf.String(), "\n"); n != 1 {
		t.Errorf("%d lines after a stall, want 1: %q", n, buf.String())
	}
}

func TestQuietAndTTY(t *testing.T) {
	var buf bytes.Buffer
	New(&buf, true, true, "x", 10, "f").Update(5, "")
	if buf.Len() != 0 {
		t.Errorf("quiet bar printed %q", buf.String())
	}
	b := New(&buf, true, false, "x", 10, "f")
	b.Update(10, "")
	b.Done()
	if !strings.Contains(buf.String(), "\r\033[Kx [========================] 10/10") {
		t.Errorf("tty bar %q", buf.String())
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{42 * time.Second: "42s", 187 * time.Second: "3m07s", 3720 * time.Second: "1h02m"} {
		if got := FormatDuration(d); got != want {
			t.Errorf("%v: %q, want %q", d, got, want)
		}
	}
}

// A resumed run's replayed units jump ahead at once; the rate and ETA count only
// the units worked for.
func TestReplayedUnitsLeftOutOfTheRate(t *testing.T) {
	var buf bytes.Buffer
	b := New(&buf, false, false, "importance", 1000, "faults")
	clock := b.start
	b.now = func() time.Time { return clock }
	b.Replayed(500)
	b.Update(500, "") // the replay, at once
	for i := 1; i <= 100; i++ {
		clock = clock.Add(time.Second) // then 1 fault/s
		b.Update(500+i, "")
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	last := lines[len(lines)-1]
	if !strings.Contains(last, "60% 600/1000 1 faults/s ETA 6m40s") {
		t.Errorf("last line %q, want the rate of the 100 worked faults (1/s) and 400 s to go\n%s", last, buf.String())
	}
	// Without Replayed the replay would show as 6 faults/s and ETA 1m07s.
}
