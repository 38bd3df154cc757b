package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/faultline/faultline/report"
)

const reportFixtures = "../../report/testdata/runs"

// faultline report --json writes the page and describes it; bad arguments and
// unsupported inputs are errors.
func TestReportCommand(t *testing.T) {
	out := filepath.Join(t.TempDir(), "report.html")
	stdout, stderr, code := cli(t, "report", "--in", reportFixtures, "--out", out, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var sum report.Summary
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil {
		t.Fatalf("--json output: %v\n%s", err, stdout)
	}
	if sum.Out != out || len(sum.Figures) != 9 || len(sum.Tables) != 3 || len(sum.Inputs) != 11 {
		t.Errorf("summary: out %s, %d figures, %d tables, %d inputs", sum.Out, len(sum.Figures), len(sum.Tables), len(sum.Inputs))
	}
	if st, err := os.Stat(out); err != nil || st.Size() == 0 {
		t.Fatalf("no report: %v", err)
	}
	// A campaign's header is an input, not a result: no note. A file of an
	// unknown kind is skipped with a note on stderr.
	stdout, stderr, code = cli(t, "report", "--in", filepath.Join(reportFixtures, "fi"), "--out", out)
	if code != 0 || !strings.Contains(stdout, "1 figures") || stderr != "" {
		t.Errorf("plain run: %d %q %q", code, stdout, stderr)
	}
	mixed := t.TempDir()
	sumJSON, err := os.ReadFile(filepath.Join(reportFixtures, "fi", "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mixed, "summary.json"), sumJSON, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mixed, "new.json"), []byte(`{"kind":"faultline.something_new","schema_version":1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code = cli(t, "report", "--in", mixed, "--out", out)
	if code != 0 || !strings.Contains(stdout, "1 figures") || !strings.Contains(stderr, "unknown kind faultline.something_new") {
		t.Errorf("run with an unknown kind: %d %q %q", code, stdout, stderr)
	}
	if _, stderr, _ = cli(t, "--quiet", "report", "--in", mixed, "--out", out); stderr != "" {
		t.Errorf("--quiet printed %q", stderr)
	}
	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, "ber.json"), []byte(`{"kind":"faultline.ber_curve","schema_version":3}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"report", "--out", out}, {"report", "--in", reportFixtures}, {"report", "--in", bad, "--out", out}} {
		if _, stderr, code := cli(t, args...); code == 0 || !strings.Contains(stderr, "report:") {
			t.Errorf("%v: exit %d, %q", args, code, stderr)
		}
	}
}

// The report opens in headless Chromium with every figure drawn (each <svg>
// has children and a non-zero bounding box) and no console error or
// exception; a screenshot is saved to $FAULTLINE_ARTIFACTS (or a temporary
// directory).
func TestReportInBrowser(t *testing.T) {
	const chromium = "/usr/bin/chromium"
	if _, err := os.Stat(chromium); err != nil {
		t.Skip("no " + chromium + " (apt-get install chromium)")
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "report.html")
	stdout, stderr, code := cli(t, "report", "--in", reportFixtures, "--out", out, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var sum report.Summary
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil {
		t.Fatal(err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium), chromedp.Flag("headless", true), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.NoFirstRun, chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(filepath.Join(dir, "profile")), chromedp.WindowSize(1200, 900),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	// the first Run starts the browser; the console is read from then on
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("chromium: %v", err)
	}
	cctx, stopConsole := context.WithCancel(bctx)
	messages := chromedp.Console(cctx)
	var (
		mu       sync.Mutex
		problems []string
		done     = make(chan struct{})
	)
	go func() {
		defer close(done)
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				mu.Lock()
				problems = append(problems, m.String())
				mu.Unlock()
			}
		}
	}()
	type svgBox struct {
		Label    string  `json:"label"`
		Children int     `json:"children"`
		Width    float64 `json:"width"`
		Height   float64 `json:"height"`
	}
	if err := chromedp.Do(bctx, chromedp.Navigate("file://"+out), chromedp.WaitReady("body")); err != nil {
		t.Fatalf("chromium: %v", err)
	}
	boxes, err := chromedp.Run(bctx, chromedp.Evaluate[[]svgBox](`Array.from(document.querySelectorAll("svg")).map(s => {
		const r = s.getBoundingClientRect();
		return {label: s.getAttribute("aria-label"), children: s.childElementCount, width: r.width, height: r.height};
	})`))
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	shot, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	stopConsole()
	<-done
	if len(boxes) != len(sum.Figures) || len(boxes) == 0 {
		t.Errorf("%d svg elements in the page, %d figures in the summary", len(boxes), len(sum.Figures))
	}
	for _, b := range boxes {
		if b.Children == 0 || !(b.Width > 0) || !(b.Height > 0) {
			t.Errorf("figure %q not drawn: %d children, %gx%g", b.Label, b.Children, b.Width, b.Height)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Errorf("browser: %s", p)
	}
	artifacts := os.Getenv("FAULTLINE_ARTIFACTS")
	if artifacts == "" {
		artifacts = t.TempDir()
	}
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	png := filepath.Join(artifacts, "report-screenshot.png")
	if err := os.WriteFile(png, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the report (%d figures): %s", len(boxes), png)
}
