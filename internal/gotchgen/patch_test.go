package gotchgen

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestFixesReal applies each fix to gotch v0.8.0's own file: it must change at least
// one place, and applying it again to its own output must change nothing.
func TestFixesReal(t *testing.T) {
	mod := gotchModule(t)
	for i, f := range Fixes {
		t.Run(strconv.Itoa(i)+"_"+strings.ReplaceAll(f.File, "/", "_"), func(t *testing.T) {
			src := readFile(t, filepath.Join(mod, f.File))
			out, n := f.Apply(src)
			if n == 0 || out == src {
				t.Fatalf("matched nothing in gotch %s's %s", GotchVersion, f.File)
			}
			t.Logf("%d place(s)", n)
			out2, n2 := f.Apply(out)
			if n2 != 0 || out2 != out {
				t.Errorf("not idempotent: a second run changed %d more place(s)", n2)
			}
		})
	}
}

// TestApplyFixesReal runs all fixes over the real files and checks that the results
// still parse and still use every package they import.
func TestApplyFixesReal(t *testing.T) {
	mod := gotchModule(t)
	files := map[string]string{}
	for _, f := range Fixes {
		files[f.File] = readFile(t, filepath.Join(mod, f.File))
	}
	done, err := applyFixes(files)
	if err != nil {
		t.Fatal(err)
	}
	if len(done) != len(Fixes) {
		t.Errorf("%d fixes reported, want %d", len(done), len(Fixes))
	}
	for name, src := range files {
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, name, src, parser.SkipObjectResolution)
		if err != nil {
			t.Errorf("%s no longer parses: %v", name, err)
			continue
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if path == "C" || (imp.Name != nil && imp.Name.Name == "_") {
				continue
			}
			pkg := path[strings.LastIndex(path, "/")+1:]
			if imp.Name != nil {
				pkg = imp.Name.Name
			}
			used := false
			ast.Inspect(f, func(n ast.Node) bool {
				if sel, ok := n.(*ast.SelectorExpr); ok {
					if id, ok := sel.X.(*ast.Ident); ok && id.Name == pkg {
						used = true
					}
				}
				return !used
			})
			if !used {
				t.Errorf("%s: import %q no longer used after the fixes", name, path)
			}
		}
	}
}

// TestBoolFix checks the bool fix on the real generated binding of _is_zerotensor,
// and that no bool binding still reads its result through an *int.
func TestBoolFix(t *testing.T) {
	mod := gotchModule(t)
	src := readFile(t, filepath.Join(mod, "libtch", "c-generated.go"))
	out, n := Fixes[0].Apply(src)
	if Fixes[0].File != "libtch/c-generated.go" {
		t.Fatalf("Fixes[0] is for %s, want the bool fix", Fixes[0].File)
	}
	if want := strings.Count(src, "cbool := *(*int)(unsafe.Pointer(&cResult))"); n != want || n == 0 {
		t.Errorf("bool fix changed %d places, want %d (every bool binding)", n, want)
	}
	if strings.Contains(out, "cbool") {
		t.Error("a bool binding still reads cbool")
	}
	body := funcBody(t, out, "func Atg_IsZerotensor(")
	want := "func Atg_IsZerotensor(self Ctensor) bool{\n\t cResult := C.atg__is_zerotensor(self)\n\t return cResult != 0\n}"
	if body != want {
		t.Errorf("Atg_IsZerotensor after the fix:\n%s\nwant\n%s", body, want)
	}

	// The same on a crafted binding, with other indentation.
	crafted := "func AtgEqual(self Ctensor, other Ctensor) bool{\n  cResult := C.atg_equal(self, other)\n  cbool := *(*int)(unsafe.Pointer(&cResult))\n  if cbool == 1{return true}\n  return false\n}\n"
	got, n := Fixes[0].Apply(crafted)
	if n != 1 || got != "func AtgEqual(self Ctensor, other Ctensor) bool{\n  cResult := C.atg_equal(self, other)\n  return cResult != 0\n}\n" {
		t.Errorf("crafted binding: %d place(s):\n%s", n, got)
	}
}

// funcBody returns the text of the function starting with prefix, up to its "}" line.
func funcBody(t *testing.T, src, prefix string) string {
	t.Helper()
	i := strings.Index(src, prefix)
	if i < 0 {
		t.Fatalf("%s not found", prefix)
	}
	j := strings.Index(src[i:], "\n}")
	if j < 0 {
		t.Fatalf("%s has no end", prefix)
	}
	return src[i : i+j+2]
}

func TestApplyFixesErrors(t *testing.T) {
	// Every file the fixes need, with content where each fix matches.
	all := func() map[string]string {
		m := map[string]string{}
		for _, f := range Fixes {
			m[f.File] = m[f.File] + fixInput(f) + "\n"
		}
		return m
	}
	if _, err := applyFixes(all()); err != nil {
		t.Fatalf("crafted inputs: %v", err)
	}
	tests := []struct {
		name  string
		edit  func(map[string]string)
		wants []string // in the error
	}{
		{
			name:  "target file missing",
			edit:  func(m map[string]string) { delete(m, "nn/varstore.go") },
			wants: []string{"nn/varstore.go", "file not read"},
		},
		{
			name:  "fix matches nothing",
			edit:  func(m map[string]string) { m["device.go"] = "package gotch\n" },
			wants: []string{"device.go", "matched nothing", "is this gotch v0.8.0?"},
		},
		{
			name: "second fix of a file matches nothing",
			edit: func(m map[string]string) {
				m["libtch/tensor.go"] = strings.ReplaceAll(m["libtch/tensor.go"], "&cint", "&other")
			},
			wants: []string{"libtch/tensor.go", "AtDevice", "matched nothing"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := all()
			tt.edit(m)
			done, err := applyFixes(m)
			if err == nil {
				t.Fatalf("no error; applied %v", done)
			}
			for _, w := range tt.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// fixInput returns a snippet that fix f matches, like gotch v0.8.0's own code.
func fixInput(f Fix) string {
	switch {
	case f.File == "libtch/c-generated.go":
		return "\t cbool := *(*int)(unsafe.Pointer(&cResult))\n\t if cbool == 1{return true}\n\t return false"
	case strings.Contains(f.Why, "AtGradSetEnabled"):
		return "\treturn *(*int)(unsafe.Pointer(&cretVal))"
	case strings.Contains(f.Why, "AtDevice"):
		return "\treturn *(*int)(unsafe.Pointer(&cint))"
	case f.File == "device.go":
		return "\t\treturn Device{Name: \"CPU\", Value: 1}"
	case f.File == "nn/varstore.go":
		return "\tpath := p.path\n\tpath = append(path, str)\n"
	case strings.Contains(f.Why, "empty or zero-filled"):
		return "\t\tcase io.EOF:\n\t\t\tbreak // End of archive\n"
	case strings.Contains(f.Why, "huge storage"):
		return "\tstorage := dataType.New(size, location)\n\terr = storage.SetFromFileWithSize(f, size)\n"
	case f.File == "pickle/storage.go":
		return "\tsize := int(binary.LittleEndian.Uint64(sizeBuf))\n\treturn s.SetFromFileWithSize(r, size)\n"
	case f.File == "ts/tensor-generated.go":
		return "    return err\n  }\n  ts.ctensor = *ptr\n  \n  return err\n"
	case f.File == "init.go":
		return "\t\tif err := os.MkdirAll(CachedDir, 0755); err != nil {\n\t\t\tlog.Fatal(err)\n\t\t}\n"
	}
	panic("no crafted input for the fix of " + f.File + ": " + f.Why)
}
