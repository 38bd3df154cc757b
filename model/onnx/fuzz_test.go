package onnx

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/faultline/faultline/model/graph"
)

// FuzzDecode decodes arbitrary bytes: no panic, no unbounded allocation, and
// whatever decodes re-encodes to the same graph; decoded graphs also go through
// Fold, Check and WeightSites, which must not panic either. Seeds: the smallnet
// fixtures and small hand-made models.
func FuzzDecode(f *testing.F) {
	for _, path := range fixtures {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(model(convNode(func(e *encoder) {
		e.str(attrName, "pads")
		e.packedVarints(attrInts, []int64{1, 1, 1, 1})
		e.varint(attrType, int64(graph.AttrInts))
	})))
	f.Add(model(func(e *encoder) {
		e.bytes(graphInitializer, tensorProto(graph.Int64, []int64{2}, func(e *encoder) { e.packedVarints(tensorInt64Data, []int64{-1, 4}) }))
		e.message(graphInput, func(e *encoder) { e.str(valueName, "x") })
	}))
	f.Add([]byte{0x3a, 0x02, 0x0a, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := Decode(bytes.NewReader(b), "fuzz.onnx")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "onnx: read fuzz.onnx: ") {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		var buf bytes.Buffer
		if g.Opset > 0 {
			if err := Encode(&buf, g); err != nil {
				t.Fatalf("decoded graph does not encode: %v", err)
			}
			h, err := Decode(bytes.NewReader(buf.Bytes()), "again")
			if err != nil {
				t.Fatalf("re-encoded graph does not decode: %v", err)
			}
			g2, h2 := g.Clone(), h.Clone()
			g2.Producer, g2.ProducerVersion, h2.Producer, h2.ProducerVersion = "", "", "", ""
			if g2.IRVersion < 4 {
				g2.IRVersion = h2.IRVersion
			}
			if d := graph.Diff(g2, h2); d != nil {
				t.Fatalf("round trip changed the graph: %v", d)
			}
		}
		_ = graph.Check(g)
		_, _ = graph.WeightSites(g)
		if h, err := graph.Fold(g, []int64{1, 28, 28}); err == nil {
			_ = graph.Check(h)
			_, _ = graph.WeightSites(h)
		}
	})
}
