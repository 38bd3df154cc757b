package gotchgen

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// GotchVersion is the gotch release faultline is written against.
const GotchVersion = "v0.8.0"

// GotchModule is gotch's module path.
const GotchModule = "github.com/sugarme/gotch"

// revision changes whenever the generator's output changes for the same input, so a
// stale folder from an older generator is regenerated.
const revision = "9"

// Options control Generate.
type Options struct {
	// Out is the folder to write the adapted gotch into (created; replaced when stale).
	Out string
	// Workspace, when set, is the folder of the main module where a go.work pointing
	// at Out is written ("use ." plus a replace of gotch).
	Workspace string
	// Libtorch is an unpacked libtorch archive; empty means $LIBTORCH or Debian's.
	Libtorch string
	// Force regenerates even when the stamp says Out is up to date.
	Force bool
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// Result says what Generate did.
type Result struct {
	Dir     string   // the adapted gotch
	Reused  bool     // true when Out was already up to date
	Stubbed []string // C++ wrappers replaced by stubs
	Fixes   []string // Go fixes applied
}

// stamp records the inputs of a generation; an equal stamp means Out is up to date.
type stamp struct {
	Revision string   `json:"revision"`
	Gotch    string   `json:"gotch"`
	Libtorch Libtorch `json:"libtorch"`
	Headers  string   `json:"headers_sha256"` // of libtorch's version.h
	Stubbed  []string `json:"stubbed,omitempty"`
	Fixes    []string `json:"fixes,omitempty"`
}

const stampFile = ".faultline-gotchgen.json"

// Generate writes the adapted gotch into opts.Out (and go.work into opts.Workspace).
func Generate(opts Options) (*Result, error) {
	logf := func(format string, a ...any) {
		if opts.Log != nil {
			fmt.Fprintf(opts.Log, "gotchgen: "+format+"\n", a...)
		}
	}
	if opts.Out == "" {
		return nil, errors.New("gotchgen: no output folder given")
	}
	out, err := filepath.Abs(opts.Out)
	if err != nil {
		return nil, err
	}
	ltDir := opts.Libtorch
	if ltDir == "" {
		ltDir = os.Getenv("LIBTORCH")
	}
	lt, err := DetectLibtorch(ltDir)
	if err != nil {
		return nil, err
	}
	want := stamp{Revision: revision, Gotch: GotchVersion, Libtorch: lt, Headers: headersHash(lt)}
	if !opts.Force {
		if have, ok := readStamp(out); ok && have.Revision == want.Revision && have.Gotch == want.Gotch &&
			have.Headers == want.Headers && sameLibtorch(have.Libtorch, want.Libtorch) {
			logf("%s is up to date (gotch %s, %s libtorch)", opts.Out, GotchVersion, lt.Kind)
			if err := writeWorkspace(opts.Workspace, out); err != nil {
				return nil, err
			}
			return &Result{Dir: out, Reused: true, Stubbed: have.Stubbed, Fixes: have.Fixes}, nil
		}
	}
	src, err := moduleDir()
	if err != nil {
		return nil, err
	}
	logf("adapting gotch %s from %s for %s libtorch", GotchVersion, src, lt.Kind)
	tmp := out + ".tmp"
	_ = os.RemoveAll(tmp)
	defer os.RemoveAll(tmp) // nothing of a failed run is left behind
	if err := copyTree(src, tmp); err != nil {
		return nil, err
	}
	res := &Result{Dir: out}
	if err := os.WriteFile(filepath.Join(tmp, "libtch", "lib.go"), []byte(lt.LibGo()), 0o644); err != nil {
		return nil, err
	}
	if res.Fixes, err = fixGoFiles(tmp); err != nil {
		return nil, err
	}
	if res.Stubbed, err = stubUntilClean(tmp, lt, logf); err != nil {
		return nil, err
	}
	if err := writeAdditions(tmp, lt); err != nil {
		return nil, err
	}
	want.Stubbed, want.Fixes = res.Stubbed, res.Fixes
	b, _ := json.MarshalIndent(want, "", "  ")
	if err := os.WriteFile(filepath.Join(tmp, stampFile), b, 0o644); err != nil {
		return nil, err
	}
	if err := os.RemoveAll(out); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, out); err != nil {
		return nil, err
	}
	logf("wrote %s: %d wrappers stubbed, %d Go fixes", opts.Out, len(res.Stubbed), len(res.Fixes))
	return res, writeWorkspace(opts.Workspace, out)
}

func sameLibtorch(a, b Libtorch) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

func readStamp(dir string) (stamp, bool) {
	var s stamp
	b, err := os.ReadFile(filepath.Join(dir, stampFile))
	if err != nil || json.Unmarshal(b, &s) != nil {
		return s, false
	}
	return s, true
}

