package report

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"go/parser"
	"go/token"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden SVG files in testdata/golden")

const fixtures = "testdata/runs"

func build(t *testing.T, dirs ...string) (*Set, *Report) {
	t.Helper()
	s, err := Load(dirs)
	if err != nil {
		t.Fatal(err)
	}
	return s, Build(s)
}

func figure(t *testing.T, r *Report, id string) Figure {
	t.Helper()
	for _, f := range r.Figures() {
		if f.ID == id {
			return f
		}
	}
	t.Fatalf("no figure %s", id)
	return Figure{}
}

// readJSON decodes a fixture generically, independently of the report's structs.
func readJSON(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func analysedChannels(t *testing.T, path, field string) int {
	n := 0
	for _, l := range readJSON(t, path)["layers"].([]any) {
		for _, c := range l.(map[string]any)["channels"].([]any) {
			if _, ok := c.(map[string]any)[field]; ok {
				n++
			}
		}
	}
	return n
}

func layerCount(t *testing.T, path string) int {
	return len(readJSON(t, path)["layers"].([]any))
}

// The SVG of every figure matches its golden file, and its marks match the
// JSON: one bar per layer and side, one cell per analysed channel, one marker
// per rate and curve, one bar per bit.
func TestGoldenSVG(t *testing.T) {
	_, r := build(t, fixtures)
	before := filepath.Join(fixtures, "lenet5-hardened/before/vf/vf.json")
	after := filepath.Join(fixtures, "lenet5-hardened/after/vf/vf.json")
	imp := readJSON(t, filepath.Join(fixtures, "importance/summary.json"))["precision_at_k"].(map[string]any)
	bits := len(readJSON(t, filepath.Join(fixtures, "fi/summary.json"))["per_bit"].([]any))
	berPoints := len(readJSON(t, filepath.Join(fixtures, "lenet5-hardened/before/ber/ber.json"))["points"].([]any)) +
		len(readJSON(t, filepath.Join(fixtures, "lenet5-hardened/after/ber/ber.json"))["points"].([]any))
	for _, tc := range []struct {
		id, golden, mark string
		want             int
	}{
		{"lvf-1-activations", "lvf_activations.svg", `class="bar"`, layerCount(t, before) + layerCount(t, after)},
		{"lvf-1-weights", "lvf_weights.svg", `class="bar"`, layerCount(t, before) + layerCount(t, after)},
		{"cvf-1-activations-1", "cvf_activations_before.svg", `class="cell"`, analysedChannels(t, before, "cvf_activations")},
		{"cvf-1-activations-2", "cvf_activations_after.svg", `class="cell"`, analysedChannels(t, after, "cvf_activations")},
		{"cvf-1-weights-1", "cvf_weights_before.svg", `class="cell"`, analysedChannels(t, before, "cvf_weights")},
		{"cvf-1-weights-2", "cvf_weights_after.svg", `class="cell"`, analysedChannels(t, after, "cvf_weights")},
		{"ber-1", "ber_before_after.svg", `class="mean"`, berPoints},
		{"importance-1", "precision_at_k.svg", `class="bar"`, len(imp["is"].(map[string]any)) + len(imp["uniform"].(map[string]any))},
		{"bits-1", "bits_sdc.svg", `class="bar"`, bits},
	} {
		t.Run(tc.id, func(t *testing.T) {
			f := figure(t, r, tc.id)
			if got := strings.Count(f.SVG, tc.mark); got != tc.want || got == 0 {
				t.Errorf("%d marks %s, want %d", got, tc.mark, tc.want)
			}
			path := filepath.Join("testdata/golden", tc.golden)
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(f.SVG), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./report -update)", err)
			}
			if f.SVG != string(want) {
				t.Errorf("%s differs from %s (if intended, run go test ./report -update)", tc.id, path)
			}
		})
	}
}

// pctValue parses a cell such as "90.36%" back to a fraction.
func pctValue(t *testing.T, s string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
	if err != nil {
		t.Fatalf("cell %q: %v", s, err)
	}
	return v / 100
}

func near(a, b float64) bool { return math.Abs(a-b) <= 5e-4*math.Max(math.Abs(b), 1e-12) }

