package graph

import (
	"fmt"
	"maps"
	"slices"
)

// Graph is a network: Nodes in topological order over named values, with the
// weights as Initializers. The zero value is an empty graph.
type Graph struct {
	Name string
	Doc  string
	// Opset is the version of the default ("ai.onnx") operator set.
	Opset int
	// DomainOpsets holds the versions of other operator sets by domain.
	DomainOpsets map[string]int
	// IRVersion is the ONNX IR version of the file read (0 for a new graph).
	IRVersion int64
	// Producer and ProducerVersion name the tool that wrote the file read.
	Producer, ProducerVersion string
	// Metadata is the model's metadata_props.
	Metadata map[string]string
	Inputs   []Value
	Outputs  []Value
	// ValueInfo holds the types and shapes of intermediate values (ONNX
	// value_info); Fold fills it for every node output.
	ValueInfo    []Value
	Nodes        []Node
	Initializers []*Tensor
}

// Value describes a named tensor value: its element type and shape.
type Value struct {
	Name  string
	DType DType
	// Shape is the dimensions, -1 for a dynamic one. nil means the shape is
	// unknown; an empty, non-nil slice is a scalar.
	Shape []int64
	// DimNames optionally names dynamic dimensions (ONNX dim_param, e.g.
	// "batch"): DimNames[i] names Shape[i] when Shape[i] is -1. It is nil or as
	// long as Shape.
	DimNames []string
}

// Node is one operation.
type Node struct {
	Name string
	// Op is the operator type, e.g. "Conv"; Domain is its operator set, ""
	// for the default ONNX domain.
	Op     string
	Domain string
	// Inputs and Outputs name values; an empty name is an omitted optional
	// input or output.
	Inputs  []string
	Outputs []string
	Attrs   map[string]Attr
}

// Ref names the node for messages: `node "NAME"`, or for an unnamed node its op
// and first output.
func (n *Node) Ref() string {
	if n.Name != "" {
		return fmt.Sprintf("node %q", n.Name)
	}
	out := ""
	if len(n.Outputs) > 0 {
		out = n.Outputs[0]
	}
	return fmt.Sprintf("%s node with output %q", n.Op, out)
}

// Input returns input i, or "" when the node has fewer inputs.
func (n *Node) Input(i int) string {
	if i < len(n.Inputs) {
		return n.Inputs[i]
	}
	return ""
}

// Initializer returns the initializer called name, or nil.
func (g *Graph) Initializer(name string) *Tensor {
	for _, t := range g.Initializers {
		if t.Name == name {
			return t
		}
	}
	return nil
}

// InitializerMap returns the initializers by name.
func (g *Graph) InitializerMap() map[string]*Tensor {
	m := make(map[string]*Tensor, len(g.Initializers))
	for _, t := range g.Initializers {
		m[t.Name] = t
	}
	return m
}

// Value returns what the graph says about the value called name: from Inputs,
// Outputs, ValueInfo, or an initializer's type and shape.
func (g *Graph) Value(name string) (Value, bool) {
	for _, list := range [][]Value{g.Inputs, g.Outputs, g.ValueInfo} {
		for _, v := range list {
			if v.Name == name {
				return v, true
			}
		}
	}
	if t := g.Initializer(name); t != nil {
		return Value{Name: name, DType: t.DType, Shape: t.Shape}, true
	}
	return Value{}, false
}

// DataInputs returns the inputs that are not initializers (ONNX lets an
// initializer also be listed as an input, as a default value).
func (g *Graph) DataInputs() []Value {
	inits := g.InitializerMap()
	var out []Value
	for _, v := range g.Inputs {
		if inits[v.Name] == nil {
			out = append(out, v)
		}
	}
	return out
}

// Producers maps every node output to the index of the node computing it.
func (g *Graph) Producers() map[string]int {
	m := make(map[string]int)
	for i, n := range g.Nodes {
		for _, o := range n.Outputs {
			if o != "" {
				m[o] = i
			}
		}
	}
	return m
}

// Consumers maps every value to the indices of the nodes reading it.
func (g *Graph) Consumers() map[string][]int {
	m := make(map[string][]int)
	for i, n := range g.Nodes {
		for _, in := range n.Inputs {
			if in != "" && (len(m[in]) == 0 || m[in][len(m[in])-1] != i) {
				m[in] = append(m[in], i)
			}
		}
	}
	return m
}

