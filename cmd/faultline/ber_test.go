package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/faultline/faultline/fault"
)

// readCurve reads a ber.json and checks its kind and schema.
func readCurve(t *testing.T, path string) *fault.BERCurve {
	t.Helper()
	var c fault.BERCurve
	if err := json.Unmarshal(readFile(t, path), &c); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if c.Kind != "faultline.ber_curve" || c.SchemaVersion != fault.BERSchema {
		t.Fatalf("%s: kind %q schema %d", path, c.Kind, c.SchemaVersion)
	}
	return &c
}

// `faultline ber` on a tiny trained checkpoint: the curve file, the table, a rerun
// that is identical but for its timing, and count mode with the flips recorded.
func TestBEREndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a model; skipped in -short mode")
	}
	dir := t.TempDir()
	ckpt := filepath.Join(dir, "lenet")
	if _, errs, code := cli(t, "train", "--preset", "lenet5-fashion", "--dataset", "synthetic", "--train-limit", "1000",
		"--test-limit", "100", "--epochs", "2", "--seed", "3", "--threads", "1", "--out", ckpt, "--quiet"); code != 0 {
		t.Fatalf("train failed: %s", errs)
	}
	args := []string{"ber", "--checkpoint", ckpt, "--ber", "1e-3, 1e-7,1e-5", "--trials", "3", "--images", "50", "--threads", "1"}
	out1 := filepath.Join(dir, "ber1")
	out, errs, code := cli(t, append(args, "--out", out1)...)
	if code != 0 {
		t.Fatalf("ber failed: %s", errs)
	}
	t.Logf("stdout:\n%s", out)
	for _, want := range []string{"BER", "mean flips", "95% CI", "SDC", "DUE", "1e-07", "1e-05", "0.001", "wrote " + filepath.Join(out1, "ber.json")} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errs, "ber ") || !strings.Contains(errs, "trials") {
		t.Errorf("no progress on stderr: %q", errs)
	}
	c := readCurve(t, filepath.Join(out1, "ber.json"))
	if c.Checkpoint != ckpt || c.Arch != "lenet5" || c.Dataset != "synthetic" || c.Mode != "ber" || c.Images != 50 ||
		c.TrialsPerPoint != 3 || c.Seed != 1 || len(c.Trials) != 9 || c.Bits == 0 {
		t.Fatalf("curve header: %+v", *c)
	}
	want := []float64{1e-7, 1e-5, 1e-3}
	if len(c.Points) != len(want) {
		t.Fatalf("%d points, want %d", len(c.Points), len(want))
	}
	for i, p := range c.Points {
		if p.BER != want[i] || p.Trials != 3 {
			t.Errorf("point %d: ber %g, %d trials; want %g and 3 (points ascending)", i, p.BER, p.Trials, want[i])
		}
		if math.Abs(p.ExpectedFlips-p.BER*float64(c.Bits)) > 1e-9*p.ExpectedFlips {
			t.Errorf("point %d: expected flips %g, want %g x %d bits", i, p.ExpectedFlips, p.BER, c.Bits)
		}
	}
	if p := c.Points[0]; math.Abs(p.Accuracy-c.GoldenAccuracy) > 0.03 || p.AccuracyDrop != c.GoldenAccuracy-p.Accuracy {
		t.Errorf("ber 1e-7: accuracy %g (drop %g), golden %g", p.Accuracy, p.AccuracyDrop, c.GoldenAccuracy)
	}
	if p := c.Points[2]; p.AccuracyDrop < 0.3 || p.SDCRate+p.DUERate < 0.3 {
		t.Errorf("ber 1e-3: accuracy drop %g, sdc %g, due %g: about 2000 flipped bits should break the model", p.AccuracyDrop, p.SDCRate, p.DUERate)
	}

	// the same arguments give the same curve but for its timing; --json prints it
	out, errs, code = cli(t, append(args, "--out", filepath.Join(dir, "ber2"), "--json", "--quiet")...)
	if code != 0 || errs != "" {
		t.Fatalf("ber --json --quiet: code %d, stderr %q", code, errs)
	}
	var printed fault.BERCurve
	if err := json.Unmarshal([]byte(out), &printed); err != nil {
		t.Fatalf("--json printed %q: %v", out, err)
	}
	c2 := readCurve(t, filepath.Join(dir, "ber2", "ber.json"))
	if !reflect.DeepEqual(printed, *c2) {
		t.Errorf("--json output differs from ber.json")
	}
	c.Timing, c2.Timing = fault.BERTiming{}, fault.BERTiming{}
	if !reflect.DeepEqual(c, c2) {
		t.Errorf("two runs with the same seed differ beyond their timing")
	}

	out3 := filepath.Join(dir, "ber3")
	out, errs, code = cli(t, "ber", "--checkpoint", ckpt, "--count", "4", "--trials", "2", "--layers", "fc1,fc2", "--bits", "30",
		"--keep-flips", "--images", "50", "--threads", "1", "--out", out3, "--quiet")
	if code != 0 {
		t.Fatalf("ber --count failed: %s", errs)
	}
	if !strings.Contains(out, "count") {
		t.Errorf("count table:\n%s", out)
	}
	c = readCurve(t, filepath.Join(out3, "ber.json"))
	if c.Mode != "count" || len(c.Points) != 1 || c.Points[0].Count != 4 || !reflect.DeepEqual(c.Layers, []string{"fc1", "fc2"}) {
		t.Fatalf("count curve: mode %s, layers %v, points %+v", c.Mode, c.Layers, c.Points)
	}
	for _, tr := range c.Trials {
		if tr.Flips != 4 || len(tr.FlipList) != 4 {
			t.Fatalf("trial %d: %d flips, %d listed; want 4", tr.Trial, tr.Flips, len(tr.FlipList))
		}
		for _, f := range tr.FlipList {
			if (f.Layer != "fc1" && f.Layer != "fc2") || f.Param != "weight" || f.Bit != 30 {
				t.Errorf("trial %d: flip %+v outside --layers fc1,fc2 --bits 30", tr.Trial, f)
			}
		}
	}

	// errors found only once the checkpoint is loaded
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--layers", "nope"}, `"nope"`},
		{[]string{"--count", "100000000"}, "count 100000000"},
	} {
		a := append([]string{"ber", "--checkpoint", ckpt, "--images", "10", "--threads", "1", "--out", filepath.Join(dir, "bad")}, tc.args...)
		_, errs, code := cli(t, a...)
		if code == 0 || !strings.Contains(errs, tc.want) || strings.Contains(errs, "goroutine ") {
			t.Errorf("%v: code %d, stderr %q; want an error mentioning %q", tc.args, code, errs, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "bad", "ber.json")); err == nil {
		t.Errorf("a failed run wrote ber.json")
	}
}

