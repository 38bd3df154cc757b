package graph

import (
	"math"
	"slices"
	"testing"
)

// viewGraph is x.view(x.size(0), -1) as torch.onnx exports it at opset 13.
func viewGraph(t *testing.T) *Graph {
	return &Graph{
		Opset:   13,
		Inputs:  []Value{input(2, 3, 3)},
		Outputs: []Value{{Name: "y", DType: Float32, Shape: []int64{-1, 18}, DimNames: []string{"batch", ""}}},
		Nodes: []Node{
			nd("Shape", "/Shape", "x", "s"),
			nd("Constant", "/Constant", "", "zero", "value", TensorAttr(i64(t, "", nil, 0))),
			nd("Gather", "/Gather", "s,zero", "b", "axis", Int(0)),
			nd("Constant", "/Constant_1", "", "ax", "value", TensorAttr(i64(t, "", []int64{1}, 0))),
			nd("Unsqueeze", "/Unsqueeze", "b,ax", "bu"),
			nd("Constant", "/Constant_2", "", "m1", "value", TensorAttr(i64(t, "", []int64{1}, -1))),
			nd("Concat", "/Concat", "bu,m1", "shape", "axis", Int(0)),
			nd("Reshape", "/Reshape", "x,shape", "y"),
		},
	}
}

func TestFoldView(t *testing.T) {
	h, err := Fold(viewGraph(t), []int64{2, 3, 3})
	wantErr(t, err, "")
	if len(h.Nodes) != 1 || h.Nodes[0].Op != "Reshape" {
		t.Fatalf("nodes after folding: %+v", h.Nodes)
	}
	target := h.Initializer(h.Nodes[0].Inputs[1])
	if v, _ := target.Int64s(); !slices.Equal(v, []int64{-1, 18}) {
		t.Errorf("Reshape target %v, want [-1 18]", v)
	}
	if want := (Value{Name: "y", DType: Float32, Shape: []int64{-1, 18}, DimNames: []string{"batch", ""}}); !h.Outputs[0].Equal(want) {
		t.Errorf("output %+v, want %+v", h.Outputs[0], want)
	}
	wantErr(t, Check(h), "")
}

// shuffleGraph is ShuffleNet's channel_shuffle (groups 2) at opset 11: sizes from
// Shape/Gather, channels per group from Div and Cast.
func shuffleGraph(t *testing.T) *Graph {
	c := func(name string, v ...int64) Node {
		var shape []int64
		if len(v) > 1 {
			shape = []int64{int64(len(v))}
		}
		return nd("Constant", name, "", name, "value", TensorAttr(i64(t, "", shape, v...)))
	}
	nodes := []Node{nd("Relu", "r", "x", "a")}
	for i := int64(0); i < 4; i++ {
		idx := string(rune('0' + i))
		nodes = append(nodes, nd("Shape", "sh"+idx, "a", "s"+idx), c("i"+idx, i),
			nd("Gather", "g"+idx, "s"+idx+",i"+idx, "d"+idx, "axis", Int(0)))
	}
	nodes = append(nodes, c("two", 2), nd("Div", "div", "d1,two", "cpg0"),
		nd("Cast", "cast", "cpg0", "cpg", "to", Int(int64(Int64))))
	for _, u := range []string{"d0", "cpg", "d2", "d3"} {
		nodes = append(nodes, nd("Unsqueeze", "u"+u, u, u+"u", "axes", Ints(0)))
	}
	nodes = append(nodes, nd("Constant", "two1", "", "two1", "value", TensorAttr(i64(t, "", []int64{1}, 2))),
		nd("Concat", "cat", "d0u,two1,cpgu,d2u,d3u", "shape5", "axis", Int(0)),
		nd("Reshape", "rs1", "a,shape5", "v5"),
		nd("Transpose", "tr", "v5", "t5", "perm", Ints(0, 2, 1, 3, 4)),
		nd("Constant", "m1", "", "m1", "value", TensorAttr(i64(t, "", []int64{1}, -1))),
		nd("Concat", "cat2", "d0u,m1,d2u,d3u", "shape4", "axis", Int(0)),
		nd("Reshape", "rs2", "t5,shape4", "y"))
	return &Graph{Opset: 11, Inputs: []Value{input(6, 5, 4)}, Outputs: []Value{{Name: "y", DType: Float32}}, Nodes: nodes}
}

