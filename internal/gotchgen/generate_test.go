package gotchgen

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// goWork is the part of `go work edit -json` the tests look at.
type goWork struct {
	Go      string
	Use     []struct{ DiskPath string }
	Replace []struct {
		Old struct{ Path, Version string }
		New struct{ Path, Version string }
	}
}

// editJSON runs `go work edit -json` in dir, where go finds dir/go.work itself.
func editJSON(t *testing.T, dir string) goWork {
	t.Helper()
	cmd := exec.Command("go", "work", "edit", "-json")
	cmd.Dir = dir
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "GOWORK=") && !strings.HasPrefix(e, "GOFLAGS=") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go work edit -json: %v\n%s", err, stderr.String())
	}
	var w goWork
	if err := json.Unmarshal(out, &w); err != nil {
		t.Fatalf("go work edit -json: %v\n%s", err, out)
	}
	return w
}

func TestWriteWorkspace(t *testing.T) {
	tests := []struct {
		name    string
		goMod   string // "" means no go.mod
		out     string // the adapted gotch, relative to the temp dir
		chdir   bool   // pass the workspace as "." from inside it
		wantGo  string
		wantRel string
	}{
		{name: "inside the workspace", goMod: "module m\n\ngo 1.23.0\n", out: "ws/x", wantGo: "1.23.0", wantRel: "./x"},
		{name: "deeper inside", goMod: "module m\n\ngo 1.23.0\n", out: "ws/build/.gotch", wantGo: "1.23.0", wantRel: "./build/.gotch"},
		{name: "next to the workspace", goMod: "module m\n\ngo 1.23.0\n", out: "gotch", wantGo: "1.23.0", wantRel: "../gotch"},
		{name: "workspace given as .", goMod: "module m\n\ngo 1.23.0\n", out: "ws/.gotch", chdir: true, wantGo: "1.23.0", wantRel: "./.gotch"},
		{name: "go.mod with toolchain", goMod: "module m\n\ngo 1.22\n\ntoolchain go1.26.0\n\nrequire go4.org/unsafe/assume-no-moving-gc v0.0.0 // indirect\n", out: "ws/x", wantGo: "1.22", wantRel: "./x"},
		{name: "no go.mod", out: "ws/x", wantGo: "1.23.0", wantRel: "./x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmp := t.TempDir()
			ws := filepath.Join(tmp, "ws")
			out := filepath.Join(tmp, tt.out)
			for _, d := range []string{ws, out} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if tt.goMod != "" {
				if err := os.WriteFile(filepath.Join(ws, "go.mod"), []byte(tt.goMod), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			wsArg := ws
			if tt.chdir {
				chdir(t, ws)
				wsArg = "."
			}
			if err := writeWorkspace(wsArg, out); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(ws, "go.work")
			content := readFile(t, p)
			for _, want := range []string{"\ngo " + tt.wantGo + "\n", "\nuse .\n", "\nreplace github.com/sugarme/gotch v0.8.0 => " + tt.wantRel + "\n"} {
				if !strings.Contains(content, want) {
					t.Errorf("go.work lacks %q:\n%s", want, content)
				}
			}
			if tt.goMod != "" {
				w := editJSON(t, ws)
				if w.Go != tt.wantGo || len(w.Use) != 1 || w.Use[0].DiskPath != "." || len(w.Replace) != 1 {
					t.Fatalf("go work edit -json: %+v", w)
				}
				r := w.Replace[0]
				if r.Old.Path != GotchModule || r.Old.Version != GotchVersion || r.New.Path != tt.wantRel || r.New.Version != "" {
					t.Errorf("replace %+v, want %s %s => %s", r, GotchModule, GotchVersion, tt.wantRel)
				}
			}

			// A second call with the same folders leaves the file alone.
			old := time.Now().Add(-time.Hour).Truncate(time.Second)
			if err := os.Chtimes(p, old, old); err != nil {
				t.Fatal(err)
			}
			if err := writeWorkspace(wsArg, out); err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if !fi.ModTime().Equal(old) {
				t.Errorf("second call rewrote go.work (mtime %v, was %v)", fi.ModTime(), old)
			}
			if got := readFile(t, p); got != content {
				t.Errorf("second call changed go.work:\n%s", got)
			}

			// Another output folder rewrites it.
			if err := writeWorkspace(wsArg, filepath.Join(tmp, "elsewhere")); err != nil {
				t.Fatal(err)
			}
			if got := readFile(t, p); !strings.Contains(got, " => ../elsewhere\n") {
				t.Errorf("go.work not updated for a new folder:\n%s", got)
			}
		})
	}

	t.Run("no workspace", func(t *testing.T) {
		dir := t.TempDir()
		chdir(t, dir)
		if err := writeWorkspace("", filepath.Join(dir, "x")); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(dir, "go.work")); !os.IsNotExist(err) {
			t.Errorf("go.work written without a workspace: %v", err)
		}
	})
}