// Bad flags fail before anything is loaded, with an error naming the flag and value.
func TestBERBadFlags(t *testing.T) {
	dir := t.TempDir()
	ok := []string{"ber", "--checkpoint", filepath.Join(dir, "ckpt"), "--out", filepath.Join(dir, "out")}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"ber", "--out", dir}, "--checkpoint"},
		{[]string{"ber", "--checkpoint", dir}, "--out"},
		{append(ok, "--ber", "1e-6", "--count", "3"), "--ber or --count, not both"},
		{append(ok, "--ber", "2"), `--ber "2": 2 is not a bit error rate`},
		{append(ok, "--ber", "0"), `--ber "0"`},
		{append(ok, "--ber", "-1e-6"), `--ber "-1e-6"`},
		{append(ok, "--ber", "NaN"), `--ber "NaN"`},
		{append(ok, "--ber", "abc"), `"abc" is not a number`},
		{append(ok, "--ber", "1e-6,abc"), `"abc" is not a number`},
		{append(ok, "--ber", "1e-6,,1e-5"), "empty rate"},
		{append(ok, "--ber", "1e-6,1e-6"), "1e-6 given twice"},
		{append(ok, "--count", "0"), "--count 0"},
		{append(ok, "--count", "-5"), "--count -5"},
		{append(ok, "--trials", "0"), "--trials 0"},
		{append(ok, "--confidence", "95"), "--confidence 95"},
		{append(ok, "--bits", "32"), `ber: --bits "32"`},
		{append(ok, "--bits", "x"), `ber: --bits "x"`},
		{append(ok, "--device", "gpu"), "gpu"},
		{ok, "ckpt"}, // no such checkpoint
	} {
		_, errs, code := cli(t, tc.args...)
		if code == 0 || !strings.Contains(errs, tc.want) || strings.Contains(errs, "goroutine ") {
			t.Errorf("%v: code %d, stderr %q; want an error mentioning %q", tc.args[1:], code, errs, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "out", "ber.json")); err == nil {
		t.Errorf("a failed run wrote ber.json")
	}
}

func TestBERParseRates(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []float64
	}{
		{"1e-7,1e-6,1e-5,1e-4", []float64{1e-7, 1e-6, 1e-5, 1e-4}},
		{" 0.001 , 1", []float64{1e-3, 1}},
		{"1E-9", []float64{1e-9}},
	} {
		got, err := parseRates(tc.in)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseRates(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestBERHelp(t *testing.T) {
	out, errs, code := cli(t, "ber", "--help")
	if code != 0 || !strings.Contains(out, "Usage:") || !strings.Contains(out, "--ber") || !strings.Contains(out, "--count") {
		t.Errorf("ber --help: %d %s %s", code, out, errs)
	}
	out, _, _ = cli(t, "--help")
	if !strings.Contains(out, "ber ") {
		t.Errorf("faultline --help does not list ber:\n%s", out)
	}
}
