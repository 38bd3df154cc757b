package journal

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type header struct {
	Kind string `json:"kind"`
	Seed int    `json:"seed"`
}

type rec struct {
	N int `json:"n"`
}

func TestJournal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.jsonl")
	j, err := Open(path, "test", header{"k", 1}, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(j.Records()) != 0 {
		t.Fatalf("new journal has records %q", j.Records())
	}
	for n := range 3 {
		if err := j.Append(rec{n}); err != nil {
			t.Fatal(err)
		}
	}
	// A second run into the same directory while this one is open: refused.
	if _, err := Open(path, "test", header{"k", 1}, false); err == nil || !strings.Contains(err.Error(), "another run is writing into") {
		t.Errorf("second open of a journal in use: %v", err)
	}
	j.Close(false)
	for _, c := range []struct {
		name, tail string // appended to the three records
		want       int    // records kept
	}{
		{"complete", "", 3},
		{"cut line", `{"n":`, 3},
		{"complete JSON without its newline", `{"n":3}`, 3},
		{"garbage line", "x\n{\"n\":4}\n", 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "j.jsonl")
			b, _ := os.ReadFile(path)
			if err := os.WriteFile(p, append(b, c.tail...), 0o644); err != nil {
				t.Fatal(err)
			}
			j, err := Open(p, "test", header{"k", 1}, false)
			if err != nil {
				t.Fatal(err)
			}
			if len(j.Records()) != c.want || string(j.Records()[2]) != `{"n":2}` {
				t.Errorf("records %q, want %d", j.Records(), c.want)
			}
			// The cut tail is gone from the file: appending continues cleanly.
			if err := j.Append(rec{9}); err != nil {
				t.Fatal(err)
			}
			j.Close(false)
			j, err = Open(p, "test", header{"k", 1}, false)
			if err != nil {
				t.Fatal(err)
			}
			if n := len(j.Records()); n != c.want+1 || string(j.Records()[n-1]) != `{"n":9}` {
				t.Errorf("after appending: records %q", j.Records())
			}
			if err := j.Close(true); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(p); !os.IsNotExist(err) {
				t.Errorf("Close(true) left the file: %v", err)
			}
		})
	}
	if _, err := Open(path, "test", header{"k", 2}, false); err == nil || !strings.Contains(err.Error(), "seed: 1 before, 2 now") {
		t.Errorf("another header: %v, want the seed named", err)
	}
	// replace: another run's journal is started over.
	j, err = Open(path, "test", header{"k", 2}, true)
	if err != nil || len(j.Records()) != 0 {
		t.Fatalf("replace: %v, records %q", err, j.Records())
	}
	j.Close(false)
	if j, err = Open(path, "test", header{"k", 2}, false); err != nil || len(j.Records()) != 0 {
		t.Fatalf("after replacing: %v", err)
	}
	j.Close(false)
	if err := os.WriteFile(path, []byte(`{"kind":"k"`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path, "test", header{"k", 1}, false); err == nil || !strings.Contains(err.Error(), "no complete header") {
		t.Errorf("cut header: %v", err)
	}
}
