package gotchgen

import (
	"fmt"
	"regexp"
	"strings"
)

// A Fix is one small, documented change to a gotch v0.8.0 Go source file, for a bug
// that faultline relies on being fixed. Each fix must apply (match at least once):
// a gotch that no longer matches is an error, not a silent skip.
type Fix struct {
	// File is the path inside the gotch module, e.g. "libtch/tensor.go".
	File string
	// Why says what was wrong, for the generated README and the logs.
	Why string
	// Apply rewrites the file content and reports how many places it changed.
	Apply func(src string) (string, int)
}

// replaceAll returns an Apply that replaces every occurrence of old with new.
func replaceAll(old, new string) func(string) (string, int) {
	return func(src string) (string, int) {
		n := strings.Count(src, old)
		return strings.ReplaceAll(src, old, new), n
	}
}

// replaceRegexp returns an Apply that rewrites every match of re with repl.
func replaceRegexp(re *regexp.Regexp, repl string) func(string) (string, int) {
	return func(src string) (string, int) {
		n := len(re.FindAllStringIndex(src, -1))
		return re.ReplaceAllString(src, repl), n
	}
}

// boolResult matches how the generated bindings read a C bool result: as a Go int,
// i.e. 8 bytes of which only the first belongs to the result.
var boolResult = regexp.MustCompile(`cbool := \*\(\*int\)\(unsafe\.Pointer\(&cResult\)\)\s*\n\s*if cbool == 1\{return true\}\s*\n\s*return false`)

// Fixes are the Go-side fixes applied to the copied gotch, in order.
var Fixes = []Fix{
	{
		File:  "libtch/c-generated.go",
		Why:   "bool-returning ops read the 4-byte C int result as an 8-byte Go int, so Equal(ones, ones) was usually false",
		Apply: replaceRegexp(boolResult, "return cResult != 0"),
	},
	{
		File:  "libtch/tensor.go",
		Why:   "AtGradSetEnabled read the 4-byte C int result as an 8-byte Go int, so the previous grad mode came back wrong",
		Apply: replaceAll("return *(*int)(unsafe.Pointer(&cretVal))", "return int(cretVal)"),
	},
	{
		File:  "libtch/tensor.go",
		Why:   "AtDevice read the 4-byte C int device as an 8-byte Go int (CPU is -1)",
		Apply: replaceAll("return *(*int)(unsafe.Pointer(&cint))", "return int(cint)"),
	},
	{
		File:  "device.go",
		Why:   "Device.OfCInt returned Device{CPU, 1} for CPU tensors while gotch.CPU is Device{CPU, -1}, so a CPU tensor's Device() never equalled gotch.CPU",
		Apply: replaceAll("return Device{Name: \"CPU\", Value: 1}", "return CPU"),
	},
	{
		File:  "nn/varstore.go",
		Why:   "Path.Sub appended to its parent's slice, so sibling sub-paths at depth 3 could share and overwrite a name (conv2.weight for conv1)",
		Apply: replaceAll("\tpath := p.path\n\tpath = append(path, str)\n", "\tpath := make([]string, 0, len(p.path)+1)\n\tpath = append(append(path, p.path...), str)\n"),
	},
	{
		File:  "pickle/serialization.go",
		Why:   "reading an empty or zero-filled .pt looped forever (a break that left only the switch on io.EOF)",
		Apply: replaceAll("\t\tcase io.EOF:\n\t\t\tbreak // End of archive\n", "\t\tcase io.EOF:\n\t\t\treturn nil, fmt.Errorf(\"not a PyTorch file: empty or zero-filled\")\n"),
	},
	{
		File: "pickle/serialization.go",
		Why:  "a .pt whose pickle declared a huge storage allocated it before reading (fatal out of memory); check it against the record's size",
		Apply: replaceAll("\tstorage := dataType.New(size, location)\n\terr = storage.SetFromFileWithSize(f, size)\n",
			"\tif size < 0 || uint64(size) > file.UncompressedSize64 {\n\t\treturn nil, fmt.Errorf(\"storage %s declares %d elements but its record holds %d bytes\", key, size, file.UncompressedSize64)\n\t}\n\tstorage := dataType.New(size, location) // size checked above\n\terr = storage.SetFromFileWithSize(f, size)\n"),
	},
	{
		File: "pickle/storage.go",
		Why:  "legacy .pt storages allocated whatever size the file declared; refuse absurd sizes",
		Apply: replaceAll("\tsize := int(binary.LittleEndian.Uint64(sizeBuf))\n\treturn s.SetFromFileWithSize(r, size)\n",
			"\tsize := int(binary.LittleEndian.Uint64(sizeBuf))\n\tif size < 0 || size > 1<<31 {\n\t\treturn fmt.Errorf(\"storage declares %d elements\", size)\n\t}\n\treturn s.SetFromFileWithSize(r, size)\n"),
	},
	{
		File: "init.go",
		Why:  "an unwritable cache dir ($HOME/.cache/gotch) ended the process with log.Fatal at import time; fall back to the temp dir",
		Apply: replaceAll("\t\tif err := os.MkdirAll(CachedDir, 0755); err != nil {\n\t\t\tlog.Fatal(err)\n\t\t}\n",
			"\t\tif err := os.MkdirAll(CachedDir, 0755); err != nil {\n\t\t\tCachedDir = os.TempDir() + \"/gotch\"\n\t\t\t_ = os.MkdirAll(CachedDir, 0755)\n\t\t\t_ = log.Prefix\n\t\t}\n"),
	},
	{
		File: "ts/tensor-generated.go",
		Why:  "in-place ops (Put_, Relu_, ...) replaced the tensor's C handle with the one libtorch returns without freeing the old handle, which kept the tensor's storage alive: every call leaked the whole tensor (a Tensor copied by value, as nn.VarStore.Variables returns them, shares its handle: do not call in-place ops on such copies)",
		Apply: replaceAll("  }\n  ts.ctensor = *ptr\n",
			"  }\n  lib.AtFree(ts.ctensor) // the old handle\n  ts.ctensor = *ptr\n  C.free(unsafe.Pointer(ptr))\n"),
	},
}

// applyFixes runs every fix on the files map (path -> content), in place.
func applyFixes(files map[string]string) ([]string, error) {
	var done []string
	for _, f := range Fixes {
		src, ok := files[f.File]
		if !ok {
			return nil, fmt.Errorf("gotchgen: fix for %s: file not read", f.File)
		}
		out, n := f.Apply(src)
		if n == 0 {
			return nil, fmt.Errorf("gotchgen: fix for %s (%s) matched nothing: is this gotch v0.8.0?", f.File, f.Why)
		}
		files[f.File] = out
		done = append(done, fmt.Sprintf("%s: %s (%d place(s))", f.File, f.Why, n))
	}
	return done, nil
}
