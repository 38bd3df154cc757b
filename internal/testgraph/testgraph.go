// Package testgraph builds small graphs for tests of the fault engine and
// DeepVigor+ on imported models.
package testgraph

import (
	"math/rand/v2"
	"testing"

	"github.com/faultline/faultline/model"
	"github.com/faultline/faultline/model/graph"
	"github.com/faultline/faultline/model/onnx"
	"github.com/sugarme/gotch"
)

// Odd is a small network of the geometries the zoo lacks, with random
// weights: a conv with per-axis strides, asymmetric pads and a dilation; a
// grouped conv with dilation and pads that differ per axis; a depthwise conv
// with asymmetric pads and strides; a MatMul and a Gemm without transB (weights
// stored [in, out]).
func Odd(t testing.TB) *graph.Graph {
	t.Helper()
	r := rand.New(rand.NewPCG(5, 11))
	var inits []*graph.Tensor
	param := func(name string, scale float32, shape ...int64) string {
		v := make([]float32, model.Numel(shape))
		for i := range v {
			v[i] = scale * float32(r.NormFloat64())
		}
		x, err := graph.FromFloat32s(name, shape, v)
		if err != nil {
			t.Fatal(err)
		}
		inits = append(inits, x)
		return name
	}
	node := func(op string, in []string, out string, attrs map[string]graph.Attr) graph.Node {
		return graph.Node{Name: op + "_" + out, Op: op, Inputs: in, Outputs: []string{out}, Attrs: attrs}
	}
	nodes := []graph.Node{
		node("Conv", []string{"x", param("c1.weight", 0.5, 6, 1, 3, 2), param("c1.bias", 0.1, 6)}, "c1",
			map[string]graph.Attr{"strides": graph.Ints(2, 1), "pads": graph.Ints(0, 1, 1, 0), "dilations": graph.Ints(1, 2)}),
		node("Relu", []string{"c1"}, "r1", nil),
		node("Conv", []string{"r1", param("c2.weight", 0.4, 6, 2, 3, 3), param("c2.bias", 0.1, 6)}, "c2",
			map[string]graph.Attr{"group": {Kind: graph.AttrInt, Int: 3}, "pads": graph.Ints(2, 1, 2, 1), "dilations": graph.Ints(2, 2)}),
		node("Relu", []string{"c2"}, "r2", nil),
		node("MaxPool", []string{"r2"}, "p2", map[string]graph.Attr{"kernel_shape": graph.Ints(2, 2), "strides": graph.Ints(2, 2)}),
		node("Conv", []string{"p2", param("c3.weight", 0.5, 6, 1, 3, 3), param("c3.bias", 0.1, 6)}, "c3",
			map[string]graph.Attr{"group": {Kind: graph.AttrInt, Int: 6}, "strides": graph.Ints(1, 2), "pads": graph.Ints(1, 0, 0, 1)}),
		node("Relu", []string{"c3"}, "r3", nil),
		node("Flatten", []string{"r3"}, "f", nil),
		node("MatMul", []string{"f", param("fc1.weight", 0.1, 216, 20)}, "fc1", nil),
		node("Relu", []string{"fc1"}, "r4", nil),
		node("Gemm", []string{"r4", param("fc2.weight", 0.3, 20, 10), param("fc2.bias", 0.1, 10)}, "y", nil),
	}
	return &graph.Graph{Opset: 13,
		Inputs:       []graph.Value{{Name: "x", DType: graph.Float32, Shape: []int64{-1, 1, 28, 28}}},
		Outputs:      []graph.Value{{Name: "y", DType: graph.Float32}},
		Nodes:        nodes,
		Initializers: inits,
	}
}

// FromONNX builds the model of an ONNX file, folded for 1x28x28 images.
func FromONNX(t testing.TB, path string) *model.Model {
	t.Helper()
	g, err := onnx.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if g, err = graph.Fold(g, []int64{1, 28, 28}); err != nil {
		t.Fatal(err)
	}
	m, err := model.FromGraph(g, gotch.CPU)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}
