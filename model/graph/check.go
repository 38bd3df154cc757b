package graph

import (
	"fmt"
	"sort"
	"strings"
)

// supported lists the operations (default domain) faultline's later layers
// execute: the network ops and the ones Fold evaluates.
var supported = map[string]bool{
	"Conv": true, "Gemm": true, "MatMul": true, "Add": true, "Sub": true, "Mul": true,
	"Div": true, "BatchNormalization": true, "Relu": true, "LeakyRelu": true, "PRelu": true,
	"Clip": true, "Sigmoid": true, "HardSigmoid": true, "HardSwish": true, "Tanh": true,
	"Softmax": true, "MaxPool": true, "AveragePool": true, "GlobalAveragePool": true,
	"Flatten": true, "Reshape": true, "Transpose": true, "Concat": true, "Split": true,
	"Slice": true, "Pad": true, "ReduceMean": true, "Squeeze": true, "Unsqueeze": true,
	"Identity": true, "Dropout": true, "Constant": true,
	// folded by Fold, accepted if some remain
	"ConstantOfShape": true, "Shape": true, "Gather": true, "Cast": true, "Range": true,
	"Equal": true, "Where": true,
}

// IsSupported reports whether Check accepts the default-domain op type op (in
// the forms Check allows).
func IsSupported(op string) bool { return supported[op] }

