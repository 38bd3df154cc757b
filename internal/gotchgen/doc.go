// Package gotchgen adapts github.com/sugarme/gotch v0.8.0 to the libtorch installed on
// this machine: it copies the module from the Go module cache into a build folder,
// rewrites the cgo flags for the detected libtorch, stubs the C++ wrappers that do not
// compile against it (found from the compiler's own errors), and applies the small Go
// fixes for v0.8.0 bugs that faultline relies on.
//
// Nothing of gotch is committed to faultline: the folder it writes is generated, and a
// go.work file (also generated) points the build at it. cmd/gotchgen is the command.
package gotchgen
