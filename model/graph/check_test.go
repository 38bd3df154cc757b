package graph

import (
	"errors"
	"slices"
	"testing"
)

func TestCheck(t *testing.T) {
	g := &Graph{Opset: 13, Inputs: []Value{input(1, 4, 4)}, Outputs: []Value{{Name: "y", Shape: []int64{-1, 8, 4, 4},
		DimNames: []string{"batch", "", "", ""}}},
		Nodes: []Node{
			nd("LSTM", "lstm_1", "x", "a"), nd("Resize", "up1", "a", "b"), nd("LSTM", "lstm_2", "b", "c"),
			nd("Pad", "pad", "c", "d", "mode", Str("reflect")), nd("FusedConv", "fc", "d", "e"),
			nd("Relu", "", "e", "y"),
		}}
	g.Nodes[4].Domain = "com.microsoft"
	g.ValueInfo = []Value{{Name: "a", Shape: []int64{-1, 3, -1, 4}, DimNames: []string{"batch", "", "", ""}}, {Name: "b", Shape: []int64{4}},
		{Name: "c", Shape: []int64{-1}, DimNames: []string{"n"}}, {Name: "d", Shape: []int64{1}}}
	err := Check(g)
	wantErr(t, err, `unsupported operations: LSTM (nodes lstm_1, lstm_2), Pad(mode=reflect) (node pad), `+
		`Resize (node up1), com.microsoft.FusedConv (node fc); dynamic shapes other than the batch: `+
		`"a" dimension 2, "c" dimension 0, "e" (unknown shape)`)
	var u *UnsupportedError
	if !errors.As(err, &u) || len(u.Ops) != 4 || u.Ops[0].Op != "LSTM" || !slices.Equal(u.Ops[0].Nodes, []string{"lstm_1", "lstm_2"}) {
		t.Errorf("UnsupportedError %+v", u)
	}
	var d *DynamicShapeError
	if !errors.As(err, &d) || !slices.Equal(d.Dims, []DynamicDim{{"a", 2}, {"c", 0}, {"e", -1}}) {
		t.Errorf("DynamicShapeError %+v", d)
	}
	var o *OpsetError
	if errors.As(err, &o) {
		t.Errorf("OpsetError for opset 13")
	}
	g.Opset = 9
	err = Check(g)
	if !errors.As(err, &o) || o.Opset != 9 {
		t.Errorf("no OpsetError: %v", err)
	}
	wantErr(t, err, "opset 9 not supported (want 11 to 17); unsupported operations:")
}

func TestModulePath(t *testing.T) {
	for node, want := range map[string]string{
		"/layer2/layer2.0/conv1/Conv":                    "layer2.0.conv1",
		"/features/features.1/conv/conv.0/conv.0.0/Conv": "features.1.conv.0.0",
		"/layer2/layer2.0/downsample/downsample.0/Conv":  "layer2.0.downsample.0",
		"/classifier/classifier.1/Gemm":                  "classifier.1",
		"/fc/Gemm":                                       "fc",
		"/stem/stem.0/Conv":                              "stem.0",
		"Conv_12":                                        "",
		"/Conv":                                          "",
		"":                                               "",
		"//x/Conv":                                       "",
	} {
		if got := ModulePath(node); got != want {
			t.Errorf("ModulePath(%q) = %q, want %q", node, got, want)
		}
	}
}

func TestWeightSites(t *testing.T) {
	g := &Graph{Opset: 13, Inputs: []Value{input(1, 8, 8)}, Outputs: []Value{{Name: "y"}},
		Initializers: []*Tensor{
			f32(t, "onnx::Conv_193", []int64{4, 1, 3, 3}), f32(t, "onnx::Conv_194", []int64{4}),
			f32(t, "dw.weight", []int64{4, 1, 3, 3}),
			f32(t, "onnx::MatMul_7", []int64{16, 256}), f32(t, "fc.weight", []int64{5, 16}), f32(t, "fc.bias", []int64{5}),
		},
		Nodes: []Node{
			nd("Conv", "/layer1/layer1.0/conv1/Conv", "x,onnx::Conv_193,onnx::Conv_194", "a",
				"pads", Ints(1, 1, 1, 1), "strides", Ints(2, 2)),
			nd("Conv", "Conv_2", "a,dw.weight", "b", "group", Int(4), "auto_pad", Str("SAME_UPPER")),
			nd("Flatten", "f", "b", "c"),
			nd("Transpose", "tr", "onnx::MatMul_7", "wt", "perm", Ints(1, 0)),
			nd("MatMul", "/proj/MatMul", "c,wt", "d"),
			nd("Gemm", "/fc/Gemm", "d,fc.weight,fc.bias", "y", "transB", Int(1)),
		}}
	h, err := Fold(g, []int64{1, 8, 8})
	wantErr(t, err, "")
	for _, gr := range []*Graph{g, h} {
		sites, err := WeightSites(gr)
		wantErr(t, err, "")
		var names []string
		for _, s := range sites {
			names = append(names, string(s.Kind)+":"+s.Name)
		}
		if !slices.Equal(names, []string{"conv:layer1.0.conv1", "conv:dw", "linear:proj", "linear:fc"}) {
			t.Fatalf("sites %v", names)
		}
		if s := sites[0]; s.Bias != "onnx::Conv_194" || !slices.Equal(s.Geometry.Strides, []int64{2, 2}) || s.Groups != 1 {
			t.Errorf("site 0 %+v", s)
		}
		if s := sites[1]; s.Groups != 4 || s.Bias != "" {
			t.Errorf("site 1 %+v", s)
		}
		if s := sites[3]; !s.TransB || s.Weight != "fc.weight" || !slices.Equal(s.WeightShape, []int64{5, 16}) {
			t.Errorf("site 3 %+v", s)
		}
	}
	sites, _ := WeightSites(h)
	if s := sites[1]; !slices.Equal(s.Geometry.Pads, []int64{1, 1, 1, 1}) || !slices.Equal(s.OutShape, []int64{-1, 4, 4, 4}) {
		t.Errorf("SAME_UPPER site after folding %+v", s)
	}
	if s := sites[2]; s.Weight != "wt" || !slices.Equal(s.WeightShape, []int64{256, 16}) {
		t.Errorf("MatMul site after folding (Transpose folded) %+v", s)
	}
}

func TestSupportedOps(t *testing.T) {
	ops := SupportedOps()
	if !slices.IsSorted(ops) || !slices.Contains(ops, "Conv") || slices.Contains(ops, "LSTM") {
		t.Errorf("SupportedOps %v", ops)
	}
	if !IsSupported("HardSwish") || IsSupported("Resize") {
		t.Error("IsSupported")
	}
}