// The before/after table shows report.json's numbers.
func TestBeforeAfterTableMatchesJSON(t *testing.T) {
	_, r := build(t, fixtures)
	rep := readJSON(t, filepath.Join(fixtures, "lenet5-hardened/report.json"))
	var tbl Table
	for _, s := range r.Sections {
		if s.ID == "before-after" {
			tbl = s.Tables[0]
		}
	}
	rows := map[string][]string{}
	for _, row := range tbl.Rows {
		rows[row[0]] = row
	}
	side := func(name string) map[string]any { return rep[name].(map[string]any) }
	check := func(row string, col int, want float64) {
		t.Helper()
		cells, ok := rows[row]
		if !ok {
			t.Fatalf("no row %q in %v", row, tbl.Rows)
		}
		if got := pctValue(t, cells[col]); !near(got, want) {
			t.Errorf("%s column %d: %s, JSON has %v", row, col, cells[col], want)
		}
	}
	// checkCI checks an interval cell ("a% to b%") against the JSON's pair.
	checkCI := func(row string, col int, want any) {
		t.Helper()
		pair, ok := want.([]any)
		if !ok || len(pair) != 2 {
			t.Fatalf("%s: JSON interval %v", row, want)
		}
		lo, hi, ok := strings.Cut(rows[row][col], " to ")
		if !ok {
			t.Fatalf("%s column %d: %q is not an interval", row, col, rows[row][col])
		}
		if !near(pctValue(t, lo), pair[0].(float64)) || !near(pctValue(t, hi), pair[1].(float64)) {
			t.Errorf("%s column %d: %s, JSON has %v", row, col, rows[row][col], pair)
		}
	}
	if want := []string{"measure", "before", "95% interval", "after", "95% interval", "change"}; !slices.Equal(tbl.Head, want) {
		t.Errorf("head %v, want %v", tbl.Head, want)
	}
	for i, name := range []string{"before", "after"} {
		col := 1 + 2*i
		check("clean accuracy", col, side(name)["clean_accuracy"].(float64))
		checkCI("clean accuracy", col+1, side(name)["clean_accuracy_ci95"])
		mvf := side(name)["vf"].(map[string]any)["mvf"].(map[string]any)
		for row, key := range map[string]string{"MVF total": "total", "MVF activations": "activations", "MVF weights": "weights"} {
			check(row, col, mvf[key].(float64))
			checkCI(row, col+1, mvf[key+"_ci95"])
		}
		for rate, st := range side(name)["ber"].(map[string]any) {
			st := st.(map[string]any)
			for row, key := range map[string]string{"mean accuracy": "mean", "median accuracy": "median", "p5 accuracy": "p5", "catastrophic trials (< 50%)": "catastrophic"} {
				check("BER "+rate+" "+row, col, st[key].(float64))
				checkCI("BER "+rate+" "+row, col+1, st[key+"_ci95"])
			}
		}
	}
	red := rep["change"].(map[string]any)["mvf_total_reduction"].(float64)
	if got := pctValue(t, strings.TrimSuffix(strings.TrimPrefix(rows["MVF total"][5], "-"), " (relative)")); !near(got, red) {
		t.Errorf("MVF total reduction %s, JSON %v", rows["MVF total"][5], red)
	}
	if want := 4 + 4*len(side("before")["ber"].(map[string]any)); len(tbl.Rows) != want {
		t.Errorf("%d rows, want %d", len(tbl.Rows), want)
	}
}

// The percentile bands computed from ber.json's trials agree with the p5 and
// median that the harden report computed from the same trials.
func TestBandsAgreeWithHardenReport(t *testing.T) {
	s, _ := build(t, fixtures)
	var h Harden
	for _, d := range s.Hardens {
		h = d.Data
	}
	for _, d := range s.BERs {
		side := h.Before
		if strings.Contains(filepath.ToSlash(d.Path), "/after/") {
			side = h.After
		}
		for _, b := range bands(d.Data) {
			st, ok := side.BER[strconv.FormatFloat(b.X, 'g', -1, 64)]
			if !ok {
				t.Fatalf("%s: rate %g not in the harden report", d.Path, b.X)
			}
			if !b.FromTrials || b.Trials != st.Trials || !near(b.Lo, st.P5) || !near(b.Median, st.Median) || !near(b.Mean, st.Mean) {
				t.Errorf("%s at %g: band %+v, harden report %+v", d.Path, b.X, b, st)
			}
			if !(b.Lo <= b.Q1 && b.Q1 <= b.Median && b.Median <= b.Q3 && b.Q3 <= b.Hi) {
				t.Errorf("%s at %g: quantiles out of order: %+v", d.Path, b.X, b)
			}
		}
	}
}

