package onnx

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/faultline/faultline/model/graph"
)

var fixtures = []string{
	"../testdata/onnx/smallnet-opset13-eval.onnx",
	"../testdata/onnx/smallnet-opset13-preserve.onnx",
}

// roundTrip encodes g and decodes the result.
func roundTrip(t *testing.T, g *graph.Graph) (*graph.Graph, []byte) {
	t.Helper()
	var buf bytes.Buffer
	if err := Encode(&buf, g); err != nil {
		t.Fatal(err)
	}
	h, err := Decode(bytes.NewReader(buf.Bytes()), "re-encoded")
	if err != nil {
		t.Fatal(err)
	}
	return h, buf.Bytes()
}

// sameGraph fails unless a and b are equal but for the producer, which Encode
// sets to faultline.
func sameGraph(t *testing.T, a, b *graph.Graph) {
	t.Helper()
	if b.Producer != Producer {
		t.Errorf("producer %q, want %q", b.Producer, Producer)
	}
	a, b = a.Clone(), b.Clone()
	a.Producer, a.ProducerVersion, b.Producer, b.ProducerVersion = "", "", "", ""
	if d := graph.Diff(a, b); d != nil {
		t.Fatalf("graphs differ:\n%s", strings.Join(d, "\n"))
	}
}

func TestFixturesRoundTrip(t *testing.T) {
	for _, path := range fixtures {
		t.Run(filepath.Base(path), func(t *testing.T) {
			g, err := ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if g.Opset != 13 || g.IRVersion < 7 || g.Producer != "pytorch" || len(g.Nodes) < 50 {
				t.Errorf("header: opset %d ir %d producer %q, %d nodes", g.Opset, g.IRVersion, g.Producer, len(g.Nodes))
			}
			if in := g.Inputs[0]; in.Name != "input" || !slices.Equal(in.Shape, []int64{-1, 1, 28, 28}) ||
				in.DimNames[0] != "batch" || in.DType != graph.Float32 {
				t.Errorf("input %+v", in)
			}
			h, b := roundTrip(t, g)
			sameGraph(t, g, h)
			if _, b2 := roundTrip(t, h); !bytes.Equal(b, b2) {
				t.Error("encoding is not deterministic")
			}
		})
	}
}

// smallnetSites are SmallNet's conv and linear layers (scripts/onnx-corpus.py).
var smallnetSites = []string{"stem.0", "branch_a.0", "branch_b.0", "dw.0", "pw.0", "down", "se_reduce", "se_expand", "fc"}

func TestFixturesFold(t *testing.T) {
	for _, path := range fixtures {
		t.Run(filepath.Base(path), func(t *testing.T) {
			g, err := ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			h, err := graph.Fold(g, []int64{1, 28, 28})
			if err != nil {
				t.Fatal(err)
			}
			if err := graph.Check(h); err != nil {
				t.Fatal(err)
			}
			if err := graph.Check(g); err == nil {
				t.Error("Check accepts the unfolded graph, whose shapes are unknown")
			}
			for _, n := range h.Nodes {
				if folded[n.Op] {
					t.Errorf("%s (%s) left after folding", n.Ref(), n.Op)
				}
			}
			sites, err := graph.WeightSites(h)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, s := range sites {
				names = append(names, s.Name)
				if s.InShape == nil || s.OutShape == nil || s.InShape[0] != -1 {
					t.Errorf("site %s: shapes %v -> %v", s.Name, s.InShape, s.OutShape)
				}
			}
			if !slices.Equal(names, smallnetSites) {
				t.Errorf("sites %v, want %v", names, smallnetSites)
			}
			if fc := sites[len(sites)-1]; fc.Kind != graph.LinearSite || !slices.Equal(fc.InShape, []int64{-1, 216}) || !fc.TransB {
				t.Errorf("fc %+v", fc)
			}
			if dw := sites[3]; dw.Groups != 16 {
				t.Errorf("dw.0 groups %d", dw.Groups)
			}
			h2, _ := roundTrip(t, h)
			sameGraph(t, h, h2)
		})
	}
}

// folded are the ops Fold removes from PyTorch's exports.
var folded = map[string]bool{"Shape": true, "Gather": true, "Unsqueeze": true, "ConstantOfShape": true,
	"Constant": true, "Cast": true, "Identity": true, "Dropout": true, "Range": true,
	"Equal": true, "Where": true}