func TestFoldChannelShuffle(t *testing.T) {
	h, err := Fold(shuffleGraph(t), []int64{6, 5, 4})
	wantErr(t, err, "")
	var ops []string
	for _, n := range h.Nodes {
		ops = append(ops, n.Op)
	}
	if !slices.Equal(ops, []string{"Relu", "Reshape", "Transpose", "Reshape"}) {
		t.Fatalf("ops after folding: %v", ops)
	}
	for i, want := range map[int][]int64{1: {-1, 2, 3, 5, 4}, 3: {-1, 6, 5, 4}} {
		if v, _ := h.Initializer(h.Nodes[i].Inputs[1]).Int64s(); !slices.Equal(v, want) {
			t.Errorf("node %d target %v, want %v", i, v, want)
		}
	}
	if v, _ := h.Value("t5"); !slices.Equal(v.Shape, []int64{-1, 3, 2, 5, 4}) {
		t.Errorf("t5 shape %v", v.Shape)
	}
	if !slices.Equal(h.Outputs[0].Shape, []int64{-1, 6, 5, 4}) || h.Outputs[0].DimNames[0] != "batch" {
		t.Errorf("output %+v", h.Outputs[0])
	}
	// The original graph is untouched.
	if g := shuffleGraph(t); len(g.Nodes) != 27 {
		t.Fatalf("shuffle graph has %d nodes", len(g.Nodes))
	}
	wantErr(t, Check(h), "")
}

// TestFoldPad folds F.pad(x, (1, 0, 0, 1))'s pads computation (opset 11):
// ConstantOfShape, Concat, Reshape, Slice with step -1, Transpose, Reshape, Cast.
func TestFoldPad(t *testing.T) {
	cst := func(name string, shape []int64, v ...int64) Node {
		return nd("Constant", name, "", name, "value", TensorAttr(i64(t, "", shape, v...)))
	}
	g := &Graph{Opset: 11, Inputs: []Value{input(2, 4, 4)}, Outputs: []Value{{Name: "y", DType: Float32}},
		Nodes: []Node{
			cst("four", []int64{1}, 4), cst("torchpads", []int64{4}, 1, 0, 0, 1),
			nd("ConstantOfShape", "cos", "four", "zeros", "value", TensorAttr(i64(t, "", []int64{1}, 0))),
			nd("Concat", "cat", "torchpads,zeros", "p8", "axis", Int(0)),
			cst("m12", []int64{2}, -1, 2), nd("Reshape", "rs", "p8,m12", "p42"),
			cst("st", []int64{1}, -1), cst("en", []int64{1}, math.MinInt64+1), cst("ax", []int64{1}, 0),
			cst("sp", []int64{1}, -1), nd("Slice", "sl", "p42,st,en,ax,sp", "rev"),
			nd("Transpose", "tr", "rev", "p24", "perm", Ints(1, 0)),
			cst("m1", []int64{1}, -1), nd("Reshape", "rs2", "p24,m1", "pflat"),
			nd("Cast", "cast", "pflat", "pads", "to", Int(int64(Int64))),
			nd("Constant", "zero", "", "zero", "value", TensorAttr(f32(t, "", nil, 0))),
			nd("Pad", "pad", "x,pads,zero", "y", "mode", Str("constant")),
		}}
	h, err := Fold(g, []int64{2, 4, 4})
	wantErr(t, err, "")
	if len(h.Nodes) != 1 || h.Nodes[0].Op != "Pad" {
		t.Fatalf("nodes %+v", h.Nodes)
	}
	if v, _ := h.Initializer(h.Nodes[0].Inputs[1]).Int64s(); !slices.Equal(v, []int64{0, 0, 0, 1, 0, 0, 1, 0}) {
		t.Errorf("pads %v", v)
	}
	if !slices.Equal(h.Outputs[0].Shape, []int64{-1, 2, 5, 5}) {
		t.Errorf("output shape %v", h.Outputs[0].Shape)
	}
	if len(h.Initializers) != 2 {
		t.Errorf("initializers %d, want 2 (pads, zero): unused ones not removed", len(h.Initializers))
	}
}

