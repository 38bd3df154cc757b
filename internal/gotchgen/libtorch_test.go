package gotchgen

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestLibGo(t *testing.T) {
	tests := []struct {
		name    string
		lt      Libtorch
		want    []string // substrings of lib.go
		notWant []string
	}{
		{
			name: "debian",
			lt:   Libtorch{Kind: "debian", IncludeDirs: []string{"/usr/include/torch/csrc/api/include"}, CXX11ABI: true},
			want: []string{
				"// #cgo LDFLAGS: -lstdc++ -ltorch -lc10 -ltorch_cpu\n",
				"-I/usr/include/torch/csrc/api/include",
				"-std=c++17",
				"// #cgo CFLAGS: -I${SRCDIR} ",
				"// #cgo CXXFLAGS: -I${SRCDIR} -O2 -w -std=c++17 -D_GLIBCXX_USE_CXX11_ABI=1 -I/usr/include/torch/csrc/api/include\n",
				"for debian libtorch",
			},
			notWant: []string{"-L", "rpath", "-ltorch_cuda", "-lc10_cuda", "-lcuda", "_GLIBCXX_USE_CXX11_ABI=0"},
		},
		{
			name: "dir with CUDA, new ABI",
			lt: Libtorch{Kind: "dir", LibDir: "/opt/libtorch/lib", CUDA: true, CXX11ABI: true,
				IncludeDirs: []string{"/opt/libtorch/include", "/opt/libtorch/include/torch/csrc/api/include"}},
			want: []string{
				"// #cgo LDFLAGS: -L/opt/libtorch/lib -Wl,-rpath,/opt/libtorch/lib -lstdc++ -Wl,--no-as-needed -ltorch_cuda -lc10_cuda -Wl,--as-needed -ltorch -lc10 -ltorch_cpu\n",
				"-I/opt/libtorch/include -I/opt/libtorch/include/torch/csrc/api/include",
				"-D_GLIBCXX_USE_CXX11_ABI=1",
				"for dir libtorch",
			},
			notWant: []string{"_GLIBCXX_USE_CXX11_ABI=0"},
		},
		{
			name: "dir without CUDA, old ABI",
			lt: Libtorch{Kind: "dir", LibDir: "/opt/libtorch-pre-cxx11/lib",
				IncludeDirs: []string{"/opt/libtorch-pre-cxx11/include"}},
			want: []string{
				"// #cgo LDFLAGS: -L/opt/libtorch-pre-cxx11/lib -Wl,-rpath,/opt/libtorch-pre-cxx11/lib -lstdc++ -ltorch -lc10 -ltorch_cpu\n",
				"-I/opt/libtorch-pre-cxx11/include",
				"-D_GLIBCXX_USE_CXX11_ABI=0",
			},
			notWant: []string{"-ltorch_cuda", "_GLIBCXX_USE_CXX11_ABI=1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := tt.lt.LibGo()
			for _, w := range tt.want {
				if !strings.Contains(src, w) {
					t.Errorf("lib.go lacks %q:\n%s", w, src)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(src, w) {
					t.Errorf("lib.go contains %q:\n%s", w, src)
				}
			}
			// The ABI define reaches both the C and the C++ compiler.
			for _, l := range strings.Split(src, "\n") {
				if strings.Contains(l, "#cgo CFLAGS") || strings.Contains(l, "#cgo CXXFLAGS") {
					if !strings.Contains(l, tt.lt.abiFlag()) {
						t.Errorf("%q lacks %s", l, tt.lt.abiFlag())
					}
				}
			}
			f, err := parser.ParseFile(token.NewFileSet(), "lib.go", src, parser.ParseComments)
			if err != nil {
				t.Fatalf("lib.go does not parse: %v\n%s", err, src)
			}
			if f.Name.Name != "libtch" {
				t.Errorf("package %s, want libtch", f.Name.Name)
			}
			if len(f.Imports) != 1 || f.Imports[0].Path.Value != `"C"` {
				t.Fatalf("imports %v, want only \"C\"", f.Imports)
			}
			// cgo reads its directives from the comment right above import "C".
			var preamble string
			for _, d := range f.Decls {
				if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.IMPORT && g.Doc != nil {
					preamble = g.Doc.Text()
				}
			}
			for _, dir := range []string{"#cgo LDFLAGS:", "#cgo CFLAGS:", "#cgo CXXFLAGS:"} {
				if !strings.Contains(preamble, dir) {
					t.Errorf("the preamble of import \"C\" lacks %s:\n%s", dir, preamble)
				}
			}
		})
	}
}

func TestDetectLibtorchDir(t *testing.T) {
	// mk lays out a fake unpacked libtorch under a temp dir and returns its path.
	mk := func(t *testing.T, name string, files ...string) string {
		dir := filepath.Join(t.TempDir(), name)
		if err := os.MkdirAll(filepath.Join(dir, "include"), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			p := filepath.Join(dir, f)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	tests := []struct {
		name     string
		dirName  string
		files    []string
		cuda     bool
		cxx11ABI bool
	}{
		{name: "cpu", dirName: "libtorch", files: []string{"lib/libtorch.so"}, cxx11ABI: true},
		{name: "cuda", dirName: "libtorch", files: []string{"lib/libtorch.so", "lib/libtorch_cuda.so"}, cuda: true, cxx11ABI: true},
		{name: "pre-cxx11 in the name", dirName: "libtorch-pre-cxx11", files: []string{"lib/libtorch.so"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := mk(t, tt.dirName, tt.files...)
			lt, err := DetectLibtorch(dir)
			if err != nil {
				t.Fatal(err)
			}
			want := Libtorch{Kind: "dir", LibDir: filepath.Join(dir, "lib"), CUDA: tt.cuda, CXX11ABI: tt.cxx11ABI,
				IncludeDirs: []string{filepath.Join(dir, "include"), filepath.Join(dir, "include", "torch", "csrc", "api", "include")}}
			if !reflect.DeepEqual(lt, want) {
				t.Errorf("DetectLibtorch = %+v, want %+v", lt, want)
			}
			lib := lt.LibGo()
			if !strings.Contains(lib, "-Wl,-rpath,"+filepath.Join(dir, "lib")+" ") {
				t.Errorf("lib.go has no rpath to %s:\n%s", dir, lib)
			}
		})
	}

	t.Run("no lib/libtorch.so", func(t *testing.T) {
		dir := mk(t, "libtorch", "lib/libc10.so")
		_, err := DetectLibtorch(dir)
		if err == nil {
			t.Fatal("no error")
		}
		if !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "lib/libtorch.so") {
			t.Errorf("error %q does not name %s and lib/libtorch.so", err, dir)
		}
	})
	t.Run("missing dir", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "nowhere")
		if _, err := DetectLibtorch(dir); err == nil || !strings.Contains(err.Error(), dir) {
			t.Errorf("error %v does not name %s", err, dir)
		}
	})
}