// chdir changes the working directory for the rest of the test (t.Chdir needs go1.24;
// go.mod says go 1.23.0).
func chdir(t *testing.T, dir string) {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.Chdir(wd); err != nil {
			panic(err)
		}
	})
}

// fakeLibtorch lays out an unpacked "libtorch" without real headers or libraries.
func fakeLibtorch(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "libtorch")
	for _, d := range []string{"include", "lib"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "lib", "libtorch.so"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestGenerateErrors(t *testing.T) {
	if _, err := Generate(Options{}); err == nil || !strings.Contains(err.Error(), "no output folder") {
		t.Errorf("no Out: error %v", err)
	}
	out := filepath.Join(t.TempDir(), "gotch")
	missing := filepath.Join(t.TempDir(), "nowhere")
	_, err := Generate(Options{Out: out, Libtorch: missing})
	if err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing libtorch: error %v does not name %s", err, missing)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("output folder created on error: %v", err)
	}
}

// TestGenerateStamp checks the up-to-date check with a hand-written stamp and a fake
// libtorch: an equal stamp is reused without copying or compiling anything; a stale
// one (or Force) regenerates, and when that fails the previous folder stays.
func TestGenerateStamp(t *testing.T) {
	lib := fakeLibtorch(t)
	lt, err := DetectLibtorch(lib)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("LIBTORCH", "") // Options.Libtorch is always given here
	tests := []struct {
		name   string
		edit   func(*stamp)
		force  bool
		reused bool
	}{
		{name: "up to date", edit: func(*stamp) {}, reused: true},
		{name: "force", edit: func(*stamp) {}, force: true},
		{name: "older generator", edit: func(s *stamp) { s.Revision = "0" }},
		{name: "other gotch", edit: func(s *stamp) { s.Gotch = "v0.7.0" }},
		{name: "other headers", edit: func(s *stamp) { s.Headers = "00" }},
		{name: "other libtorch", edit: func(s *stamp) { s.Libtorch.CUDA = !s.Libtorch.CUDA }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmp := t.TempDir()
			out, ws := filepath.Join(tmp, "gotch"), filepath.Join(tmp, "ws")
			for _, d := range []string{out, ws} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(filepath.Join(ws, "go.mod"), []byte("module m\n\ngo 1.23.0\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			st := stamp{Revision: revision, Gotch: GotchVersion, Libtorch: lt, Headers: headersHash(lt),
				Stubbed: []string{"atg_a", "atg_b"}, Fixes: []string{"a fix"}}
			tt.edit(&st)
			b, _ := json.Marshal(st)
			if err := os.WriteFile(filepath.Join(out, stampFile), b, 0o644); err != nil {
				t.Fatal(err)
			}
			if !tt.reused {
				// Regenerating copies gotch from the module cache and runs g++.
				gotchModule(t)
				if _, err := exec.LookPath("g++"); err != nil {
					t.Skip("g++ not installed")
				}
			}
			var log bytes.Buffer
			res, err := Generate(Options{Out: out, Workspace: ws, Libtorch: lib, Force: tt.force, Log: &log})
			t.Logf("log:\n%s", log.String())
			if tt.reused {
				if err != nil {
					t.Fatal(err)
				}
				if !res.Reused || res.Dir != out || !reflect.DeepEqual(res.Stubbed, st.Stubbed) || !reflect.DeepEqual(res.Fixes, st.Fixes) {
					t.Errorf("Generate = %+v, want the stamp's result reused", res)
				}
				if !strings.Contains(log.String(), "is up to date") {
					t.Error("log does not say the folder is up to date")
				}
				if w := readFile(t, filepath.Join(ws, "go.work")); !strings.Contains(w, " => ../gotch\n") {
					t.Errorf("go.work not written when reusing:\n%s", w)
				}
				return
			}
			// The fake libtorch has no headers, so g++ fails before any wrapper.
			if err == nil {
				t.Fatalf("regenerating against a fake libtorch succeeded: %+v", res)
			}
			if !strings.Contains(err.Error(), "not because of a generated wrapper") {
				t.Errorf("error %v", err)
			}
			if !strings.Contains(log.String(), "adapting gotch") {
				t.Error("log does not say gotch is being adapted")
			}
			if got := readFile(t, filepath.Join(out, stampFile)); got != string(b) {
				t.Errorf("the previous folder changed after a failed regeneration:\n%s", got)
			}
			if _, err := os.Stat(filepath.Join(ws, "go.work")); !os.IsNotExist(err) {
				t.Errorf("go.work written after a failed regeneration: %v", err)
			}
			if _, err := os.Stat(out + ".tmp"); err == nil {
				t.Errorf("a failed regeneration left %s.tmp behind", filepath.Base(out))
			}
		})
	}
}

