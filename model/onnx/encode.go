package onnx

import (
	"fmt"
	"io"
	"sort"

	"github.com/faultline/faultline/model/graph"
)

// Producer is the producer_name Encode writes.
const Producer = "faultline"

// defaultIRVersion is written for graphs without an IR version of their own
// (or one older than 4, which needed initializers listed as inputs).
const defaultIRVersion = 8

// Encode writes g to w as an ONNX model: the IR version read (8 for a new
// graph), g's opsets, producer "faultline", the metadata, and the graph with
// every tensor as raw_data. Intermediate values are written as value_info.
func Encode(w io.Writer, g *graph.Graph) error {
	b, err := encodeModel(g)
	if err != nil {
		return fmt.Errorf("onnx: encode: %w", err)
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("onnx: encode: %w", err)
	}
	return nil
}

func encodeModel(g *graph.Graph) ([]byte, error) {
	if g.Opset <= 0 {
		return nil, fmt.Errorf("graph %q has no opset", g.Name)
	}
	for _, t := range g.Initializers {
		if t == nil {
			return nil, fmt.Errorf("graph %q has a nil initializer", g.Name)
		}
	}
	var e encoder
	ir := g.IRVersion
	if ir < 4 {
		ir = defaultIRVersion
	}
	e.varint(modelIRVersion, ir)
	e.str(modelProducerName, Producer)
	opset := func(domain string, v int) {
		e.message(modelOpsetImport, func(e *encoder) {
			e.strOpt(1, domain)
			e.varint(2, int64(v))
		})
	}
	opset("", g.Opset)
	for _, d := range sortedKeys(g.DomainOpsets) {
		opset(d, g.DomainOpsets[d])
	}
	var err error
	e.message(modelGraph, func(e *encoder) { err = encodeGraph(e, g) })
	if err != nil {
		return nil, err
	}
	for _, k := range sortedKeys(g.Metadata) {
		e.message(modelMetadataProps, func(e *encoder) {
			e.str(1, k)
			e.str(2, g.Metadata[k])
		})
	}
	return e.b, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func encodeGraph(e *encoder, g *graph.Graph) error {
	for i := range g.Nodes {
		n := &g.Nodes[i]
		var err error
		e.message(graphNode, func(e *encoder) { err = encodeNode(e, n) })
		if err != nil {
			return err
		}
	}
	e.strOpt(graphName, g.Name)
	for _, t := range g.Initializers {
		e.message(graphInitializer, func(e *encoder) { encodeTensor(e, t) })
	}
	e.strOpt(graphDocString, g.Doc)
	for _, list := range []struct {
		num int
		vs  []graph.Value
	}{{graphInput, g.Inputs}, {graphOutput, g.Outputs}, {graphValueInfo, g.ValueInfo}} {
		for _, v := range list.vs {
			e.message(list.num, func(e *encoder) { encodeValue(e, v) })
		}
	}
	return nil
}

func encodeNode(e *encoder, n *graph.Node) error {
	for _, in := range n.Inputs {
		e.str(nodeInput, in)
	}
	for _, out := range n.Outputs {
		e.str(nodeOutput, out)
	}
	e.strOpt(nodeName, n.Name)
	e.str(nodeOpType, n.Op)
	for _, name := range sortedKeys(n.Attrs) {
		a := n.Attrs[name]
		if a.Opaque != nil {
			e.bytes(nodeAttribute, a.Opaque)
			continue
		}
		if a.Kind == graph.AttrTensor && a.Tensor == nil {
			return fmt.Errorf("%s: attribute %q: TENSOR without a tensor", n.Ref(), name)
		}
		e.message(nodeAttribute, func(e *encoder) { encodeAttr(e, name, a) })
	}
	e.strOpt(nodeDomain, n.Domain)
	return nil
}

func encodeAttr(e *encoder, name string, a graph.Attr) {
	e.str(attrName, name)
	switch a.Kind {
	case graph.AttrFloat:
		e.float(attrF, a.Float)
	case graph.AttrInt:
		e.varint(attrI, a.Int)
	case graph.AttrString:
		e.str(attrS, a.Str)
	case graph.AttrTensor:
		e.message(attrT, func(e *encoder) { encodeTensor(e, a.Tensor) })
	case graph.AttrFloats:
		e.packedFloats(attrFloats, a.Floats)
	case graph.AttrInts:
		e.packedVarints(attrInts, a.Ints)
	case graph.AttrStrings:
		for _, s := range a.Strings {
			e.str(attrStrings, s)
		}
	}
	e.varint(attrType, int64(a.Kind))
}

func encodeValue(e *encoder, v graph.Value) {
	e.str(valueName, v.Name)
	if v.DType == graph.Undefined && v.Shape == nil {
		return
	}
	e.message(valueType, func(e *encoder) {
		e.message(typeTensor, func(e *encoder) {
			e.varint(tensorTypeElem, int64(v.DType))
			if v.Shape == nil {
				return
			}
			e.message(tensorTypeDims, func(e *encoder) {
				for i, d := range v.Shape {
					e.message(shapeDim, func(e *encoder) {
						switch {
						case d >= 0:
							e.varint(dimValue, d)
						case i < len(v.DimNames) && v.DimNames[i] != "":
							e.str(dimParam, v.DimNames[i])
						}
					})
				}
			})
		})
	})
}