func TestLibtorchVersionDir(t *testing.T) {
	dir := t.TempDir()
	api := filepath.Join(dir, "include", "torch", "csrc", "api", "include", "torch")
	if err := os.MkdirAll(api, 0o755); err != nil {
		t.Fatal(err)
	}
	lt := Libtorch{Kind: "dir", IncludeDirs: []string{filepath.Join(dir, "include"), filepath.Join(dir, "include", "torch", "csrc", "api", "include")}}
	if v := LibtorchVersion(lt); v != "" {
		t.Errorf("version %q without version.h, want \"\"", v)
	}
	h0 := headersHash(lt)
	// The layout of libtorch's own version.h (the value on its own line).
	versionH := "#pragma once\n#define TORCH_VERSION_MAJOR 2\n/// Indicates the version of LibTorch.\n#define TORCH_VERSION \\\n  \"2.0.1\"\n"
	if err := os.WriteFile(filepath.Join(api, "version.h"), []byte(versionH), 0o644); err != nil {
		t.Fatal(err)
	}
	if v := LibtorchVersion(lt); v != "2.0.1" {
		t.Errorf("version %q, want 2.0.1", v)
	}
	if h1 := headersHash(lt); h1 == h0 {
		t.Error("headersHash did not change with version.h")
	}
}

// TestDetectLibtorchDebian checks the Debian branch on a machine with libtorch-dev.
func TestDetectLibtorchDebian(t *testing.T) {
	if _, err := os.Stat("/usr/include/torch/csrc/api/include/torch/torch.h"); err != nil {
		t.Skip("Debian's libtorch-dev is not installed")
	}
	lt, err := DetectLibtorch("")
	if err != nil {
		t.Fatal(err)
	}
	if lt.Kind != "debian" || !lt.CXX11ABI || lt.LibDir != "" || !reflect.DeepEqual(lt.IncludeDirs, []string{"/usr/include/torch/csrc/api/include"}) {
		t.Errorf("DetectLibtorch(\"\") = %+v", lt)
	}
	v := LibtorchVersion(lt)
	if v == "" {
		t.Error("no version for Debian's libtorch")
	}
	t.Logf("Debian libtorch %s, CUDA %v", v, lt.CUDA)
}

// Official archives record their C++ ABI in TorchConfig.cmake; that wins over the
// folder name.
func TestDetectLibtorchABIFromTorchConfig(t *testing.T) {
	for _, tc := range []struct {
		define string
		want   bool
	}{{"0", false}, {"1", true}} {
		dir := filepath.Join(t.TempDir(), "libtorch")
		for _, f := range []string{"lib/libtorch.so", "share/cmake/Torch/TorchConfig.cmake"} {
			if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, "lib/libtorch.so"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		cfg := `set(TORCH_CXX_FLAGS "-D_GLIBCXX_USE_CXX11_ABI=` + tc.define + `")` + "\n"
		if err := os.WriteFile(filepath.Join(dir, "share/cmake/Torch/TorchConfig.cmake"), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		lt, err := DetectLibtorch(dir)
		if err != nil {
			t.Fatal(err)
		}
		if lt.CXX11ABI != tc.want {
			t.Errorf("ABI define %s: CXX11ABI = %v", tc.define, lt.CXX11ABI)
		}
	}
}