// TestFoldSharedBias: SqueezeNet's exporter shares equal biases through Identity
// nodes; folding gives each layer its own initializer under its own name.
func TestFoldSharedBias(t *testing.T) {
	g := &Graph{Opset: 13, Inputs: []Value{input(1, 4, 4)}, Outputs: []Value{{Name: "y", DType: Float32}},
		Initializers: []*Tensor{
			f32(t, "f.0.weight", []int64{2, 1, 1, 1}), f32(t, "f.0.bias", []int64{2}, 0, 0),
			f32(t, "f.1.weight", []int64{2, 2, 3, 3}),
		},
		Nodes: []Node{
			nd("Identity", "Identity_0", "f.0.bias", "f.1.bias"),
			nd("Conv", "/f/f.0/Conv", "x,f.0.weight,f.0.bias", "a"),
			nd("Dropout", "/drop", "a", "ad"),
			nd("Conv", "/f/f.1/Conv", "ad,f.1.weight,f.1.bias", "b", "pads", Ints(1, 1, 1, 1)),
			nd("Identity", "out", "b", "y"),
		}}
	h, err := Fold(g, []int64{1, 4, 4})
	wantErr(t, err, "")
	var ops []string
	for _, n := range h.Nodes {
		ops = append(ops, n.Op)
	}
	if !slices.Equal(ops, []string{"Conv", "Conv", "Identity"}) {
		t.Errorf("ops %v: want the Dropout bypassed and the output Identity kept", ops)
	}
	if h.Nodes[1].Inputs[0] != "a" {
		t.Errorf("second conv reads %q, want the bypassed Dropout's input", h.Nodes[1].Inputs[0])
	}
	b, b0 := h.Initializer("f.1.bias"), h.Initializer("f.0.bias")
	if b == nil || b0 == nil || string(b.Raw()) != string(b0.Raw()) {
		t.Fatalf("initializers %v", h.Initializers)
	}
	b.Raw()[0] = 0xff
	if b0.Raw()[0] == 0xff {
		t.Error("the folded bias shares its data with the one it was copied from")
	}
	sites, err := WeightSites(h)
	wantErr(t, err, "")
	if len(sites) != 2 || sites[0].Name != "f.0" || sites[1].Name != "f.1" || sites[1].Bias != "f.1.bias" ||
		!slices.Equal(sites[1].OutShape, []int64{-1, 2, 4, 4}) {
		t.Errorf("sites %+v", sites)
	}
	// Before folding the bias is found through the Identity.
	sites, err = WeightSites(g)
	wantErr(t, err, "")
	if len(sites) != 2 || sites[1].Bias != "f.0.bias" {
		t.Errorf("unfolded sites %+v", sites)
	}
}

func TestFoldErrors(t *testing.T) {
	g := viewGraph(t)
	_, err := Fold(g, []int64{3, 3, 3})
	wantErr(t, err, `fold: input "x" has shape [-1 2 3 3], not [batch [3 3 3]]`)
	_, err = Fold(g, []int64{2, 0, 3})
	wantErr(t, err, "dimensions must be positive")
	two := viewGraph(t)
	two.Inputs = append(two.Inputs, Value{Name: "x2"})
	_, err = Fold(two, []int64{2, 3, 3})
	wantErr(t, err, "fold: graph has 2 data inputs, want 1")
	conv := &Graph{Opset: 13, Inputs: []Value{input(1, 2, 2)}, Outputs: []Value{{Name: "y"}},
		Initializers: []*Tensor{f32(t, "w", []int64{1, 1, 3, 3})},
		Nodes:        []Node{nd("Conv", "Conv_7", "x,w", "y")}}
	_, err = Fold(conv, []int64{1, 2, 2})
	wantErr(t, err, `fold: node "Conv_7" (Conv): node "Conv_7": kernel 3 (dilated) larger than padded input 2`)
	bad := viewGraph(t)
	bad.Nodes[2].Inputs[1] = "m1x"
	_, err = Fold(bad, []int64{2, 3, 3})
	wantErr(t, err, `fold: node "/Gather" reads "m1x", which nothing defines`)
	div := &Graph{Opset: 13, Inputs: []Value{input(1, 2, 2)}, Outputs: []Value{{Name: "y"}},
		Initializers: []*Tensor{i64(t, "a", nil, 1), i64(t, "z", nil, 0)},
		Nodes:        []Node{nd("Div", "Div_3", "a,z", "q"), nd("Reshape", "r", "x,q", "y")}}
	_, err = Fold(div, []int64{1, 2, 2})
	wantErr(t, err, `fold: node "Div_3" (Div): integer division by zero`)
}

// TestFoldKeepsRunTimeShapes: a Shape of a value whose shape is unknown (after
// an unsupported op) stays, and Check names both.
func TestFoldKeepsRunTimeShapes(t *testing.T) {
	g := viewGraph(t)
	g.Nodes = append([]Node{nd("Resize", "up1", "x0,,scales", "x")}, g.Nodes...)
	g.Inputs[0].Name = "x0"
	g.Initializers = []*Tensor{f32(t, "scales", []int64{4}, 1, 1, 2, 2)}
	h, err := Fold(g, []int64{2, 3, 3})
	wantErr(t, err, "")
	if len(h.Nodes) != 6 { // Resize, Shape, Gather, Unsqueeze, Concat, Reshape
		t.Errorf("%d nodes left: %+v", len(h.Nodes), h.Nodes)
	}
	wantErr(t, Check(h), `unsupported operations: Resize (node up1); dynamic shapes other than the batch: "x" (unknown shape)`)
}