// headersHash fingerprints the installed libtorch version, so an upgrade regenerates.
func headersHash(lt Libtorch) string {
	h := sha256.New()
	for _, d := range lt.IncludeDirs {
		for _, p := range []string{"torch/version.h", "torch/csrc/api/include/torch/version.h"} {
			if b, err := os.ReadFile(filepath.Join(d, p)); err == nil {
				h.Write(b)
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// moduleDir returns gotch's folder in the module cache, downloading it through the
// Go module proxy when it is not there yet.
func moduleDir() (string, error) {
	cmd := exec.Command("go", "mod", "download", "-json", GotchModule+"@"+GotchVersion)
	cmd.Dir = os.TempDir() // outside any module, so no go.mod or go.work interferes
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	outb, err := cmd.Output()
	var info struct{ Dir, Error string }
	_ = json.Unmarshal(outb, &info)
	if err != nil || info.Dir == "" {
		return "", fmt.Errorf("gotchgen: go mod download %s@%s: %v %s %s", GotchModule, GotchVersion, err, info.Error, strings.TrimSpace(stderr.String()))
	}
	return info.Dir, nil
}

// copyTree copies gotch's module (without its examples) into dst, writable.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() && (rel == "example" || rel == "gen") {
			return filepath.SkipDir
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
}

func fixGoFiles(dir string) ([]string, error) {
	files := map[string]string{}
	for _, f := range Fixes {
		if _, ok := files[f.File]; ok {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, f.File))
		if err != nil {
			return nil, fmt.Errorf("gotchgen: %w", err)
		}
		files[f.File] = string(b)
	}
	done, err := applyFixes(files)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(files[n]), 0o644); err != nil {
			return nil, err
		}
	}
	return done, nil
}

// stubUntilClean compiles gotch's C++ wrappers (syntax only, which is enough to see
// every type error) and stubs the wrappers the compiler rejects, until it compiles.
func stubUntilClean(dir string, lt Libtorch, logf func(string, ...any)) ([]string, error) {
	if _, err := exec.LookPath("g++"); err != nil {
		return nil, errors.New("gotchgen: g++ not found: install g++ (apt-get install g++)")
	}
	lib := filepath.Join(dir, "libtch")
	gen := filepath.Join(lib, GeneratedCPP)
	var all []string
	for pass := 1; pass <= 4; pass++ {
		args := append([]string{"-fsyntax-only", "-w", "-fmax-errors=0", "-I" + lib}, lt.CXXFlags()...)
		args = append(args, filepath.Join(lib, "torch_api.cpp"))
		logf("checking the C++ wrappers against libtorch (pass %d, ~20 s)", pass)
		cmd := exec.Command("g++", args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		if err == nil {
			return all, nil
		}
		lines := FailingLines(stderr.String())
		if len(lines) == 0 {
			return nil, fmt.Errorf("gotchgen: gotch's C++ does not compile, and not because of a generated wrapper:\n%s", head(stderr.String(), 40))
		}
		b, err := os.ReadFile(gen)
		if err != nil {
			return nil, err
		}
		fixed, names, err := StubWrappers(string(b), lines)
		if err != nil {
			return nil, fmt.Errorf("%w\n%s", err, head(stderr.String(), 40))
		}
		if len(names) == 0 {
			return nil, fmt.Errorf("gotchgen: compiler errors remain in stubbed wrappers:\n%s", head(stderr.String(), 40))
		}
		logf("stubbing %d wrappers that do not compile: %s", len(names), strings.Join(names, " "))
		if err := os.WriteFile(gen, []byte(fixed), 0o644); err != nil {
			return nil, err
		}
		all = append(all, names...)
	}
	return nil, errors.New("gotchgen: the C++ wrappers still do not compile after 4 passes")
}

func head(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}

// writeWorkspace writes ws/go.work: the main module plus a replace of gotch by dir.
func writeWorkspace(ws, dir string) error {
	if ws == "" {
		return nil
	}
	wsAbs, err := filepath.Abs(ws)
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(wsAbs, dir)
	if err != nil {
		return err
	}
	rel = filepath.ToSlash(rel)
	if !strings.HasPrefix(rel, "../") && !filepath.IsAbs(rel) {
		rel = "./" + rel
	}
	goVersion := "1.23.0"
	if b, err := os.ReadFile(filepath.Join(wsAbs, "go.mod")); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(l), "go "); ok {
				goVersion = strings.TrimSpace(v)
			}
		}
	}
	content := "// Generated by faultline's gotchgen (make setup). DO NOT EDIT.\n" +
		"go " + goVersion + "\n\nuse .\n\nreplace " + GotchModule + " " + GotchVersion + " => " + filepath.ToSlash(rel) + "\n"
	p := filepath.Join(wsAbs, "go.work")
	if b, err := os.ReadFile(p); err == nil && string(b) == content {
		return nil
	}
	return os.WriteFile(p, []byte(content), 0o644)
}