// TestEncodeEverything round-trips a graph using every attribute kind, every
// tensor type, dimension names, metadata and other domains.
func TestEncodeEverything(t *testing.T) {
	var tensors []*graph.Tensor
	for _, dt := range []graph.DType{graph.Float32, graph.Uint8, graph.Int8, graph.Uint16, graph.Int16, graph.Int32,
		graph.Int64, graph.Bool, graph.Float16, graph.Float64, graph.Uint32, graph.Uint64, graph.BFloat16} {
		raw := make([]byte, 3*dt.Size())
		for i := range raw {
			raw[i] = byte(i*37 + int(dt))
		}
		if dt == graph.Bool {
			raw = []byte{1, 0, 1}
		}
		x, err := graph.NewTensor("t_"+dt.String(), dt, []int64{3, 1}, raw)
		if err != nil {
			t.Fatal(err)
		}
		tensors = append(tensors, x)
	}
	scalar, _ := graph.FromFloat32s("", nil, []float32{2.5})
	empty, _ := graph.FromFloat32s("e", []int64{0, 4}, nil)
	opaque := (&encoder{}).b
	{
		var e encoder
		e.str(attrName, "body")
		e.message(attrG, func(e *encoder) { e.str(graphName, "sub") })
		e.varint(attrType, int64(graph.AttrGraph))
		opaque = e.b
	}
	g := &graph.Graph{
		Name: "everything", Doc: "doc", Opset: 15, IRVersion: 8,
		DomainOpsets: map[string]int{"com.microsoft": 1, "ai.onnx.ml": 3},
		Metadata:     map[string]string{"b": "2", "a": ""},
		Inputs: []graph.Value{{Name: "x", DType: graph.Float32, Shape: []int64{-1, 3, -1}, DimNames: []string{"N", "", "len"}},
			{Name: "s", DType: graph.Int64, Shape: []int64{}}, {Name: "u"}},
		Outputs:   []graph.Value{{Name: "y", DType: graph.Float16, Shape: []int64{-1}}},
		ValueInfo: []graph.Value{{Name: "z", DType: graph.Float32}},
		Nodes: []graph.Node{
			{Name: "n1", Op: "Custom", Domain: "com.microsoft", Inputs: []string{"x", "", "s"}, Outputs: []string{"z", ""},
				Attrs: map[string]graph.Attr{
					"f": graph.Float(-0.5), "i": graph.Int(-3), "s": graph.Str("héllo\x00"), "fs": graph.Floats(1, float32(math.Inf(1))),
					"is": graph.Ints(-1, 0, math.MaxInt64, math.MinInt64), "ss": {Kind: graph.AttrStrings, Strings: []string{"a", ""}},
					"t": graph.TensorAttr(scalar), "empty_ints": graph.Ints(), "body": {Kind: graph.AttrGraph, Opaque: opaque},
				}},
			{Op: "If", Inputs: []string{"z"}, Outputs: []string{"y"}},
		},
		Initializers: append(tensors, empty),
	}
	h, _ := roundTrip(t, g)
	sameGraph(t, g, h)
	if h.IRVersion != 8 {
		t.Errorf("ir_version %d", h.IRVersion)
	}
	g.IRVersion = 0
	if h, _ = roundTrip(t, g); h.IRVersion != 8 {
		t.Errorf("ir_version of a new graph: %d, want 8", h.IRVersion)
	}
	g.Opset = 0
	var buf bytes.Buffer
	if err := Encode(&buf, g); err == nil || !strings.Contains(err.Error(), "no opset") {
		t.Errorf("Encode without an opset: %v", err)
	}
}

// TestDecodeAttrKindWins: an attribute whose type field disagrees with the value
// fields it holds keeps only the value of its type (found by FuzzDecode: the
// other fields were kept, then lost by Encode).
func TestDecodeAttrKindWins(t *testing.T) {
	var e encoder
	e.str(attrName, "pads")
	e.packedVarints(attrInts, []int64{1, 1})
	e.varint(attrI, 4)
	e.varint(attrType, int64(graph.AttrString))
	name, a, err := decodeAttr(e.b)
	if err != nil || name != "pads" {
		t.Fatal(name, err)
	}
	if want := graph.Str(""); !a.Equal(want) {
		t.Errorf("attribute %+v, want %+v", a, want)
	}
}

// tensorProto encodes a TensorProto with the given fields.
func tensorProto(dt graph.DType, dims []int64, fill func(e *encoder)) []byte {
	var e encoder
	e.packedVarints(tensorDims, dims)
	e.varint(tensorDataType, int64(dt))
	e.str(tensorName, "w")
	fill(&e)
	return e.b
}

