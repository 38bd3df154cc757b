package onnx

import (
	"errors"
	"fmt"
	"math"

	"github.com/faultline/faultline/model/graph"
)

// NodeProto field numbers.
const (
	nodeInput     = 1
	nodeOutput    = 2
	nodeName      = 3
	nodeOpType    = 4
	nodeAttribute = 5
	nodeDomain    = 7
)

// decodeNode decodes node number index (for messages).
func decodeNode(b []byte, index int) (graph.Node, error) {
	var n graph.Node
	var attrs [][]byte
	err := parse(b, func(f field) error {
		var err error
		var s string
		switch f.num {
		case nodeInput:
			if s, err = f.str("input"); err == nil {
				n.Inputs = append(n.Inputs, s)
			}
		case nodeOutput:
			if s, err = f.str("output"); err == nil {
				n.Outputs = append(n.Outputs, s)
			}
		case nodeName:
			n.Name, err = f.str("name")
		case nodeOpType:
			n.Op, err = f.str("op_type")
		case nodeDomain:
			n.Domain, err = f.str("domain")
		case nodeAttribute:
			err = f.want(wireBytes, "attribute")
			attrs = append(attrs, f.data)
		}
		return err
	})
	ref := fmt.Sprintf("node %d", index)
	if n.Name != "" {
		ref = fmt.Sprintf("node %q", n.Name)
	}
	if err != nil {
		return n, fmt.Errorf("%s: %w", ref, err)
	}
	if n.Domain == "ai.onnx" {
		n.Domain = ""
	}
	for _, b := range attrs {
		name, a, err := decodeAttr(b)
		if err != nil {
			if name != "" {
				return n, fmt.Errorf("%s: attribute %q: %w", ref, name, err)
			}
			return n, fmt.Errorf("%s: attribute: %w", ref, err)
		}
		if n.Attrs == nil {
			n.Attrs = map[string]graph.Attr{}
		}
		if _, dup := n.Attrs[name]; dup {
			return n, fmt.Errorf("%s: attribute %q repeated", ref, name)
		}
		n.Attrs[name] = a
	}
	return n, nil
}

// AttributeProto field numbers.
const (
	attrName    = 1
	attrF       = 2
	attrI       = 3
	attrS       = 4
	attrT       = 5
	attrG       = 6
	attrFloats  = 7
	attrInts    = 8
	attrStrings = 9
	attrTensors = 10
	attrGraphs  = 11
	attrTP      = 14
	attrTPs     = 15
	attrType    = 20
	attrSparse  = 22
	attrSparses = 23
)

// kindOfField is the attribute kind a value field implies (for files that omit
// the type field, as very old exporters did).
var kindOfField = map[int]graph.AttrKind{
	attrF: graph.AttrFloat, attrI: graph.AttrInt, attrS: graph.AttrString,
	attrT: graph.AttrTensor, attrG: graph.AttrGraph, attrFloats: graph.AttrFloats,
	attrInts: graph.AttrInts, attrStrings: graph.AttrStrings, attrTensors: graph.AttrTensors,
	attrGraphs: graph.AttrGraphs, attrTP: graph.AttrTypeProto, attrTPs: graph.AttrTypeProtos,
	attrSparse: graph.AttrSparseTensor, attrSparses: graph.AttrSparseTensors,
}

