package graph

import (
	"testing"
)

func TestValidate(t *testing.T) {
	w := func(t *testing.T) *Tensor { return f32(t, "w", []int64{2, 2}) }
	for _, tc := range []struct {
		name  string
		nodes []Node
		inits func(t *testing.T) []*Tensor
		outs  []string
		want  string
	}{
		{"ok", []Node{nd("MatMul", "mm", "x,w", "y"), nd("Relu", "r", "y", "z")}, nil, []string{"z"}, ""},
		{"optional input omitted", []Node{nd("Clip", "c", "x,,", "y")}, nil, []string{"y"}, ""},
		{"order", []Node{nd("Relu", "r", "y", "z"), nd("MatMul", "mm", "x,w", "y")}, nil, []string{"z"},
			`node "r" reads "y" before node "mm" computes it (nodes not in topological order)`},
		{"undefined", []Node{nd("Relu", "r", "nope", "z")}, nil, []string{"z"}, `node "r" reads "nope", which nothing defines`},
		{"twice", []Node{nd("Relu", "r1", "x", "z"), nd("Relu", "r2", "x", "z")}, nil, []string{"z"},
			`node "r2" writes "z", already defined by node "r1"`},
		{"overwrites initializer", []Node{nd("Relu", "", "x", "w")}, nil, []string{"w"},
			`Relu node with output "w" writes "w", already defined by an initializer`},
		{"output", []Node{nd("Relu", "r", "x", "z")}, nil, []string{"q"}, `graph output "q" is not computed`},
		{"no op", []Node{nd("", "r", "x", "z")}, nil, []string{"z"}, `node "r" (node 0) has no op type`},
		{"bad initializer", []Node{nd("Relu", "r", "x", "z")}, func(t *testing.T) []*Tensor {
			bad := w(t)
			bad.Shape = []int64{3, 3}
			return []*Tensor{bad}
		}, []string{"z"}, `initializer: tensor "w": 16 bytes of data for float32 [3 3] (want 36)`},
		{"duplicate initializer", nil, func(t *testing.T) []*Tensor { return []*Tensor{w(t), w(t)} }, nil,
			`initializer "w" is defined twice`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &Graph{Opset: 13, Inputs: []Value{{Name: "x"}}, Nodes: tc.nodes}
			if tc.inits != nil {
				g.Initializers = tc.inits(t)
			} else {
				g.Initializers = []*Tensor{w(t)}
			}
			for _, o := range tc.outs {
				g.Outputs = append(g.Outputs, Value{Name: o})
			}
			wantErr(t, g.Validate(), tc.want)
		})
	}
}

func TestAttrAccessors(t *testing.T) {
	n := nd("Conv", "Conv_12", "x,w", "y", "pads", Floats(1), "group", Int(2), "auto_pad", Str("VALID"),
		"strides", Ints(2, 2), "value", TensorAttr(f32(t, "", []int64{1})))
	if v, err := n.AttrInt("group", 1); err != nil || v != 2 {
		t.Errorf("group = %v, %v", v, err)
	}
	if v, err := n.AttrInt("missing", 7); err != nil || v != 7 {
		t.Errorf("default = %v, %v", v, err)
	}
	if v, err := n.AttrString("auto_pad", ""); err != nil || v != "VALID" {
		t.Errorf("auto_pad = %v, %v", v, err)
	}
	if v, err := n.AttrInts("strides", nil); err != nil || len(v) != 2 {
		t.Errorf("strides = %v, %v", v, err)
	}
	if v, err := n.AttrTensor("value"); err != nil || v.Len() != 1 {
		t.Errorf("value = %v, %v", v, err)
	}
	_, err := n.AttrInts("pads", nil)
	wantErr(t, err, `node "Conv_12": attribute "pads": is FLOATS, want INTS`)
	_, err = n.AttrFloat("group", 0)
	wantErr(t, err, `node "Conv_12": attribute "group": is INT, want FLOAT`)
	anon := nd("Gemm", "", "a,b", "out", "alpha", Int(1))
	_, err = anon.AttrFloat("alpha", 1)
	wantErr(t, err, `Gemm node with output "out": attribute "alpha": is INT, want FLOAT`)
}

func TestCloneIsIndependent(t *testing.T) {
	g := &Graph{Opset: 13, Inputs: []Value{input(1, 4, 4)}, Outputs: []Value{{Name: "y"}},
		Nodes: []Node{nd("Relu", "r", "x", "y", "a", Int(1))}, Metadata: map[string]string{"k": "v"}}
	h := g.Clone()
	h.Nodes[0].Inputs[0] = "q"
	h.Nodes[0].Attrs["a"] = Int(2)
	h.Inputs[0].Shape[1] = 9
	h.Metadata["k"] = "w"
	if g.Nodes[0].Inputs[0] != "x" || g.Nodes[0].Attrs["a"].Int != 1 || g.Inputs[0].Shape[1] != 1 || g.Metadata["k"] != "v" {
		t.Errorf("Clone shares state with the original: %+v", g)
	}
	if d := Diff(g, g.Clone()); d != nil {
		t.Errorf("Diff of a clone: %v", d)
	}
	if d := Diff(g, h); len(d) == 0 {
		t.Error("Diff found no difference")
	}
}

// Node.Gemm fills in ONNX's defaults and reads any transA or transB other than
// 0 as a transpose.
func TestGemmAttrs(t *testing.T) {
	for _, tc := range []struct {
		n    Node
		want GemmAttrs
		err  bool
	}{
		{nd("Gemm", "g", "a,b", "y"), GemmAttrs{Alpha: 1, Beta: 1}, false},
		{nd("Gemm", "g", "a,b", "y", "alpha", Float(2), "beta", Float(0.5), "transA", Int(1), "transB", Int(2)),
			GemmAttrs{Alpha: 2, Beta: 0.5, TransA: true, TransB: true}, false},
		{nd("Gemm", "g", "a,b", "y", "transB", Float(1)), GemmAttrs{}, true},
	} {
		got, err := tc.n.Gemm()
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("%v: Gemm() = %+v, %v; want %+v (error %v)", tc.n.Attrs, got, err, tc.want, tc.err)
		}
	}
}
