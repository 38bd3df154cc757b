package gotchgen

import (
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestFailingLines(t *testing.T) {
	tests := []struct {
		name   string
		output string
		want   []int
	}{
		{
			// Direct errors, a template error inside <tuple> traced back through its
			// "required from here" note, a repeated line, and errors in other files.
			name:   "g++ output fixture",
			output: readFile(t, filepath.Join("testdata", "gxx_errors.txt")),
			want:   []int{12, 39, 40},
		},
		{
			name:   "relative path",
			output: "torch_api_generated.cpp.h:444:19: error: ‘_chunk_grad_outputs_efficient_attention’ is not a member of ‘torch’\n",
			want:   []int{444},
		},
		{
			name: "required from here only",
			output: "/usr/include/c++/12/tuple: In instantiation of ‘struct std::tuple_element<5, std::tuple<at::Tensor> >’:\n" +
				"/usr/include/c++/12/tuple:1401:5:   required by substitution of ‘template<...>’\n" +
				"libtch/torch_api_generated.cpp.h:1422:3:   required from here\n" +
				"/usr/include/c++/12/tuple:1357:25: error: static assertion failed: tuple index must be in range\n",
			want: []int{1422},
		},
		{
			name: "unsorted and repeated",
			output: "torch_api_generated.cpp.h:900:1: error: b\n" +
				"torch_api_generated.cpp.h:80:1: error: a\n" +
				"torch_api_generated.cpp.h:900:7: note: b again\n" +
				"torch_api_generated.cpp.h:1000:2: error: c\n",
			want: []int{80, 900, 1000},
		},
		{
			name: "only other files",
			output: "In file included from torch_api.cpp:1:\n" +
				"torch_api_generated.cpp.h: In function ‘void atg_abs(at::Tensor**, tensor)’:\n" +
				"torch_api.cpp:321:7: error: ‘at_unrelated’ was not declared in this scope\n" +
				"torch_api.h:20:5: note: in definition of macro ‘PROTECT’\n" +
				"   20 |     x                                                                          \\\n" +
				"/usr/include/c++/12/tuple:1357:25: error: static assertion failed\n",
			want: nil,
		},
		{name: "empty", output: "", want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := FailingLines(tt.output)
			if len(got) == 0 && len(tt.want) == 0 {
				return
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("FailingLines = %v, want %v", got, tt.want)
			}
		})
	}
}

// stubText is what StubWrappers must leave of a wrapper with the given header.
func stubText(header, name string) string {
	s := header + "\n" +
		"  // faultline gotchgen: does not compile against the installed libtorch.\n" +
		"  PROTECT(throw std::runtime_error(\"" + name + " is not available in this libtorch\");)\n"
	if !strings.HasPrefix(header, "void ") {
		s += "  return {};\n"
	}
	return s + "}"
}

