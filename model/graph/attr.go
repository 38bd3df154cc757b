package graph

import (
	"fmt"
	"slices"
)

// AttrKind is an attribute's type, numbered as ONNX's AttributeProto.AttributeType.
type AttrKind int32

// The attribute kinds. Graph models Float, Int, String, Tensor, Floats, Ints and
// Strings; the others are kept opaque (see Attr.Opaque).
const (
	AttrUndefined     AttrKind = 0
	AttrFloat         AttrKind = 1
	AttrInt           AttrKind = 2
	AttrString        AttrKind = 3
	AttrTensor        AttrKind = 4
	AttrGraph         AttrKind = 5
	AttrFloats        AttrKind = 6
	AttrInts          AttrKind = 7
	AttrStrings       AttrKind = 8
	AttrTensors       AttrKind = 9
	AttrGraphs        AttrKind = 10
	AttrSparseTensor  AttrKind = 11
	AttrSparseTensors AttrKind = 12
	AttrTypeProto     AttrKind = 13
	AttrTypeProtos    AttrKind = 14
)

var attrKindNames = map[AttrKind]string{
	AttrUndefined: "UNDEFINED", AttrFloat: "FLOAT", AttrInt: "INT", AttrString: "STRING",
	AttrTensor: "TENSOR", AttrGraph: "GRAPH", AttrFloats: "FLOATS", AttrInts: "INTS",
	AttrStrings: "STRINGS", AttrTensors: "TENSORS", AttrGraphs: "GRAPHS",
	AttrSparseTensor: "SPARSE_TENSOR", AttrSparseTensors: "SPARSE_TENSORS",
	AttrTypeProto: "TYPE_PROTO", AttrTypeProtos: "TYPE_PROTOS",
}

// String returns ONNX's name of the kind, e.g. "INTS".
func (k AttrKind) String() string {
	if s, ok := attrKindNames[k]; ok {
		return s
	}
	return fmt.Sprintf("AttrKind(%d)", int32(k))
}

// Attr is a node attribute; Kind says which field holds its value.
type Attr struct {
	Kind    AttrKind
	Int     int64
	Float   float32
	Str     string
	Ints    []int64
	Floats  []float32
	Strings []string
	Tensor  *Tensor
	// Opaque is the encoded ONNX AttributeProto of a kind graph does not model
	// (GRAPH, TENSORS, ...): model/onnx writes it back verbatim.
	Opaque []byte
}

// Int returns an INT attribute.
func Int(v int64) Attr { return Attr{Kind: AttrInt, Int: v} }

// Float returns a FLOAT attribute.
func Float(v float32) Attr { return Attr{Kind: AttrFloat, Float: v} }

// Str returns a STRING attribute.
func Str(v string) Attr { return Attr{Kind: AttrString, Str: v} }

// Ints returns an INTS attribute.
func Ints(v ...int64) Attr { return Attr{Kind: AttrInts, Ints: v} }

// Floats returns a FLOATS attribute.
func Floats(v ...float32) Attr { return Attr{Kind: AttrFloats, Floats: v} }

// TensorAttr returns a TENSOR attribute.
func TensorAttr(t *Tensor) Attr { return Attr{Kind: AttrTensor, Tensor: t} }

// Equal reports whether a and b hold the same value (tensors compared by content).
func (a Attr) Equal(b Attr) bool {
	if a.Kind != b.Kind || a.Int != b.Int || a.Str != b.Str ||
		!slices.Equal(a.Ints, b.Ints) || !slices.Equal(a.Strings, b.Strings) ||
		!slices.Equal(a.Opaque, b.Opaque) {
		return false
	}
	if a.Float != b.Float && !(a.Float != a.Float && b.Float != b.Float) {
		return false
	}
	if len(a.Floats) != len(b.Floats) {
		return false
	}
	for i := range a.Floats {
		if a.Floats[i] != b.Floats[i] && !(a.Floats[i] != a.Floats[i] && b.Floats[i] != b.Floats[i]) {
			return false
		}
	}
	if (a.Tensor == nil) != (b.Tensor == nil) {
		return false
	}
	return a.Tensor == nil || a.Tensor.Equal(b.Tensor)
}

// Equal reports whether t and u have the same name, type, shape and bytes.
func (t *Tensor) Equal(u *Tensor) bool {
	return t.Name == u.Name && t.DType == u.DType && slices.Equal(t.Shape, u.Shape) &&
		string(t.raw) == string(u.raw)
}

// attr returns the attribute name, checking its kind; ok is false when absent.
func (n *Node) attr(name string, kind AttrKind) (Attr, bool, error) {
	a, ok := n.Attrs[name]
	if !ok {
		return Attr{}, false, nil
	}
	if a.Kind != kind {
		return Attr{}, false, fmt.Errorf("%s: attribute %q: is %v, want %v", n.Ref(), name, a.Kind, kind)
	}
	return a, true, nil
}

// AttrInt returns the INT attribute name, or def when the node has none.
func (n *Node) AttrInt(name string, def int64) (int64, error) {
	a, ok, err := n.attr(name, AttrInt)
	if !ok {
		return def, err
	}
	return a.Int, nil
}

// AttrFloat returns the FLOAT attribute name, or def when the node has none.
func (n *Node) AttrFloat(name string, def float32) (float32, error) {
	a, ok, err := n.attr(name, AttrFloat)
	if !ok {
		return def, err
	}
	return a.Float, nil
}

// AttrString returns the STRING attribute name, or def when the node has none.
func (n *Node) AttrString(name string, def string) (string, error) {
	a, ok, err := n.attr(name, AttrString)
	if !ok {
		return def, err
	}
	return a.Str, nil
}

// AttrInts returns the INTS attribute name, or def when the node has none.
func (n *Node) AttrInts(name string, def []int64) ([]int64, error) {
	a, ok, err := n.attr(name, AttrInts)
	if !ok {
		return def, err
	}
	return a.Ints, nil
}

// AttrFloats returns the FLOATS attribute name, or def when the node has none.
func (n *Node) AttrFloats(name string, def []float32) ([]float32, error) {
	a, ok, err := n.attr(name, AttrFloats)
	if !ok {
		return def, err
	}
	return a.Floats, nil
}

// AttrTensor returns the TENSOR attribute name, or nil when the node has none.
func (n *Node) AttrTensor(name string) (*Tensor, error) {
	a, ok, err := n.attr(name, AttrTensor)
	if !ok {
		return nil, err
	}
	if a.Tensor == nil {
		return nil, fmt.Errorf("%s: attribute %q: TENSOR without a tensor", n.Ref(), name)
	}
	return a.Tensor, nil
}
