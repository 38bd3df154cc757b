package onnx

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/faultline/faultline/model/graph"
)

// model encodes a ModelProto (opset 13) whose graph fields fill writes.
func model(fill func(e *encoder)) []byte {
	var e encoder
	e.varint(modelIRVersion, 8)
	e.message(modelOpsetImport, func(e *encoder) { e.varint(2, 13) })
	e.message(modelGraph, fill)
	return e.b
}

// convNode writes a node named Conv_12 whose attribute message attr writes.
func convNode(attr func(e *encoder)) func(e *encoder) {
	return func(e *encoder) {
		e.message(graphNode, func(e *encoder) {
			e.str(nodeInput, "x")
			e.str(nodeOutput, "y")
			e.str(nodeName, "Conv_12")
			e.str(nodeOpType, "Conv")
			e.message(nodeAttribute, attr)
		})
	}
}

func TestDecodeMalformed(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "onnx: read bad.onnx: model: no graph (not an ONNX model?)"},
		{"text", []byte("hello world, not protobuf"), "onnx: read bad.onnx: model: "},
		{"truncated key varint", []byte{0x80}, "model: field key: truncated varint"},
		{"truncated value varint", []byte{0x08, 0xff, 0xff}, "model: field 1: truncated varint"},
		{"varint overflow", []byte{0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, "varint overflows 64 bits"},
		{"length overflow", []byte{0x3a, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2}, "model: field 7: length 4294967295 exceeds the 2 bytes left"},
		{"length past end", []byte{0x3a, 0x05, 0x0a, 0x00}, "field 7: length 5 exceeds the 2 bytes left"},
		{"truncated fixed32", []byte{0x15, 1, 2}, "field 2: truncated fixed32"},
		{"field number 0", []byte{0x00, 0x01}, "invalid field number 0"},
		{"group wire type", []byte{0x0b}, "field 1: wire type start-group not supported"},
		{"wrong wire type graph", []byte{0x38, 0x01}, "model: field 7 (graph): wire type varint, want length-delimited"},
		{"wrong wire type ir_version", []byte{0x0a, 0x00}, "field 1 (ir_version): wire type length-delimited, want varint"},
		{"two graphs", append(model(func(e *encoder) {}), model(func(e *encoder) {})...), "more than one graph"},
		{"node in graph", model(func(e *encoder) { e.bytes(graphNode, []byte{0x0a, 0x09}) }),
			"graph: node 0: field 1: length 9 exceeds the 0 bytes left"},
		{"attribute wire type", model(convNode(func(e *encoder) {
			e.str(attrName, "pads")
			e.varint(attrType, int64(graph.AttrInts))
			e.float(attrInts, 1)
		})), `onnx: read bad.onnx: graph: node "Conv_12": attribute "pads": field 8 (ints): wire type fixed32 for a repeated varint`},
		{"attribute truncated ints", model(convNode(func(e *encoder) {
			e.str(attrName, "pads")
			e.bytes(attrInts, []byte{0x80})
		})), `node "Conv_12": attribute "pads": field 8 (ints): truncated varint`},
		{"attribute without value", model(convNode(func(e *encoder) { e.str(attrName, "group") })),
			`node "Conv_12": attribute "group": no value`},
		{"attribute without name", model(convNode(func(e *encoder) { e.varint(attrI, 1) })),
			`node "Conv_12": attribute: attribute without a name`},
		{"tensor attribute", model(convNode(func(e *encoder) {
			e.str(attrName, "value")
			e.varint(attrType, int64(graph.AttrTensor))
			e.bytes(attrT, tensorProto(graph.Float32, []int64{3}, func(e *encoder) { e.bytes(tensorRawData, make([]byte, 8)) }))
		})), `node "Conv_12": attribute "value": tensor "w": raw_data of 8 bytes for float32 [3] (want 12)`},
		{"packed floats length", model(convNode(func(e *encoder) {
			e.str(attrName, "scales")
			e.bytes(attrFloats, []byte{1, 2, 3})
		})), "field 7 (floats): packed length 3 is not a multiple of 4"},
		{"initializer", model(func(e *encoder) {
			e.bytes(graphInitializer, tensorProto(graph.Float32, []int64{1 << 31, 1 << 31}, func(e *encoder) {}))
		}), `graph: initializer 0: tensor "w": dims: shape [2147483648 2147483648] has more than 2^40 elements`},
		{"negative dim", model(func(e *encoder) {
			e.bytes(graphInitializer, tensorProto(graph.Float32, []int64{-2}, func(e *encoder) {}))
		}), `tensor "w": dims: dimension 0 is -2`},
		{"external data", model(func(e *encoder) {
			e.bytes(graphInitializer, tensorProto(graph.Float32, []int64{2}, func(e *encoder) { e.varint(tensorDataLocation, 1) }))
		}), `graph: initializer 0: tensor "w": external data not supported`},
		{"input dim_value", model(func(e *encoder) {
			e.message(graphInput, func(e *encoder) {
				e.str(valueName, "x")
				e.message(valueType, func(e *encoder) {
					e.message(typeTensor, func(e *encoder) {
						e.message(tensorTypeDims, func(e *encoder) {
							e.message(shapeDim, func(e *encoder) { e.varint(dimValue, -3) })
						})
					})
				})
			})
		}), `graph: input: "x": shape: dimension 0: dim_value -3`},
		{"sparse initializer", model(func(e *encoder) { e.bytes(graphSparseInitializers, nil) }), "sparse initializers not supported"},
		{"opset version", func() []byte {
			var e encoder
			e.message(modelOpsetImport, func(e *encoder) { e.varint(2, -1) })
			return e.b
		}(), `opset_import: domain "": version -1`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := Decode(bytes.NewReader(tc.data), "bad.onnx")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Decode = %v, %v; want an error containing %q", g, err, tc.want)
			}
		})
	}
}

