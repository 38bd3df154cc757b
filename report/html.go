package report

import (
	"fmt"
	"io"

	"strings"

	"github.com/faultline/faultline/internal/atomicfile"
)

// style is the page's whole stylesheet: no fonts, scripts or images are
// fetched, so the file works offline and as an attachment.
const style = `body{font-family:sans-serif;margin:2em auto;max-width:1100px;padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}h3{font-size:1.05em}
figure{margin:1.5em 0;padding:.5em;border:1px solid #e5e5e5}figure svg{display:block;max-width:100%;height:auto}
figcaption{font-size:.9em;color:#444;margin-top:.4em}
table{border-collapse:collapse;font-size:.88em;margin:.5em 0}th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
details{font-size:.85em;margin-top:.5em}summary{cursor:pointer;color:#555}code{font-size:.95em}
.note{color:#666;font-size:.9em}`

// Render writes the report as one self-contained HTML page.
func Render(w io.Writer, r *Report) error {
	var b strings.Builder
	b.WriteString("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>faultline report</title>\n")
	b.WriteString("<style>\n" + style + "\n</style>\n</head>\n<body>\n<h1>faultline report</h1>\n")
	used := 0
	for _, in := range r.Inputs {
		if in.Used {
			used++
		}
	}
	fmt.Fprintf(&b, "<p>Built from %d result files (%d JSON files found). Every number on this page is read from them; the files and settings behind each figure are listed under it.</p>\n", used, len(r.Inputs))
	b.WriteString("<ul>\n")
	for _, s := range r.Sections {
		fmt.Fprintf(&b, "<li><a href=\"#%s\">%s</a></li>\n", s.ID, esc(s.Title))
	}
	b.WriteString("<li><a href=\"#inputs\">Inputs</a></li>\n</ul>\n")
	if len(r.Omitted) > 0 {
		b.WriteString("<p class=\"note\">Sections left out because their inputs were not found:</p>\n<ul class=\"note\">\n")
		for _, o := range r.Omitted {
			fmt.Fprintf(&b, "<li>%s</li>\n", esc(o))
		}
		b.WriteString("</ul>\n")
	}
	for _, s := range r.Sections {
		fmt.Fprintf(&b, "<section id=\"%s\">\n<h2>%s</h2>\n", s.ID, esc(s.Title))
		for _, t := range s.Tables {
			writeTable(&b, t)
		}
		for _, f := range s.Figures {
			fmt.Fprintf(&b, "<figure id=\"%s\">\n<h3>%s</h3>\n%s<figcaption>%s</figcaption>\n", f.ID, esc(f.Title), f.SVG, esc(f.Caption))
			writeProvenance(&b, f.Inputs, f.Config)
			b.WriteString("</figure>\n")
		}
		b.WriteString("</section>\n")
	}
	b.WriteString("<section id=\"inputs\">\n<h2>Inputs</h2>\n<table>\n<tr><th>file</th><th>kind</th><th>schema</th><th>used</th><th>note</th></tr>\n")
	for _, in := range r.Inputs {
		schema := ""
		if in.SchemaVersion != 0 {
			schema = fmt.Sprint(in.SchemaVersion)
		}
		use := "no"
		if in.Used {
			use = "yes"
		}
		fmt.Fprintf(&b, "<tr><td><code>%s</code></td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>\n", esc(in.Path), esc(in.Kind), schema, use, esc(in.Note))
	}
	b.WriteString("</table>\n</section>\n</body>\n</html>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func writeTable(b *strings.Builder, t Table) {
	fmt.Fprintf(b, "<div id=\"%s\">\n<h3>%s</h3>\n<table>\n<tr>", t.ID, esc(t.Title))
	for _, h := range t.Head {
		fmt.Fprintf(b, "<th>%s</th>", esc(h))
	}
	b.WriteString("</tr>\n")
	for _, row := range t.Rows {
		b.WriteString("<tr>")
		for i, c := range row {
			class := ""
			if i > 0 && isNumeric(c) {
				class = " class=\"num\""
			}
			fmt.Fprintf(b, "<td%s>%s</td>", class, esc(c))
		}
		b.WriteString("</tr>\n")
	}
	b.WriteString("</table>\n")
	if t.Caption != "" {
		fmt.Fprintf(b, "<p class=\"note\">%s</p>\n", esc(t.Caption))
	}
	writeProvenance(b, t.Inputs, t.Config)
	b.WriteString("</div>\n")
}

func isNumeric(s string) bool {
	return s != "" && strings.IndexFunc(s[:1], func(r rune) bool { return (r < '0' || r > '9') && r != '-' && r != '+' }) < 0
}

// writeProvenance lists a figure's input files and the settings they record.
func writeProvenance(b *strings.Builder, inputs []string, config [][]KV) {
	if len(inputs) == 0 {
		return
	}
	b.WriteString("<details class=\"provenance\">\n<summary>Configuration and versions</summary>\n<p>From ")
	for i, in := range inputs {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(b, "<code>%s</code>", esc(in))
	}
	b.WriteString("</p>\n")
	for _, kvs := range config {
		b.WriteString("<table>\n")
		for _, kv := range kvs {
			fmt.Fprintf(b, "<tr><th>%s</th><td>%s</td></tr>\n", esc(kv.Key), esc(kv.Value))
		}
		b.WriteString("</table>\n")
	}
	b.WriteString("</details>\n")
}

// Summary is the machine-readable account of a written report.
type Summary struct {
	Out      string        `json:"out"`
	Figures  []FigureEntry `json:"figures"`
	Tables   []FigureEntry `json:"tables"`
	Sections []string      `json:"sections"`
	Omitted  []string      `json:"omitted"`
	Inputs   []*Input      `json:"inputs"`
}

// FigureEntry names one rendered figure or table and the files behind it.
type FigureEntry struct {
	ID     string   `json:"id"`
	Title  string   `json:"title"`
	Inputs []string `json:"inputs"`
}

// Summarize describes r as written to out.
func (r *Report) Summarize(out string) Summary {
	s := Summary{Out: out, Inputs: r.Inputs, Omitted: r.Omitted, Figures: []FigureEntry{}, Tables: []FigureEntry{}, Sections: []string{}}
	if s.Omitted == nil {
		s.Omitted = []string{}
	}
	if s.Inputs == nil {
		s.Inputs = []*Input{}
	}
	for _, sec := range r.Sections {
		s.Sections = append(s.Sections, sec.ID)
		for _, f := range sec.Figures {
			s.Figures = append(s.Figures, FigureEntry{ID: f.ID, Title: f.Title, Inputs: f.Inputs})
		}
		for _, t := range sec.Tables {
			s.Tables = append(s.Tables, FigureEntry{ID: t.ID, Title: t.Title, Inputs: t.Inputs})
		}
	}
	return s
}

// Generate reads the result files under dirs, and writes the HTML report to
// out atomically (a failed run leaves any previous report untouched).
func Generate(dirs []string, out string) (*Report, error) {
	set, err := Load(dirs)
	if err != nil {
		return nil, err
	}
	r := Build(set)
	err = atomicfile.Write(out, 0o644, func(w io.Writer) error { return Render(w, r) })
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	return r, nil
}
