package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// TestSameSeedSameBytes runs every command that writes results twice with the same
// seed and thread count, on a small LeNet-5 trained on synthetic data, and requires
// every file of the two output folders to be byte-identical once the "timing"
// objects (and only those) are cut out of the JSON files. Both runs write to the
// same path (the first run's folder is moved aside), so paths recorded in the
// results are equal too.
func TestSameSeedSameBytes(t *testing.T) {
	if testing.Short() {
		t.Skip("trains twice and runs each command twice; skipped in -short mode")
	}
	root := t.TempDir()
	ckpt := filepath.Join(root, "train")
	conf := filepath.Join(root, "harden.yaml")
	yaml := "harden:\n  epochs: 1\n  profile_images: 100\n  pool_budget: 50\n  pool_images: 20\n  vf_ratio: 0.1\n  vf_images: 10\n  ber: [1e-3]\n  ber_trials: 2\n  ber_images: 20\n"
	if err := os.WriteFile(conf, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		args []string
	}{
		// train first: the other commands read its checkpoint
		{"train", []string{"train", "--preset", "lenet5-fashion", "--dataset", "synthetic", "--train-limit", "500",
			"--test-limit", "100", "--epochs", "1", "--seed", "3", "--threads", "1"}},
		{"inject-weights", []string{"inject", "--checkpoint", ckpt, "--target", "weights", "--sampler", "uniform",
			"--faults", "1000", "--images", "50", "--images-per-fault", "5", "--block", "300", "--seed", "7", "--threads", "1"}},
		{"inject-activations", []string{"inject", "--checkpoint", ckpt, "--target", "activations", "--sampler", "uniform",
			"--faults", "500", "--images", "50", "--block", "200", "--seed", "7", "--threads", "1"}},
		{"ber", []string{"ber", "--checkpoint", ckpt, "--count", "4", "--trials", "2", "--layers", "fc1,fc2",
			"--images", "50", "--seed", "5", "--threads", "1"}},
		{"eval-vf", []string{"eval", "vf", "--checkpoint", ckpt, "--images", "10", "--sampling-ratio", "0.1",
			"--validate", "0.2", "--validate-operands", "16", "--seed", "5", "--threads", "1"}},
		{"importance", []string{"importance", "--checkpoint", ckpt, "--budget", "300", "--images", "50",
			"--sens-batches", "1", "--m", "5", "--seed", "3", "--threads", "1"}},
		{"harden", []string{"harden", "--checkpoint", ckpt, "--config", conf, "--seed", "3", "--threads", "1"}},
	} {
		out := filepath.Join(root, c.name)
		if c.name == "train" {
			out = ckpt
		}
		args := append(append([]string{"--quiet"}, c.args...), "--out", out)
		t0 := time.Now()
		if _, errs, code := cli(t, args...); code != 0 {
			t.Fatalf("%s (first run) failed: %s", c.name, errs)
		}
		first := out + ".first"
		if err := os.Rename(out, first); err != nil {
			t.Fatal(err)
		}
		if _, errs, code := cli(t, args...); code != 0 {
			t.Fatalf("%s (second run) failed: %s", c.name, errs)
		}
		files, err := compareTrees(first, out)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		t.Logf("%s: %d files identical apart from timing (two runs, %.1f s): %s", c.name, len(files), time.Since(t0).Seconds(), strings.Join(files, " "))
	}
}

// compareTrees compares every file under a and b (the same names, the same bytes
// once the timing objects of JSON files are cut out) and returns the names.
func compareTrees(a, b string) ([]string, error) {
	names := func(dir string) ([]string, error) {
		var out []string
		err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, err := filepath.Rel(dir, p)
			out = append(out, rel)
			return err
		})
		sort.Strings(out)
		return out, err
	}
	na, err := names(a)
	if err != nil {
		return nil, err
	}
	nb, err := names(b)
	if err != nil {
		return nil, err
	}
	if strings.Join(na, "\n") != strings.Join(nb, "\n") {
		return nil, fmt.Errorf("different files: %v vs %v", na, nb)
	}
	var errs []error
	for _, n := range na {
		x, err := os.ReadFile(filepath.Join(a, n))
		if err != nil {
			return nil, err
		}
		y, err := os.ReadFile(filepath.Join(b, n))
		if err != nil {
			return nil, err
		}
		if ext := filepath.Ext(n); ext == ".json" || ext == ".jsonl" {
			if x, err = withoutTiming(x); err != nil {
				return nil, fmt.Errorf("%s: %w", n, err)
			}
			if y, err = withoutTiming(y); err != nil {
				return nil, fmt.Errorf("%s: %w", n, err)
			}
		}
		if !bytes.Equal(x, y) {
			errs = append(errs, fmt.Errorf("%s differs: %s", n, firstDifference(x, y)))
		}
	}
	return na, errors.Join(errs...)
}

