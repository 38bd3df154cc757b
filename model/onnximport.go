package model

import (
	"errors"
	"fmt"
	"strings"

	"github.com/faultline/faultline/model/graph"
	"github.com/faultline/faultline/model/onnx"
	"github.com/sugarme/gotch"
)

// ImportONNX reads the ONNX model at path and builds it on dev for inputs of
// per-sample shape input (channels, height, width: the data set's images),
// returning it with what a checkpoint records about the file (DescribeONNX).
//
// Every check comes before anything is built, and each failure is one error:
// the graph must have one data input declared [batch, C, H, W] with C, H and W
// static and equal to input (a mismatch names both shapes); the ops must all be
// supported in an opset faultline reads and the declared spatial dimensions
// must be static (one error lists every unsupported op with its nodes, the
// opset, and the dynamic input dimensions: use errors.As for
// *graph.UnsupportedError, *graph.OpsetError and *graph.DynamicShapeError);
// then the graph is folded for input and checked again (graph.Check: no value
// may keep a dynamic shape other than the batch), and must end with logits
// [batch, classes].
func ImportONNX(path string, input []int64, dev gotch.Device) (*Model, *ONNXSource, error) {
	g, err := onnx.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	src, err := DescribeONNX(path, g)
	if err != nil {
		return nil, nil, err
	}
	want := append([]int64{-1}, input...)
	shape := src.InputShape
	if len(shape) != len(want) {
		return nil, nil, fmt.Errorf("model: %s: input %q has shape %s, the data set's images are %s", path, src.Input, fmtShape(shape), fmtShape(want))
	}
	var dyn []graph.DynamicDim
	for i := 1; i < len(shape); i++ {
		switch {
		case shape[i] < 0:
			dyn = append(dyn, graph.DynamicDim{Value: src.Input, Dim: i})
		case shape[i] != want[i]:
			return nil, nil, fmt.Errorf("model: %s: input %q has shape %s, the data set's images are %s", path, src.Input, fmtShape(shape), fmtShape(want))
		}
	}
	// Unsupported ops and opsets first (folding would fail on what they
	// compute), with the dynamic input dimensions, in one error.
	var errs []error
	if err := graph.Check(g); err != nil {
		var o *graph.OpsetError
		var u *graph.UnsupportedError
		if errors.As(err, &o) {
			errs = append(errs, o)
		}
		if errors.As(err, &u) {
			errs = append(errs, u)
		}
	}
	if len(dyn) > 0 {
		errs = append(errs, &graph.DynamicShapeError{Dims: dyn})
	}
	if len(errs) > 0 {
		err := errors.Join(errs...)
		msg := err.Error()
		if len(dyn) > 0 {
			msg += fmt.Sprintf(" (export the model with static spatial sizes: %s)", fmtShape(want))
		}
		return nil, nil, &importError{msg: fmt.Sprintf("model: %s: %s", path, oneLine(msg)), errs: errs}
	}
	h, err := graph.Fold(g, input)
	if err != nil {
		return nil, nil, fmt.Errorf("model: %s: %w", path, err)
	}
	if err := graph.Check(h); err != nil {
		return nil, nil, fmt.Errorf("model: %s: %w", path, err)
	}
	if out := h.Outputs; len(out) != 1 || len(out[0].Shape) != 2 || out[0].Shape[1] < 2 {
		return nil, nil, fmt.Errorf("model: %s: the output must be logits [batch, classes], have %v", path, h.Outputs)
	}
	m, err := FromGraph(h, dev)
	if err != nil {
		return nil, nil, fmt.Errorf("model: %s: %w", path, err)
	}
	return m, src, nil
}

// importError is ImportONNX's error listing several problems on one line; it
// unwraps to each.
type importError struct {
	msg  string
	errs []error
}

func (e *importError) Error() string   { return e.msg }
func (e *importError) Unwrap() []error { return e.errs }

// oneLine joins the lines of errors.Join's message with "; ".
func oneLine(s string) string { return strings.ReplaceAll(s, "\n", "; ") }

// fmtShape writes a shape with "batch" for its first dimension when dynamic
// and "?" for other dynamic ones, e.g. [batch 1 28 28].
func fmtShape(s []int64) string {
	if s == nil {
		return "unknown"
	}
	out := "["
	for i, d := range s {
		if i > 0 {
			out += " "
		}
		switch {
		case d >= 0:
			out += fmt.Sprint(d)
		case i == 0:
			out += "batch"
		default:
			out += "?"
		}
	}
	return out + "]"
}