// The critical-neuron list is ranking.json's first 20 units, in rank order.
func TestCriticalListMatchesRanking(t *testing.T) {
	_, r := build(t, fixtures)
	units := readJSON(t, filepath.Join(fixtures, "importance/ranking.json"))["units"].([]any)
	sort.Slice(units, func(a, b int) bool {
		return units[a].(map[string]any)["rank"].(float64) < units[b].(map[string]any)["rank"].(float64)
	})
	var tbl Table
	for _, s := range r.Sections {
		if s.ID == "critical" {
			tbl = s.Tables[0]
		}
	}
	if len(tbl.Rows) != 20 {
		t.Fatalf("%d rows, want 20", len(tbl.Rows))
	}
	for i, row := range tbl.Rows {
		u := units[i].(map[string]any)
		if row[0] != strconv.Itoa(int(u["rank"].(float64))) || row[1] != u["layer"] || row[2] != strconv.Itoa(int(u["index"].(float64))) ||
			!near(pctValue(t, row[3]), u["score"].(float64)) || row[6] != strconv.Itoa(int(u["faults"].(float64))) {
			t.Errorf("row %d %v, unit %v", i, row, u)
		}
		// The fixture predates the lower bound: its column says so.
		if _, ok := u["score_lower"]; !ok && row[5] != "n/a" {
			t.Errorf("row %d: lower bound %q for a ranking without one", i, row[5])
		}
	}
}

// A ranking with lower bounds shows each unit's bound beside its score and
// draw count, in rank order: a once-drawn unit with the highest score sits
// below the well-sampled units that outrank it.
func TestCriticalListShowsLowerBound(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "is", "ranking.json"), `{"kind":"faultline.ranking","schema_version":1,"target":"weights","units":[
{"layer":"fc1","index":13,"score":0.027,"score_lower":0.0047,"faults":1,"critical":1,"rank":2},
{"layer":"conv1","index":2,"score":0.0284,"ci95":[0.0273,0.0295],"score_lower":0.018,"faults":9,"critical":9,"rank":1},
{"layer":"fc2","index":2,"score":0.0228,"ci95":[0.0228,0.0228],"score_lower":0.0041,"faults":2,"critical":1,"rank":3}]}`)
	_, r := build(t, dir)
	var tbl Table
	for _, s := range r.Sections {
		if s.ID == "critical" {
			tbl = s.Tables[0]
		}
	}
	want := [][]string{
		{"1", "conv1", "2", "2.84%", "2.73% to 2.95%", "1.8%", "9", "9"},
		{"2", "fc1", "13", "2.7%", "", "0.47%", "1", "1"},
		{"3", "fc2", "2", "2.28%", "2.28% to 2.28%", "0.41%", "2", "1"},
	}
	if len(tbl.Rows) != len(want) {
		t.Fatalf("rows %v, want %v", tbl.Rows, want)
	}
	for i := range want {
		if !slices.Equal(tbl.Rows[i], want[i]) {
			t.Errorf("row %d %v, want %v", i, tbl.Rows[i], want[i])
		}
	}
	if tbl.Head[5] != "lower bound (ranks by)" || !strings.Contains(tbl.Caption, "Ranked by the lower bound") {
		t.Errorf("head %v, caption %q", tbl.Head, tbl.Caption)
	}
}

