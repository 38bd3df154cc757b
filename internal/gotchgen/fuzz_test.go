package gotchgen

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func FuzzFailingLines(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join("testdata", "gxx_errors.txt")); err == nil {
		f.Add(string(b))
	}
	f.Add("torch_api_generated.cpp.h:12:3: error: x\ntorch_api_generated.cpp.h:99999999999999999999:1: error: y\n")
	f.Fuzz(func(t *testing.T, out string) {
		lines := FailingLines(out)
		if !slices.IsSorted(lines) || len(slices.Compact(slices.Clone(lines))) != len(lines) {
			t.Errorf("lines not sorted and distinct: %v", lines)
		}
	})
}

func FuzzStubWrappers(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join("testdata", "wrappers.cpp.h")); err == nil {
		f.Add(string(b), 12, 39)
		f.Add(string(b), 3, 1)
	}
	f.Add("int atg_x(tensor a) {\n}\n", 1, 2)
	f.Fuzz(func(t *testing.T, src string, a, b int) {
		out, names, err := StubWrappers(src, []int{a, b})
		if err != nil {
			return
		}
		if len(names) == 0 {
			if out != src {
				t.Error("source changed although nothing was stubbed")
			}
			return
		}
		before, err := wrapperSpans(src)
		if err != nil {
			t.Fatal(err)
		}
		after, err := wrapperSpans(out)
		if err != nil {
			t.Fatalf("the stubbed source no longer parses: %v\n%s", err, out)
		}
		if len(after) != len(before) {
			t.Errorf("%d wrappers after stubbing, %d before", len(after), len(before))
		}
		for _, n := range names {
			if !strings.Contains(out, `PROTECT(throw std::runtime_error("`+n+` is not available in this libtorch");)`) {
				t.Errorf("%s not stubbed", n)
			}
		}
	})
}