func TestStubWrappers(t *testing.T) {
	src := readFile(t, filepath.Join("testdata", "wrappers.cpp.h"))
	tests := []struct {
		name   string
		locate []string // substrings of the failing lines (each on exactly one line)
		lines  []int    // further failing lines, by number
		want   []string // stubbed wrappers, sorted
	}{
		{name: "body line of a void wrapper", locate: []string{"torch::abs(*self)"}, want: []string{"atg_abs"}},
		{name: "header line of an int64_t wrapper", locate: []string{"int64_t atg__dimi("}, want: []string{"atg__dimi"}},
		{name: "closing brace of an int64_t wrapper", lines: []int{15}, want: []string{"atg__dimi"}},
		{name: "body line of an int (bool) wrapper", locate: []string{"torch::_is_zerotensor(*self)"}, want: []string{"atg__is_zerotensor"}},
		{name: "tensor* wrapper", locate: []string{"int sz = outputs__.size();"}, want: []string{"atg_align_tensors"}},
		{name: "two lines of one wrapper", lines: []int{39, 40}, want: []string{"atg_squeeze_dims"}},
		{name: "same line twice", lines: []int{12, 12}, want: []string{"atg__dimi"}},
		{
			name:   "several wrappers, unsorted lines",
			locate: []string{"torch::squeeze(", "return self->_dimI();", "void atg_abs("},
			lines:  []int{40},
			want:   []string{"atg__dimi", "atg_abs", "atg_squeeze_dims"},
		},
		{name: "no lines", want: nil},
	}
	before := functions(t, src)
	if len(before) != 5 {
		t.Fatalf("fixture has %d wrappers, want 5", len(before))
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lines := slices.Clone(tt.lines)
			for _, s := range tt.locate {
				lines = append(lines, lineOf(t, src, s))
			}
			got, names, err := StubWrappers(src, lines)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(names, tt.want) {
				t.Fatalf("stubbed %v, want %v", names, tt.want)
			}
			if len(tt.want) == 0 && got != src {
				t.Fatal("source changed although nothing was stubbed")
			}
			after := functions(t, got)
			if len(after) != len(before) {
				t.Fatalf("%d wrappers after stubbing, want %d", len(after), len(before))
			}
			for name, text := range before {
				header, _, _ := strings.Cut(text, "\n")
				switch {
				case slices.Contains(tt.want, name):
					if want := stubText(header, name); after[name] != want {
						t.Errorf("%s stubbed as\n%s\nwant\n%s", name, after[name], want)
					}
					if !strings.Contains(after[name], `PROTECT(throw std::runtime_error("`+name+` is not available in this libtorch");)`) {
						t.Errorf("%s: no PROTECT(throw ...) stub:\n%s", name, after[name])
					}
				case after[name] != text:
					t.Errorf("%s changed although not stubbed:\n%s", name, after[name])
				}
			}
			// Outside the wrappers nothing changes: the comment and the blank lines.
			if !strings.HasPrefix(got, "// THIS FILE IS AUTOMATICALLY GENERATED, DO NOT EDIT BY HAND!\n\n") || !strings.HasSuffix(got, "}\n") {
				t.Errorf("text outside the wrappers changed:\n%s", got)
			}
			// A later pass may name a stubbed wrapper again (by its header, the only
			// line it shares with the original): the stub stays as it is.
			var again []int
			for _, n := range names {
				again = append(again, lineOf(t, got, n+"("))
			}
			got2, names2, err := StubWrappers(got, again)
			if err != nil {
				t.Fatal(err)
			}
			if got2 != got || !reflect.DeepEqual(names2, names) {
				t.Errorf("stubbing the stubs again changed the source or names: %v", names2)
			}
		})
	}
}

// TestStubWrappersGolden runs the compiler output fixture through FailingLines and
// StubWrappers and compares the whole result with a hand-written file.
func TestStubWrappersGolden(t *testing.T) {
	src := readFile(t, filepath.Join("testdata", "wrappers.cpp.h"))
	lines := FailingLines(readFile(t, filepath.Join("testdata", "gxx_errors.txt")))
	got, names, err := StubWrappers(src, lines)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"atg__dimi", "atg_squeeze_dims"}; !reflect.DeepEqual(names, want) {
		t.Errorf("stubbed %v, want %v", names, want)
	}
	if want := readFile(t, filepath.Join("testdata", "wrappers_stubbed.cpp.h.golden")); got != want {
		t.Errorf("stubbed source differs from testdata/wrappers_stubbed.cpp.h.golden:\n%s", got)
	}
}