// A harden report written before the intervals renders its figures with n/a
// in the interval columns.
func TestBeforeAfterTableWithoutIntervals(t *testing.T) {
	var rep map[string]any
	b, err := os.ReadFile(filepath.Join(fixtures, "lenet5-hardened/report.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	var strip func(v any)
	strip = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if strings.HasSuffix(k, "_ci95") && k != "lvf_activations_ci95" && k != "lvf_weights_ci95" {
					delete(v, k)
					continue
				}
				strip(x)
			}
		case []any:
			for _, x := range v {
				strip(x)
			}
		}
	}
	strip(rep)
	old, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(old, []byte("mean_ci95")) || !bytes.Contains(old, []byte("lvf_weights_ci95")) {
		t.Fatal("stripping the intervals failed")
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "report.json"), string(old))
	_, r := build(t, dir)
	tbl := r.Sections[0].Tables[0]
	for _, row := range tbl.Rows {
		if row[2] != "n/a" || row[4] != "n/a" || row[1] == "n/a" || row[3] == "n/a" {
			t.Errorf("row %v: want values with n/a intervals", row)
		}
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Unknown kinds and kind-less files are skipped with a note; an unsupported
// schema_version, a missing one or invalid JSON is an error naming the file.
func TestLoadBadInputs(t *testing.T) {
	for _, tc := range []struct {
		name, file, content string
		wantErr, wantNote   string
	}{
		{name: "unknown kind", file: "a/x.json", content: `{"kind":"faultline.something_new","schema_version":7}`, wantNote: "skipped: unknown kind faultline.something_new"},
		{name: "no kind", file: "x.json", content: `{"a":1}`, wantNote: "no kind"},
		{name: "array", file: "x.json", content: `[1,2]`, wantNote: "no kind"},
		{name: "future schema", file: "v/vf.json", content: `{"kind":"faultline.vf","schema_version":2}`, wantErr: "schema_version 2 is not supported"},
		{name: "no schema", file: "ber.json", content: `{"kind":"faultline.ber_curve"}`, wantErr: "without schema_version"},
		{name: "truncated", file: "s/summary.json", content: `{"kind":"faultline.fault_campaign","schema_version":1,"per_bit":[`, wantErr: "not valid JSON"},
		{name: "wrong type", file: "r.json", content: `{"kind":"faultline.ranking","schema_version":1,"units":{"a":1}}`, wantErr: "decode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, tc.file)
			writeFile(t, path, tc.content)
			writeFile(t, filepath.Join(dir, ".hidden.json"), "not json")
			s, err := Load([]string{dir})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), path) {
					t.Fatalf("error %v, want %q naming %s", err, tc.wantErr, path)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(s.Inputs) != 1 || s.Inputs[0].Used || !strings.Contains(s.Inputs[0].Note, tc.wantNote) {
				t.Fatalf("inputs %+v, want one skipped with %q", s.Inputs, tc.wantNote)
			}
			if r := Build(s); len(r.Sections) != 0 || len(r.Omitted) != len(sectionSpec) {
				t.Errorf("sections %d, omitted %d", len(r.Sections), len(r.Omitted))
			}
		})
	}
	if _, err := Load([]string{filepath.Join(t.TempDir(), "missing")}); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing directory: %v", err)
	}
	if _, err := Load(nil); err == nil {
		t.Error("no directories: no error")
	}
}