// TestDecodeTruncated decodes every prefix of a fixture (sampled) and the file
// with single bytes corrupted: never a panic, and a truncated model is an error.
func TestDecodeTruncated(t *testing.T) {
	b, err := os.ReadFile(fixtures[0])
	if err != nil {
		t.Fatal(err)
	}
	for n := 0; n < len(b); n += 1 + n/50 {
		if _, err := Decode(bytes.NewReader(b[:n]), "cut.onnx"); err == nil {
			t.Fatalf("a model cut at %d of %d bytes decoded without an error", n, len(b))
		}
	}
	c := make([]byte, len(b))
	for i := 0; i < len(b); i += 13 {
		copy(c, b)
		c[i] ^= 0xa5
		if g, err := Decode(bytes.NewReader(c), "flipped.onnx"); err == nil {
			if h, err := graph.Fold(g, []int64{1, 28, 28}); err == nil {
				_ = graph.Check(h)
				_, _ = graph.WeightSites(h)
			}
		}
	}
}

// TestDecodeUnknownFields: fields onnx.proto has and this package does not
// read (training_info, functions, doc strings, quantization annotations...)
// and fields unknown to onnx.proto are skipped.
func TestDecodeUnknownFields(t *testing.T) {
	b, err := os.ReadFile(fixtures[0])
	if err != nil {
		t.Fatal(err)
	}
	var e encoder
	e.varint(5, 3)                  // model_version
	e.str(6, "model doc")           // doc_string
	e.bytes(20, []byte{0x0a, 0x00}) // training_info
	e.float(999, 1)                 // unknown, fixed32
	e.key(1000, wireFixed64)
	e.b = append(e.b, 1, 2, 3, 4, 5, 6, 7, 8)
	withExtra := append(e.b, b...)
	g, err := Decode(bytes.NewReader(b), "a")
	if err != nil {
		t.Fatal(err)
	}
	h, err := Decode(bytes.NewReader(withExtra), "b")
	if err != nil {
		t.Fatal(err)
	}
	if d := graph.Diff(g, h); d != nil {
		t.Errorf("extra fields changed the graph: %v", d)
	}
}
