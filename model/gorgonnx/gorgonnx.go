package gorgonnx

import (
	"bytes"
	"fmt"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"

	onnxgo "github.com/owulveryck/onnx-go"
	gx "github.com/owulveryck/onnx-go/backend/x/gorgonnx"
	"gorgonia.org/tensor"

	"github.com/faultline/faultline/model/graph"
	"github.com/faultline/faultline/model/onnx"
)

// MaxBatch is the largest number of images one gorgonnx run computes at once:
// Run splits a larger set into runs of MaxBatch images (the last one padded
// with zero images), which bounds gorgonia's memory (it keeps every
// intermediate tensor of the batch).
const MaxBatch = 32

// maxBatch is MaxBatch, lowered by tests.
var maxBatch int64 = MaxBatch

// minBatch is the smallest batch a graph with a dynamic batch is run with
// (a single image is padded with a zero image): for a batch of one, gorgonnx
// takes code paths that overwrite their inputs (BatchNormalization, and Gemm
// whose bias has a row's size).
const minBatch = 2

// UnsupportedError lists the operations of a model that gorgonnx cannot run,
// in the forms used, even after the rewrites described in the package
// documentation.
type UnsupportedError struct {
	// Model names the model (its file or graph name).
	Model string
	// Ops are the op types, each followed by the form that is not supported
	// where the op is supported in others, e.g. "Conv(asymmetric pads)", with
	// the names of the nodes using them (as in the model).
	Ops []graph.UnsupportedOp
}

// Error names the model and lists the ops with their nodes, e.g. "gorgonnx
// cannot run net.onnx: LSTM (node lstm_1), Conv(dilations) (nodes c1, c2)".
func (e *UnsupportedError) Error() string {
	parts := make([]string, len(e.Ops))
	for i, op := range e.Ops {
		word := "node"
		if len(op.Nodes) > 1 {
			word = "nodes"
		}
		nodes := op.Nodes
		more := ""
		if len(nodes) > 5 {
			nodes, more = nodes[:5], fmt.Sprintf(" and %d more", len(op.Nodes)-5)
		}
		parts[i] = fmt.Sprintf("%s (%s %s%s)", op.Op, word, strings.Join(nodes, ", "), more)
	}
	return fmt.Sprintf("gorgonnx cannot run %s: %s", e.Model, strings.Join(parts, ", "))
}

// OpNames returns the unsupported op types with their forms, e.g.
// ["Conv(asymmetric pads)", "LSTM"].
func (e *UnsupportedError) OpNames() []string {
	names := make([]string, len(e.Ops))
	for i, op := range e.Ops {
		names[i] = op.Op
	}
	return names
}

// Supports reports whether Run can execute g, a graph as read by model/onnx
// (folded or not): nil, an *UnsupportedError naming every op gorgonnx cannot
// run, or an error saying why the graph could not be analysed (it cannot be
// folded, or its input shape is not static apart from the batch).
func Supports(g *graph.Graph) error {
	name := modelName(g, "")
	ins := g.DataInputs()
	if len(ins) != 1 {
		return fmt.Errorf("gorgonnx: %s: %d data inputs, want 1", name, len(ins))
	}
	s := ins[0].Shape
	if len(s) < 2 {
		return fmt.Errorf("gorgonnx: %s: input %q has shape %v", name, ins[0].Name, s)
	}
	for _, d := range s[1:] {
		if d <= 0 {
			return fmt.Errorf("gorgonnx: %s: input %q has shape %v, not static apart from the batch", name, ins[0].Name, s)
		}
	}
	h, batch, err := foldFor(name, g, s[1:], minBatch)
	if err != nil {
		return err
	}
	_, err = prepare(name, h, batch)
	return err
}

// Run runs the ONNX model file at path on gorgonnx for images, float32 data
// of shape [N C H W] (row-major), and returns the logits, N rows of classes
// values. See RunGraph.
func Run(path string, images []float32, shape []int64) (logits []float32, classes int, err error) {
	g, err := onnx.ReadFile(path)
	if err != nil {
		return nil, 0, fmt.Errorf("gorgonnx: %w", err)
	}
	return RunGraph(filepath.Base(path), g, images, shape)
}

// RunGraph runs g (a graph as read by model/onnx) on gorgonnx for images of
// shape [N C H W] and returns the logits (N rows of classes values). name
// names the model in errors (g.Name when empty).
//
// The graph is folded for the images' shape, rewritten for a fixed batch
// (see the package documentation), encoded as ONNX, decoded by onnx-go into a
// gorgonnx graph and run in batches of at most MaxBatch images. An
// unsupported graph gives an *UnsupportedError; a panic inside onnx-go or
// gorgonia is recovered and returned as an error naming the model.
func RunGraph(name string, g *graph.Graph, images []float32, shape []int64) (logits []float32, classes int, err error) {
	name = modelName(g, name)
	if len(shape) != 4 {
		return nil, 0, fmt.Errorf("gorgonnx: %s: image shape %v, want [N C H W]", name, shape)
	}
	for _, d := range shape {
		if d <= 0 {
			return nil, 0, fmt.Errorf("gorgonnx: %s: image shape %v", name, shape)
		}
	}
	n := shape[0]
	per := shape[1] * shape[2] * shape[3]
	if int64(len(images)) != n*per {
		return nil, 0, fmt.Errorf("gorgonnx: %s: %d image values for shape %v (want %d)", name, len(images), shape, n*per)
	}
	h, batch, err := foldFor(name, g, shape[1:], max(minBatch, min(n, maxBatch)))
	if err != nil {
		return nil, 0, err
	}
	p, err := prepare(name, h, batch)
	if err != nil {
		return nil, 0, err
	}
	var buf bytes.Buffer
	if err := onnx.Encode(&buf, p); err != nil {
		return nil, 0, fmt.Errorf("gorgonnx: %s: encoding the rewritten graph: %w", name, err)
	}
	return execute(name, buf.Bytes(), images, shape, batch)
}

