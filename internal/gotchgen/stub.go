package gotchgen

import (
	"bufio"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// GeneratedCPP is the file of gotch's generated C++ wrappers (one function per
// libtorch op) that may not compile against another libtorch version.
const GeneratedCPP = "torch_api_generated.cpp.h"

// wrapperStart matches the first line of a generated wrapper, e.g.
// "void atg_abs(tensor *out__, tensor self) {" or "int64_t atg__foo(...) {".
var wrapperStart = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_ *]*\b(atg_[A-Za-z0-9_]+)\(`)

// diagLine matches a compiler diagnostic (error, note or "required from here") that
// points into the generated wrappers file, capturing the line number.
var diagLine = regexp.MustCompile(regexp.QuoteMeta(GeneratedCPP) + `:(\d+):`)

// FailingLines returns the distinct line numbers of the generated wrappers file that
// the compiler output mentions, in increasing order. Template errors reported inside
// libtorch's or the standard library's headers are traced back through their
// "required from here" notes, which point into the generated file too.
func FailingLines(compilerOutput string) []int {
	seen := map[int]bool{}
	var lines []int
	for _, m := range diagLine.FindAllStringSubmatch(compilerOutput, -1) {
		n, err := strconv.Atoi(m[1])
		if err != nil || seen[n] {
			continue
		}
		seen[n] = true
		lines = append(lines, n)
	}
	sort.Ints(lines)
	return lines
}

// span is one wrapper function in the generated file: 1-based first and last line.
type span struct {
	name        string
	first, last int
}

// wrapperSpans lists the wrapper functions of the generated file. A function starts
// at a line matching wrapperStart and ends at the next line that is exactly "}".
func wrapperSpans(src string) ([]span, error) {
	var spans []span
	sc := bufio.NewScanner(strings.NewReader(src))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	n := 0
	var cur *span
	for sc.Scan() {
		n++
		line := sc.Text()
		if cur == nil {
			if m := wrapperStart.FindStringSubmatch(line); m != nil && strings.HasSuffix(strings.TrimSpace(line), "{") {
				cur = &span{name: m[1], first: n}
			}
			continue
		}
		if line == "}" {
			cur.last = n
			spans = append(spans, *cur)
			cur = nil
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if cur != nil {
		return nil, fmt.Errorf("gotchgen: %s: function %s (line %d) has no closing brace", GeneratedCPP, cur.name, cur.first)
	}
	return spans, nil
}

// StubWrappers replaces the body of every wrapper that contains one of the given
// lines with a body that raises a C++ exception inside gotch's PROTECT macro, so a
// call from Go returns an error ("atg_x is not available in this libtorch") instead
// of the whole build failing. It returns the new source and the stubbed names.
// A line that falls outside every wrapper is an error: the failure is then not one a
// stub can fix (a missing header, a wrong flag), and the caller must report it.
func StubWrappers(src string, lines []int) (string, []string, error) {
	spans, err := wrapperSpans(src)
	if err != nil {
		return "", nil, err
	}
	stub := map[int]span{} // first line -> span
	for _, ln := range lines {
		i := sort.Search(len(spans), func(i int) bool { return spans[i].last >= ln })
		if i == len(spans) || spans[i].first > ln {
			return "", nil, fmt.Errorf("gotchgen: %s:%d: compiler error outside any atg_ wrapper", GeneratedCPP, ln)
		}
		stub[spans[i].first] = spans[i]
	}
	if len(stub) == 0 {
		return src, nil, nil
	}
	in := strings.Split(src, "\n")
	out := make([]string, 0, len(in))
	var names []string
	for i := 0; i < len(in); i++ {
		sp, ok := stub[i+1]
		if !ok {
			out = append(out, in[i])
			continue
		}
		header := in[i]
		out = append(out, header,
			"  // faultline gotchgen: does not compile against the installed libtorch.",
			fmt.Sprintf("  PROTECT(throw std::runtime_error(\"%s is not available in this libtorch\");)", sp.name))
		if !strings.HasPrefix(header, "void ") {
			out = append(out, "  return {};")
		}
		out = append(out, "}")
		names = append(names, sp.name)
		i = sp.last - 1 // skip the old body; the loop's i++ moves past "}"
	}
	sort.Strings(names)
	return strings.Join(out, "\n"), names, nil
}