// TestGenerateDebian adapts gotch to this machine's Debian libtorch for real: it
// copies the module, checks the C++ wrappers with g++ (two passes of ~20 s) and
// stubs the ones that do not compile.
func TestGenerateDebian(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles gotch's C++ wrappers (~40 s)")
	}
	if _, err := exec.LookPath("g++"); err != nil {
		t.Skip("g++ not installed")
	}
	if _, err := os.Stat("/usr/include/torch/csrc/api/include/torch/torch.h"); err != nil {
		t.Skip("Debian's libtorch-dev is not installed")
	}
	t.Setenv("LIBTORCH", "")
	out := filepath.Join(t.TempDir(), "gotch")
	var log bytes.Buffer
	start := time.Now()
	res, err := Generate(Options{Out: out, Log: &log})
	t.Logf("first Generate took %v; log:\n%s", time.Since(start).Round(time.Second), log.String())
	if err != nil {
		t.Fatal(err)
	}
	if res.Reused || res.Dir != out {
		t.Errorf("Generate = Reused %v, Dir %s", res.Reused, res.Dir)
	}
	t.Logf("%d wrappers stubbed", len(res.Stubbed))
	if len(res.Stubbed) == 0 || !slices.Contains(res.Stubbed, "atg_scaled_dot_product_attention") {
		t.Errorf("stubbed %v, want atg_scaled_dot_product_attention among them", res.Stubbed)
	}
	for _, n := range factsStubs {
		if !slices.Contains(res.Stubbed, n) {
			t.Logf("note: %s (FACTS.md) was not stubbed", n)
		}
	}
	for _, n := range res.Stubbed {
		if !slices.Contains(factsStubs, n) {
			t.Logf("note: %s was stubbed but is not in FACTS.md", n)
		}
	}
	if len(res.Fixes) != len(Fixes) {
		t.Errorf("%d fixes applied, want %d: %v", len(res.Fixes), len(Fixes), res.Fixes)
	}

	// What the folder holds.
	lt, err := DetectLibtorch("")
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(out, "libtch", "lib.go")); got != lt.LibGo() {
		t.Errorf("libtch/lib.go is not LibGo():\n%s", got)
	}
	marker := readFile(t, filepath.Join(out, "faultline_adapted.go"))
	for _, want := range []string{"package gotch\n", "const FaultlineAdapted = \"gotchgen/" + revision + "\"", "const LibtorchKind = \"debian\""} {
		if !strings.Contains(marker, want) {
			t.Errorf("faultline_adapted.go lacks %q:\n%s", want, marker)
		}
	}
	for _, f := range []string{"libtch/faultline_extra.go", "ts/faultline_extra.go", stampFile, "go.mod"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
	for _, d := range []string{"example", "gen"} {
		if _, err := os.Stat(filepath.Join(out, d)); !os.IsNotExist(err) {
			t.Errorf("%s/ copied: %v", d, err)
		}
	}
	if _, err := os.Stat(out + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("%s.tmp left behind: %v", out, err)
	}
	gen := functions(t, readFile(t, filepath.Join(out, "libtch", GeneratedCPP)))
	if len(gen) != 2494 {
		t.Errorf("%d wrappers in the adapted file, want 2494", len(gen))
	}
	for _, n := range res.Stubbed {
		if !strings.Contains(gen[n], `PROTECT(throw std::runtime_error("`+n+` is not available in this libtorch");)`) {
			t.Errorf("%s is not stubbed in the file:\n%s", n, gen[n])
		}
	}
	if strings.Contains(readFile(t, filepath.Join(out, "libtch", "c-generated.go")), "cbool") {
		t.Error("the bool fix is not in libtch/c-generated.go")
	}

	// Same options again: the stamp says it is up to date.
	start = time.Now()
	res2, err := Generate(Options{Out: out})
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("second Generate took %v", took)
	if !res2.Reused {
		t.Error("second Generate did not reuse the folder")
	}
	if took > 5*time.Second {
		t.Errorf("second Generate took %v, want < 5 s", took)
	}
	if !reflect.DeepEqual(res2.Stubbed, res.Stubbed) || !reflect.DeepEqual(res2.Fixes, res.Fixes) {
		t.Errorf("second Generate reported other stubs or fixes: %+v", res2)
	}
}