// Sections without inputs are omitted and named; a directory given twice is
// read once.
func TestOnlyFoundSections(t *testing.T) {
	s, r := build(t, filepath.Join(fixtures, "fi"), filepath.Join(fixtures, "fi"))
	if len(s.Inputs) != 2 {
		t.Errorf("%d inputs, want 2 (summary.json and campaign.json, once)", len(s.Inputs))
	}
	if len(r.Sections) != 1 || r.Sections[0].ID != "bits" {
		t.Fatalf("sections %+v, want bits only", r.Sections)
	}
	if len(r.Omitted) != len(sectionSpec)-1 {
		t.Errorf("omitted %v", r.Omitted)
	}
	var b bytes.Buffer
	if err := Render(&b, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Sections left out", "Before and after hardening: needs a harden report", "campaign header: its results are in the summary.json beside it"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

// The page is self-contained (nothing fetched, no scripts) and byte-identical
// between runs; the hardening's own vf.json and ber.json files are drawn as
// its before and after, not again on their own.
func TestPageSelfContainedAndDeterministic(t *testing.T) {
	render := func() string {
		_, r := build(t, fixtures)
		var b bytes.Buffer
		if err := Render(&b, r); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	page := render()
	if page != render() {
		t.Error("two renders differ")
	}
	for _, bad := range []string{"<script", "<link", "<img", "@import", "url("} {
		if strings.Contains(page, bad) {
			t.Errorf("page contains %q", bad)
		}
	}
	if urls := regexp.MustCompile(`https?://[^"<\s]+`).FindAllString(page, -1); len(urls) != strings.Count(page, "<svg ") {
		t.Errorf("URLs other than the SVG namespace: %v", urls)
	}
	_, r := build(t, fixtures)
	if n := len(r.Figures()); n != 9 {
		t.Errorf("%d figures, want 9 (2 LVF, 4 CVF, 1 BER, 1 precision@k, 1 per-bit)", n)
	}
	if strings.Count(page, "<svg ") != len(r.Figures()) {
		t.Errorf("%d svg elements for %d figures", strings.Count(page, "<svg "), len(r.Figures()))
	}
	for _, in := range r.Inputs {
		if in.Kind != "faultline.fault_campaign_header" && !in.Used {
			t.Errorf("%s not used: %s", in.Path, in.Note)
		}
	}
}

// Generate writes the page atomically: a failed run leaves the previous file.
func TestGenerateKeepsOldFileOnError(t *testing.T) {
	out := filepath.Join(t.TempDir(), "report.html")
	if _, err := Generate([]string{fixtures}, out); err != nil {
		t.Fatal(err)
	}
	first, _ := os.ReadFile(out)
	bad := t.TempDir()
	writeFile(t, filepath.Join(bad, "vf.json"), `{"kind":"faultline.vf","schema_version":99}`)
	if _, err := Generate([]string{bad}, out); err == nil {
		t.Fatal("no error for schema 99")
	}
	if again, _ := os.ReadFile(out); !bytes.Equal(first, again) || len(first) == 0 {
		t.Error("the previous report changed")
	}
	if _, err := Generate([]string{fixtures}, filepath.Join(t.TempDir(), "no", "such", "dir", "r.html")); err == nil {
		t.Error("unwritable output: no error")
	}
}

// FuzzLoad feeds arbitrary bytes as a result file: Load and Build must return
// an error or a report, never panic.
func FuzzLoad(f *testing.F) {
	for _, p := range []string{"importance/ranking.json", "lenet5/model.json", "fi/campaign.json"} {
		b, err := os.ReadFile(filepath.Join(fixtures, p))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"kind":"faultline.ber_curve","schema_version":1,"mode":"ber","points":[{"ber":0}],"trials":[{"point":-1},{"point":9}]}`))
	f.Add([]byte(`{"kind":"faultline.vf","schema_version":1,"layers":[{"name":"a","out_channels":-3,"channels":[{"index":-2,"cvf_weights":1}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s := &Set{}
		if err := s.add("r.json", data); err != nil {
			if !strings.Contains(err.Error(), "r.json") {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		var b bytes.Buffer
		if err := Render(&b, Build(s)); err != nil {
			t.Fatal(err)
		}
	})
}

// The package reads JSON only: it imports no engine package of faultline.
func TestImportsNoEnginePackage(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, f := range files {
		pf, err := parser.ParseFile(fset, f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, im := range pf.Imports {
			p, _ := strconv.Unquote(im.Path.Value)
			if strings.HasPrefix(p, "github.com/faultline/faultline/") && p != "github.com/faultline/faultline/internal/atomicfile" {
				t.Errorf("%s imports %s", f, p)
			}
			if strings.Contains(p, "gotch") {
				t.Errorf("%s imports %s", f, p)
			}
		}
	}
}

// A stuck-at campaign (testdata/stuckat, a real LeNet-5 summary.json) counts
// inactive faults: its per-bit figure says the rates are over the active pairs,
// gives the inactive count and the rates over all pairs, and each bar's tooltip
// its bit's inactive and active pairs. The bit-flip figure (TestGoldenSVG) is
// unchanged.
func TestStuckAtFigureLabelsActiveRates(t *testing.T) {
	dir := "testdata/stuckat"
	_, r := build(t, dir)
	s := readJSON(t, filepath.Join(dir, "summary.json"))
	f := figure(t, r, "bits-1")
	for _, want := range []string{
		"VF " + pct(s["vf"].(float64)) + " of the active fault x image pairs",
		fmt.Sprintf("%d of %d pairs were inactive", int64(s["inactive"].(float64)), int64(s["pairs"].(float64))),
		"over all pairs SDC is " + pct(s["sdc_rate_all"].(float64)),
		"VF " + pct(s["vf_all"].(float64)) + "; golden accuracy",
		"share of active fault x image pairs with a silent data corruption",
	} {
		if !strings.Contains(f.Caption, want) {
			t.Errorf("caption lacks %q:\n%s", want, f.Caption)
		}
	}
	if !strings.Contains(f.SVG, "share of active fault x image pairs") {
		t.Error("the y axis does not say active pairs")
	}
	bits := s["per_bit"].([]any)
	tips := len(bits) // one per SDC bar, and one more per DUE bar
	for _, b := range bits {
		if b.(map[string]any)["due_rate"].(float64) > 0 {
			tips++
		}
	}
	if got := strings.Count(f.SVG, " inactive; over the "); got != tips || got == 0 {
		t.Errorf("%d tooltips with inactive pairs, want %d", got, tips)
	}
	b := bits[0].(map[string]any)
	tip := fmt.Sprintf("bit %s: %d faults, %d pairs, %d inactive; over the %d active pairs SDC %s", b["key"], int64(b["faults"].(float64)),
		int64(b["pairs"].(float64)), int64(b["inactive"].(float64)), int64(b["active_pairs"].(float64)), pct(b["sdc_rate"].(float64)))
	if !strings.Contains(f.SVG, tip) {
		t.Errorf("SVG lacks the tooltip %q", tip)
	}
	found := false
	for _, kv := range f.Config[0] {
		found = found || kv.Key == "inactive pairs"
	}
	if !found {
		t.Errorf("configuration %v lacks the inactive pairs", f.Config[0])
	}
}