func TestStubWrappersErrors(t *testing.T) {
	src := readFile(t, filepath.Join("testdata", "wrappers.cpp.h"))
	unterminated := "void atg_abs(tensor *out__, tensor self) {\n  PROTECT(\n    auto outputs__ = torch::abs(*self);\n  )\n  }\n"
	tests := []struct {
		name  string
		src   string
		lines []int
		want  string // in the error
	}{
		{name: "comment line", src: src, lines: []int{1}, want: GeneratedCPP + ":1: compiler error outside any atg_ wrapper"},
		{name: "blank line before the first wrapper", src: src, lines: []int{2}, want: ":2: compiler error outside"},
		{name: "blank line between wrappers", src: src, lines: []int{12, 16}, want: ":16: compiler error outside"},
		{name: "after the last wrapper", src: src, lines: []int{1000}, want: ":1000: compiler error outside"},
		{name: "line zero", src: src, lines: []int{0}, want: ":0: compiler error outside"},
		{name: "unterminated function", src: unterminated, lines: []int{3}, want: "function atg_abs (line 1) has no closing brace"},
		{name: "unterminated function, no lines", src: src + "\n" + unterminated, lines: nil, want: "atg_abs (line 44) has no closing brace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, names, err := StubWrappers(tt.src, tt.lines)
			if err == nil {
				t.Fatalf("no error; stubbed %v:\n%s", names, got)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

// factsStubs are the 48 wrappers of gotch v0.8.0 that do not compile against Debian's
// libtorch 1.13.1, as a compile against it lists them.
var factsStubs = strings.Fields(`atg__chunk_grad_outputs_efficient_attention atg__ctc_loss_tensor_out
atg__efficient_attention_backward atg__flash_attention_backward atg__fused_sdp_choice
atg__is_all_true atg__is_any_true atg__lstm_mps atg__lstm_mps_out
atg__native_batch_norm_legit atg__native_batch_norm_legit_functional
atg__native_batch_norm_legit_no_stats atg__native_batch_norm_legit_no_stats_out
atg__native_batch_norm_legit_out atg__prelu_kernel atg__prelu_kernel_backward
atg__reshape_copy atg__scaled_dot_product_attention_math
atg__scaled_dot_product_efficient_attention
atg__scaled_dot_product_efficient_attention_backward
atg__scaled_dot_product_flash_attention_backward atg__sparse_mm_reduce
atg__sparse_mm_reduce_impl atg__test_check_tensor atg_max_pool2d_backward
atg_max_pool2d_backward_out atg_max_unary_out atg_mkldnn_reorder_conv2d_weight
atg_mkldnn_reorder_conv2d_weight_out atg_mkldnn_rnn_layer
atg_mkldnn_rnn_layer_backward atg_mkldnn_rnn_layer_backward_out
atg_mkldnn_rnn_layer_out atg_scaled_dot_product_attention atg_squeeze_copy_dims
atg_squeeze_copy_dims_out atg_squeeze_dims atg_squeeze_dims_ atg_to_sparse
atg_to_sparse_bsc atg_to_sparse_bsc_out atg_to_sparse_bsr atg_to_sparse_bsr_out
atg_to_sparse_csc atg_to_sparse_csc_out atg_to_sparse_csr atg_to_sparse_csr_out
atg_to_sparse_out`)

// TestWrapperSpansReal checks the wrapper parser against gotch v0.8.0's real file.
func TestWrapperSpansReal(t *testing.T) {
	src := readFile(t, filepath.Join(gotchModule(t), "libtch", GeneratedCPP))
	spans, err := wrapperSpans(src)
	if err != nil {
		t.Fatal(err)
	}
	if len(spans) != 2494 {
		t.Errorf("found %d wrappers, want 2494", len(spans))
	}
	starts := map[int]bool{}
	names := map[string]bool{}
	lines := strings.Split(src, "\n")
	for i, sp := range spans {
		if names[sp.name] {
			t.Errorf("wrapper %s found twice", sp.name)
		}
		names[sp.name] = true
		starts[sp.first] = true
		if sp.first >= sp.last || lines[sp.last-1] != "}" {
			t.Errorf("%s: bad span %d-%d", sp.name, sp.first, sp.last)
		}
		if i > 0 && spans[i-1].last >= sp.first {
			t.Errorf("%s overlaps %s", sp.name, spans[i-1].name)
		}
	}
	// Every top-level line that mentions a wrapper (return type, name, parameters)
	// starts a span.
	headers := 0
	for i, l := range lines {
		if l == "" || l[0] == ' ' || l[0] == '\t' || strings.HasPrefix(l, "//") || !strings.Contains(l, "atg_") {
			continue
		}
		headers++
		if !starts[i+1] {
			t.Errorf("line %d starts no wrapper: %s", i+1, l)
		}
	}
	if headers != len(spans) {
		t.Errorf("%d header lines, %d wrappers", headers, len(spans))
	}
	for _, n := range factsStubs {
		if !names[n] {
			t.Errorf("wrapper %s (FACTS.md) not found", n)
		}
	}

	// Stubbing the 48 wrappers by their header lines changes exactly those.
	var stubLines []int
	for _, sp := range spans {
		if slices.Contains(factsStubs, sp.name) {
			stubLines = append(stubLines, sp.first)
		}
	}
	got, stubbed, err := StubWrappers(src, stubLines)
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Sorted(slices.Values(factsStubs))
	if !reflect.DeepEqual(stubbed, want) {
		t.Errorf("stubbed %d wrappers, want the %d of FACTS.md", len(stubbed), len(want))
	}
	before, after := functions(t, src), functions(t, got)
	if len(after) != len(before) {
		t.Fatalf("%d wrappers after stubbing, want %d", len(after), len(before))
	}
	changed := 0
	for name, text := range before {
		if after[name] != text {
			changed++
			if !slices.Contains(factsStubs, name) {
				t.Errorf("%s changed", name)
			}
		}
	}
	if changed != len(factsStubs) {
		t.Errorf("%d wrappers changed, want %d", changed, len(factsStubs))
	}
	t.Logf("%d wrappers, %d stubbed", len(spans), changed)
}