// modelName returns name, or else g's name, or "model".
func modelName(g *graph.Graph, name string) string {
	switch {
	case name != "":
		return name
	case g != nil && g.Name != "":
		return g.Name
	}
	return "model"
}

// foldFor folds g for inputs of shape inShape (without the batch) and returns
// it with the batch size to run it with: the graph's own when its input
// declares a static one, else want.
func foldFor(name string, g *graph.Graph, inShape []int64, want int64) (*graph.Graph, int64, error) {
	if g == nil {
		return nil, 0, fmt.Errorf("gorgonnx: %s: nil graph", name)
	}
	ins := g.DataInputs()
	if len(ins) != 1 {
		return nil, 0, fmt.Errorf("gorgonnx: %s: %d data inputs, want 1", name, len(ins))
	}
	if s := ins[0].Shape; s != nil {
		if len(s) != len(inShape)+1 {
			return nil, 0, fmt.Errorf("gorgonnx: %s: input %q has shape %v, images %v", name, ins[0].Name, s, inShape)
		}
		for i, d := range s[1:] {
			if d >= 0 && d != inShape[i] {
				return nil, 0, fmt.Errorf("gorgonnx: %s: input %q has shape %v, images %v", name, ins[0].Name, s, inShape)
			}
		}
	}
	h, err := graph.Fold(g, inShape)
	if err != nil {
		return nil, 0, fmt.Errorf("gorgonnx: %s: %w", name, err)
	}
	batch := want
	if s := h.DataInputs()[0].Shape; len(s) > 0 && s[0] > 0 {
		batch = s[0]
	}
	return h, batch, nil
}

// mu serialises gorgonnx: it numbers the gorgonia nodes it creates with an
// unsynchronised package counter.
var mu sync.Mutex

// execute decodes the ONNX model into gorgonnx and runs it on the images,
// batch images at a time.
func execute(name string, model []byte, images []float32, shape []int64, batch int64) (logits []float32, classes int, err error) {
	mu.Lock()
	defer mu.Unlock()
	defer func() {
		if p := recover(); p != nil {
			logits, classes = nil, 0
			err = fmt.Errorf("gorgonnx: %s: panic in onnx-go/gorgonia: %v\n%s", name, p, firstFrames(debug.Stack()))
		}
	}()
	backend := gx.NewGraph()
	m := onnxgo.NewModel(backend)
	if err := m.UnmarshalBinary(model); err != nil {
		return nil, 0, fmt.Errorf("gorgonnx: %s: onnx-go decoding: %w", name, err)
	}
	n, per := shape[0], shape[1]*shape[2]*shape[3]
	in := make([]float32, batch*per)
	for start := int64(0); start < n; start += batch {
		count := min(batch, n-start)
		copy(in, images[start*per:(start+count)*per])
		clear(in[count*per:])
		t := tensor.New(tensor.WithShape(int(batch), int(shape[1]), int(shape[2]), int(shape[3])),
			tensor.WithBacking(append([]float32(nil), in...)))
		if err := m.SetInput(0, t); err != nil {
			return nil, 0, fmt.Errorf("gorgonnx: %s: setting the input: %w", name, err)
		}
		if err := backend.Run(); err != nil {
			return nil, 0, fmt.Errorf("gorgonnx: %s: running images %d-%d: %w", name, start, start+count-1, err)
		}
		outs, err := m.GetOutputTensors()
		if err != nil {
			return nil, 0, fmt.Errorf("gorgonnx: %s: reading the output: %w", name, err)
		}
		if len(outs) != 1 || outs[0] == nil {
			return nil, 0, fmt.Errorf("gorgonnx: %s: %d outputs", name, len(outs))
		}
		s := outs[0].Shape()
		data, ok := outs[0].Data().([]float32)
		if !ok || len(s) != 2 || int64(s[0]) != batch || len(data) != s[0]*s[1] {
			return nil, 0, fmt.Errorf("gorgonnx: %s: output of shape %v and type %v, want float32 [%d classes]",
				name, s, outs[0].Dtype(), batch)
		}
		if classes == 0 {
			classes = s[1]
			logits = make([]float32, 0, int(n)*classes)
		}
		logits = append(logits, data[:int(count)*classes]...)
	}
	return logits, classes, nil
}

// firstFrames keeps the start of a stack trace (where the panic happened).
func firstFrames(stack []byte) string {
	lines := strings.Split(string(stack), "\n")
	if len(lines) > 24 {
		lines = lines[:24]
	}
	return strings.Join(lines, "\n")
}