// SupportedOps returns the default-domain op types Check accepts, sorted.
func SupportedOps() []string {
	ops := make([]string, 0, len(supported))
	for op := range supported {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	return ops
}

// MinOpset and MaxOpset bound the default-domain opset versions Check accepts.
const (
	MinOpset = 11
	MaxOpset = 17
)

// UnsupportedOp is an operation Check rejects and the nodes using it.
type UnsupportedOp struct {
	// Op is the op type, qualified by its domain outside the default one and
	// followed by the reason when the op is supported only in other forms, e.g.
	// "Pad(mode=reflect)".
	Op    string
	Nodes []string
}

// UnsupportedError lists every unsupported operation of a graph.
type UnsupportedError struct {
	Ops []UnsupportedOp
}

// Error lists the ops with their nodes, e.g. "unsupported operations: LSTM
// (nodes lstm_1, lstm_2), Resize (node up1)".
func (e *UnsupportedError) Error() string {
	parts := make([]string, len(e.Ops))
	for i, op := range e.Ops {
		word := "node"
		if len(op.Nodes) > 1 {
			word = "nodes"
		}
		parts[i] = fmt.Sprintf("%s (%s %s)", op.Op, word, strings.Join(op.Nodes, ", "))
	}
	return "unsupported operations: " + strings.Join(parts, ", ")
}

// DynamicDim is a dimension other than the batch that is not static; Dim is -1
// when the value's shape is unknown altogether.
type DynamicDim struct {
	Value string
	Dim   int
}

// DynamicShapeError lists the values whose shapes are not static apart from the
// batch dimension.
type DynamicShapeError struct {
	Dims []DynamicDim
}

// Error names the first few values and dimensions.
func (e *DynamicShapeError) Error() string {
	const show = 6
	var parts []string
	for i, d := range e.Dims {
		if i == show {
			parts = append(parts, fmt.Sprintf("and %d more", len(e.Dims)-show))
			break
		}
		if d.Dim < 0 {
			parts = append(parts, fmt.Sprintf("%q (unknown shape)", d.Value))
		} else {
			parts = append(parts, fmt.Sprintf("%q dimension %d", d.Value, d.Dim))
		}
	}
	return "dynamic shapes other than the batch: " + strings.Join(parts, ", ")
}

// OpsetError reports a default-domain opset outside MinOpset..MaxOpset.
type OpsetError struct {
	Opset int
}

// Error says which opsets are supported.
func (e *OpsetError) Error() string {
	return fmt.Sprintf("opset %d not supported (want %d to %d)", e.Opset, MinOpset, MaxOpset)
}

// checkErrors joins Check's errors with "; ".
type checkErrors []error

// Error joins the messages.
func (e checkErrors) Error() string {
	s := make([]string, len(e))
	for i, err := range e {
		s[i] = err.Error()
	}
	return strings.Join(s, "; ")
}

// Unwrap returns the errors, for errors.As and errors.Is.
func (e checkErrors) Unwrap() []error { return e }

// Check reports whether faultline can run g, normally a graph from Fold: the
// opset is within MinOpset..MaxOpset (*OpsetError), every op is supported (IsSupported) in the
// form used (*UnsupportedError, listing every op with its nodes), and every value
// read or output has a known shape that is static apart from the first
// (batch) dimension (*DynamicShapeError). All problems are reported in one
// error; use errors.As to get each kind.
func Check(g *Graph) error {
	var errs checkErrors
	if g.Opset < MinOpset || g.Opset > MaxOpset {
		errs = append(errs, &OpsetError{Opset: g.Opset})
	}
	if u := unsupported(g); u != nil {
		errs = append(errs, u)
	}
	if d := dynamic(g); d != nil {
		errs = append(errs, d)
	}
	if len(errs) == 0 {
		return nil
	}
	return errs
}

// nodeName names node i for Check's lists.
func nodeName(g *Graph, i int) string {
	if g.Nodes[i].Name != "" {
		return g.Nodes[i].Name
	}
	return fmt.Sprintf("#%d", i)
}

func unsupported(g *Graph) *UnsupportedError {
	byOp := map[string][]string{}
	for i := range g.Nodes {
		if op := unsupportedForm(g, &g.Nodes[i]); op != "" {
			byOp[op] = append(byOp[op], nodeName(g, i))
		}
	}
	if len(byOp) == 0 {
		return nil
	}
	e := &UnsupportedError{}
	for op, nodes := range byOp {
		e.Ops = append(e.Ops, UnsupportedOp{Op: op, Nodes: nodes})
	}
	sort.Slice(e.Ops, func(i, j int) bool { return e.Ops[i].Op < e.Ops[j].Op })
	return e
}

// unsupportedForm returns how n is unsupported, or "".
func unsupportedForm(g *Graph, n *Node) string {
	if n.Domain != "" && n.Domain != "ai.onnx" {
		return n.Domain + "." + n.Op
	}
	if !supported[n.Op] {
		return n.Op
	}
	switch n.Op {
	case "Pad":
		if mode, err := n.AttrString("mode", "constant"); err != nil || mode != "constant" {
			return fmt.Sprintf("Pad(mode=%s)", mode)
		}
	case "BatchNormalization":
		if t, err := n.AttrInt("training_mode", 0); err != nil || t != 0 || len(n.Outputs) > 1 {
			return "BatchNormalization(training)"
		}
	case "Conv", "MaxPool", "AveragePool":
		if v, ok := g.Value(n.Input(0)); ok && v.Shape != nil && len(v.Shape) != 4 {
			return fmt.Sprintf("%s(%d-D)", n.Op, len(v.Shape)-2)
		}
		if n.Op == "MaxPool" && len(n.Outputs) > 1 && n.Outputs[1] != "" {
			return "MaxPool(indices)"
		}
	}
	return ""
}

func dynamic(g *Graph) *DynamicShapeError {
	known := map[string]Value{}
	for _, list := range [][]Value{g.ValueInfo, g.Outputs, g.Inputs} {
		for _, v := range list {
			known[v.Name] = v
		}
	}
	for _, t := range g.Initializers {
		known[t.Name] = Value{Name: t.Name, Shape: t.Shape}
	}
	batchName := ""
	if in := g.DataInputs(); len(in) > 0 && len(in[0].DimNames) > 0 {
		batchName = in[0].DimNames[0]
	}
	var dims []DynamicDim
	seen := map[string]bool{}
	visit := func(name string) {
		if name == "" || seen[name] {
			return
		}
		seen[name] = true
		v, ok := known[name]
		if !ok || v.Shape == nil {
			dims = append(dims, DynamicDim{Value: name, Dim: -1})
			return
		}
		for i, d := range v.Shape {
			if d >= 0 {
				continue
			}
			dimName := ""
			if i < len(v.DimNames) {
				dimName = v.DimNames[i]
			}
			if i != 0 || dimName != batchName {
				dims = append(dims, DynamicDim{Value: name, Dim: i})
			}
		}
	}
	for _, v := range g.DataInputs() {
		visit(v.Name)
	}
	for _, n := range g.Nodes {
		for _, in := range n.Inputs {
			visit(in)
		}
	}
	for _, v := range g.Outputs {
		visit(v.Name)
	}
	if dims == nil {
		return nil
	}
	return &DynamicShapeError{Dims: dims}
}