// decodeAttr decodes an AttributeProto into its name and value.
func decodeAttr(b []byte) (string, graph.Attr, error) {
	var a graph.Attr
	var name string
	var t []byte
	var floatBytes []byte
	hasType, implied := false, graph.AttrUndefined
	err := parse(b, func(f field) error {
		var err error
		if k, ok := kindOfField[f.num]; ok && implied == graph.AttrUndefined {
			implied = k
		}
		switch f.num {
		case attrName:
			name, err = f.str("name")
		case attrType:
			var k int64
			if k, err = f.int("type"); err == nil {
				if k < 0 || k > math.MaxInt32 {
					return fmt.Errorf("type %d", k)
				}
				a.Kind, hasType = graph.AttrKind(k), true
			}
		case attrF:
			if err = f.want(wireFixed32, "f"); err == nil {
				a.Float = math.Float32frombits(uint32(f.v))
			}
		case attrI:
			a.Int, err = f.int("i")
		case attrS:
			a.Str, err = f.str("s")
		case attrT:
			err = f.want(wireBytes, "t")
			t = f.data
		case attrFloats:
			floatBytes, err = appendFixed(floatBytes, f, 4, "floats")
		case attrInts:
			a.Ints, err = appendVarints(a.Ints, f, "ints")
		case attrStrings:
			var s string
			if s, err = f.str("strings"); err == nil {
				a.Strings = append(a.Strings, s)
			}
		}
		return err
	})
	if err != nil {
		return name, a, err
	}
	if !hasType {
		a.Kind = implied
	}
	// Keep only the field the kind uses (what Encode writes back).
	v := a
	a = graph.Attr{Kind: v.Kind}
	switch a.Kind {
	case graph.AttrFloat:
		a.Float = v.Float
	case graph.AttrInt:
		a.Int = v.Int
	case graph.AttrString:
		a.Str = v.Str
	case graph.AttrInts:
		a.Ints = v.Ints
	case graph.AttrStrings:
		a.Strings = v.Strings
	case graph.AttrFloats:
		a.Floats = make([]float32, len(floatBytes)/4)
		for i := range a.Floats {
			a.Floats[i] = math.Float32frombits(uint32(floatBytes[4*i]) | uint32(floatBytes[4*i+1])<<8 |
				uint32(floatBytes[4*i+2])<<16 | uint32(floatBytes[4*i+3])<<24)
		}
	case graph.AttrTensor:
		if t == nil {
			return name, a, errors.New("TENSOR attribute without a tensor")
		}
		if a.Tensor, err = decodeTensor(t); err != nil {
			return name, a, err
		}
	case graph.AttrUndefined:
		return name, a, errors.New("no value")
	default:
		a = graph.Attr{Kind: a.Kind, Opaque: append([]byte{}, b...)}
	}
	if name == "" {
		return name, a, errors.New("attribute without a name")
	}
	return name, a, nil
}

// TensorProto field numbers.
const (
	tensorDims         = 1
	tensorDataType     = 2
	tensorSegment      = 3
	tensorFloatData    = 4
	tensorInt32Data    = 5
	tensorStringData   = 6
	tensorInt64Data    = 7
	tensorName         = 8
	tensorRawData      = 9
	tensorDoubleData   = 10
	tensorUint64Data   = 11
	tensorExternalData = 13
	tensorDataLocation = 14
)

// decodeTensor decodes a TensorProto.
func decodeTensor(b []byte) (*graph.Tensor, error) {
	var (
		name           string
		dims, ints     []int64
		dtype          int64
		raw, fixed     []byte
		hasRaw, hasStr bool
	)
	err := parse(b, func(f field) error {
		var err error
		switch f.num {
		case tensorDims:
			dims, err = appendVarints(dims, f, "dims")
		case tensorDataType:
			dtype, err = f.int("data_type")
		case tensorName:
			name, err = f.str("name")
		case tensorSegment:
			err = errors.New("segmented tensors not supported")
		case tensorRawData:
			err = f.want(wireBytes, "raw_data")
			raw, hasRaw = f.data, true
		case tensorFloatData:
			fixed, err = appendFixed(fixed, f, 4, "float_data")
		case tensorDoubleData:
			fixed, err = appendFixed(fixed, f, 8, "double_data")
		case tensorInt32Data:
			ints, err = appendVarints(ints, f, "int32_data")
		case tensorInt64Data:
			ints, err = appendVarints(ints, f, "int64_data")
		case tensorUint64Data:
			ints, err = appendVarints(ints, f, "uint64_data")
		case tensorStringData:
			hasStr = true
		case tensorExternalData:
			err = errors.New("external data not supported (save the model with the weights inside the file)")
		case tensorDataLocation:
			var loc int64
			if loc, err = f.int("data_location"); err == nil && loc != 0 {
				err = errors.New("external data not supported (save the model with the weights inside the file)")
			}
		}
		return err
	})
	if err == nil {
		var t *graph.Tensor
		if t, err = buildTensor(name, dims, dtype, raw, hasRaw, fixed, ints, hasStr); err == nil {
			return t, nil
		}
	}
	if name != "" {
		return nil, fmt.Errorf("tensor %q: %w", name, err)
	}
	return nil, fmt.Errorf("tensor: %w", err)
}