// firstDifference shows where x and y first differ, with some context.
func firstDifference(x, y []byte) string {
	i := 0
	for i < len(x) && i < len(y) && x[i] == y[i] {
		i++
	}
	show := func(b []byte) string {
		lo, hi := max(i-60, 0), min(i+60, len(b))
		return fmt.Sprintf("%q", b[lo:hi])
	}
	return fmt.Sprintf("at byte %d (of %d and %d): %s vs %s", i, len(x), len(y), show(x), show(y))
}

// withoutTiming returns b (a JSON value or a stream of them, such as JSON lines)
// with every member named "timing" whose value is an object cut out, from the end
// of the token before it to the end of the object, and every other byte kept.
func withoutTiming(b []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	type frame struct{ object, wantKey bool }
	var stack []frame
	var cuts [][2]int64
	prevEnd := int64(0)
	for {
		start := prevEnd
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		prevEnd = dec.InputOffset()
		top := len(stack) - 1
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			stack = stack[:top]
			continue
		}
		if top >= 0 && stack[top].object && stack[top].wantKey {
			stack[top].wantKey = false
			if tok == "timing" && dec.More() {
				v, err := dec.Token()
				if err != nil {
					return nil, err
				}
				if v == json.Delim('{') {
					for depth := 1; depth > 0; {
						t, err := dec.Token()
						if err != nil {
							return nil, err
						}
						switch t {
						case json.Delim('{'), json.Delim('['):
							depth++
						case json.Delim('}'), json.Delim(']'):
							depth--
						}
					}
					prevEnd = dec.InputOffset()
					cuts = append(cuts, [2]int64{start, prevEnd})
					stack[top].wantKey = true
					continue
				}
				return nil, fmt.Errorf("timing is not an object")
			}
			continue
		}
		// a value: the next token of an enclosing object is a key
		if top >= 0 && stack[top].object {
			stack[top].wantKey = true
		}
		if d, ok := tok.(json.Delim); ok {
			stack = append(stack, frame{object: d == '{', wantKey: d == '{'})
		}
	}
	var out []byte
	at := int64(0)
	for _, c := range cuts {
		out = append(out, b[at:c[0]]...)
		at = c[1]
	}
	return append(out, b[at:]...), nil
}

// withoutTiming cuts exactly the timing objects, at any depth, and nothing else.
func TestWithoutTiming(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`{"a":1,"timing":{"s":2},"b":[3]}`, `{"a":1,"b":[3]}`},
		{"{\n  \"a\": 1,\n  \"timing\": {\n    \"s\": 2\n  }\n}\n", "{\n  \"a\": 1\n}\n"},
		{`{"x":{"timing":{"t":{"u":[1,{"v":2}]}},"y":"timing"},"timing":{}}`, `{"x":{,"y":"timing"}}`},
		{"{\"id\":1}\n{\"id\":2,\"timing\":{\"s\":1}}\n", "{\"id\":1}\n{\"id\":2}\n"},
		{`{"timings":{"s":1},"list":["timing",{"timing":{}}]}`, `{"timings":{"s":1},"list":["timing",{}]}`},
	} {
		got, err := withoutTiming([]byte(c.in))
		if err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		if string(got) != c.want {
			t.Errorf("%s: got %s, want %s", c.in, got, c.want)
		}
	}
	if _, err := withoutTiming([]byte(`{"timing":3}`)); err == nil {
		t.Error(`{"timing":3}: no error`)
	}
}