// TestDecodeTypedFields reads tensors stored in the typed fields (as older
// exporters and onnx.helper.make_tensor write them) instead of raw_data.
func TestDecodeTypedFields(t *testing.T) {
	le := binary.LittleEndian
	for _, tc := range []struct {
		name  string
		dt    graph.DType
		fill  func(e *encoder)
		f32   []float32
		ints  []int64
		error string
	}{
		{"float_data packed", graph.Float32, func(e *encoder) { e.packedFloats(tensorFloatData, []float32{1.5, -2}) }, []float32{1.5, -2}, nil, ""},
		{"float_data unpacked", graph.Float32, func(e *encoder) { e.float(tensorFloatData, 1.5); e.float(tensorFloatData, -2) },
			[]float32{1.5, -2}, nil, ""},
		{"int32_data int8", graph.Int8, func(e *encoder) { e.packedVarints(tensorInt32Data, []int64{-1, 127}) }, nil, []int64{-1, 127}, ""},
		{"int32_data bool", graph.Bool, func(e *encoder) { e.varint(tensorInt32Data, 1); e.varint(tensorInt32Data, 0) }, nil, []int64{1, 0}, ""},
		{"int32_data float16", graph.Float16, func(e *encoder) {
			e.packedVarints(tensorInt32Data, []int64{int64(graph.Float32ToHalf(0.5)), int64(graph.Float32ToHalf(-3))})
		}, []float32{0.5, -3}, nil, ""},
		{"int64_data", graph.Int64, func(e *encoder) { e.packedVarints(tensorInt64Data, []int64{math.MinInt64, 5}) }, nil, []int64{math.MinInt64, 5}, ""},
		{"uint64_data uint32", graph.Uint32, func(e *encoder) { e.packedVarints(tensorUint64Data, []int64{4000000000, 1}) }, nil, []int64{4000000000, 1}, ""},
		{"double_data", graph.Float64, func(e *encoder) {
			e.bytes(tensorDoubleData, le.AppendUint64(le.AppendUint64(nil, math.Float64bits(0.25)), math.Float64bits(-1)))
		}, []float32{0.25, -1}, nil, ""},
		{"count mismatch", graph.Float32, func(e *encoder) { e.packedFloats(tensorFloatData, []float32{1}) }, nil, nil,
			`tensor "w": 1 values of float32 for dims [2] (2 elements)`},
		{"no data", graph.Float32, func(e *encoder) {}, nil, nil, `tensor "w": 0 values of float32 for dims [2]`},
		{"raw size", graph.Float32, func(e *encoder) { e.bytes(tensorRawData, make([]byte, 7)) }, nil, nil,
			`tensor "w": raw_data of 7 bytes for float32 [2] (want 8)`},
		{"string", graph.String, func(e *encoder) { e.str(tensorStringData, "a"); e.str(tensorStringData, "b") }, nil, nil,
			`tensor "w": string tensors not supported`},
		{"external", graph.Float32, func(e *encoder) {
			e.message(tensorExternalData, func(e *encoder) { e.str(1, "location"); e.str(2, "w.bin") })
			e.varint(tensorDataLocation, 1)
		}, nil, nil, `tensor "w": external data not supported`},
		{"floats for ints", graph.Int32, func(e *encoder) { e.packedFloats(tensorFloatData, []float32{1, 2}) }, nil, nil,
			"float_data or double_data for a int32 tensor"},
		{"complex", graph.Complex64, func(e *encoder) {}, nil, nil, "data type complex64 not supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x, err := decodeTensor(tensorProto(tc.dt, []int64{2}, tc.fill))
			if tc.error != "" {
				if err == nil || !strings.Contains(err.Error(), tc.error) {
					t.Fatalf("error %v, want %q", err, tc.error)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.f32 != nil {
				if got, err := x.Float32s(); err != nil || !slices.Equal(got, tc.f32) {
					t.Errorf("Float32s %v %v, want %v", got, err, tc.f32)
				}
			} else if got, err := x.Int64s(); err != nil || !slices.Equal(got, tc.ints) {
				t.Errorf("Int64s %v %v, want %v", got, err, tc.ints)
			}
		})
	}
}

func TestWriteFileAtomic(t *testing.T) {
	g, err := ReadFile(fixtures[0])
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "out.onnx")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := g.Clone()
	bad.Opset = 0
	if err := WriteFile(path, bad); err == nil {
		t.Fatal("WriteFile of a graph without opset succeeded")
	}
	if b, _ := os.ReadFile(path); string(b) != "old" {
		t.Error("a failed WriteFile changed the file")
	}
	if err := WriteFile(path, g); err != nil {
		t.Fatal(err)
	}
	h, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sameGraph(t, g, h)
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("files left beside the model: %v", entries)
	}
	if _, err := ReadFile(filepath.Join(t.TempDir(), "missing.onnx")); err == nil || !strings.Contains(err.Error(), "missing.onnx") {
		t.Errorf("ReadFile of a missing file: %v", err)
	}
}