// Clone returns a copy of g whose slices, maps and nodes are its own; tensors
// are shared (Fold and the other transformations never modify a tensor).
func (g *Graph) Clone() *Graph {
	h := *g
	h.DomainOpsets = maps.Clone(g.DomainOpsets)
	h.Metadata = maps.Clone(g.Metadata)
	h.Inputs = cloneValues(g.Inputs)
	h.Outputs = cloneValues(g.Outputs)
	h.ValueInfo = cloneValues(g.ValueInfo)
	h.Initializers = slices.Clone(g.Initializers)
	h.Nodes = make([]Node, len(g.Nodes))
	for i, n := range g.Nodes {
		h.Nodes[i] = n.clone()
	}
	return &h
}

func (n Node) clone() Node {
	n.Inputs = slices.Clone(n.Inputs)
	n.Outputs = slices.Clone(n.Outputs)
	n.Attrs = maps.Clone(n.Attrs)
	return n
}

func cloneValues(vs []Value) []Value {
	if vs == nil {
		return nil
	}
	out := make([]Value, len(vs))
	for i, v := range vs {
		out[i] = v.clone()
	}
	return out
}

func (v Value) clone() Value {
	v.Shape = slices.Clone(v.Shape)
	v.DimNames = slices.Clone(v.DimNames)
	return v
}

// Validate checks the graph's structure: every initializer's data matches its
// type and shape, names are unique, every node input is defined exactly once
// (a graph input, an initializer or the output of an earlier node: the nodes are
// in topological order), no value is produced twice, and every graph output is
// defined.
func (g *Graph) Validate() error {
	defined := make(map[string]string) // value -> what defines it
	inits := make(map[string]bool)
	for i, t := range g.Initializers {
		if t == nil {
			return fmt.Errorf("initializer %d is nil", i)
		}
		if t.Name == "" {
			return fmt.Errorf("initializer %d has no name", i)
		}
		if inits[t.Name] {
			return fmt.Errorf("initializer %q is defined twice", t.Name)
		}
		if err := t.check(); err != nil {
			return fmt.Errorf("initializer: %w", err)
		}
		inits[t.Name] = true
		defined[t.Name] = "an initializer"
	}
	seenInput := make(map[string]bool)
	for _, v := range g.Inputs {
		if v.Name == "" {
			return fmt.Errorf("graph input with no name")
		}
		if seenInput[v.Name] {
			return fmt.Errorf("graph input %q is listed twice", v.Name)
		}
		seenInput[v.Name] = true
		defined[v.Name] = "a graph input"
	}
	later := g.Producers()
	for i := range g.Nodes {
		n := &g.Nodes[i]
		if n.Op == "" {
			return fmt.Errorf("%s (node %d) has no op type", n.Ref(), i)
		}
		for _, in := range n.Inputs {
			if in == "" {
				continue
			}
			if _, ok := defined[in]; !ok {
				if j, ok := later[in]; ok && j >= i {
					return fmt.Errorf("%s reads %q before %s computes it (nodes not in topological order)",
						n.Ref(), in, g.Nodes[j].Ref())
				}
				return fmt.Errorf("%s reads %q, which nothing defines", n.Ref(), in)
			}
		}
		for name, a := range n.Attrs {
			if a.Kind == AttrTensor && a.Tensor != nil {
				if err := a.Tensor.check(); err != nil {
					return fmt.Errorf("%s: attribute %q: %w", n.Ref(), name, err)
				}
			}
		}
		for _, out := range n.Outputs {
			if out == "" {
				continue
			}
			if what, ok := defined[out]; ok {
				return fmt.Errorf("%s writes %q, already defined by %s", n.Ref(), out, what)
			}
			defined[out] = n.Ref()
		}
	}
	seenOutput := make(map[string]bool)
	for _, v := range g.Outputs {
		if _, ok := defined[v.Name]; !ok {
			return fmt.Errorf("graph output %q is not computed", v.Name)
		}
		if seenOutput[v.Name] {
			return fmt.Errorf("graph output %q is listed twice", v.Name)
		}
		seenOutput[v.Name] = true
	}
	return nil
}
