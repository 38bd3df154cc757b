// Package report reads faultline's result JSON files (by their kind and
// schema_version) and renders them as one self-contained HTML report with
// hand-written, deterministic SVG plots.
//
// It imports no engine package: the structs here hold only the fields the
// report reads, so any faultline result file, old or new, can be rendered as
// long as its kind and schema version are known.
package report
