package model

import (
	"math"
	"slices"
	"testing"

	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model/graph"
	"github.com/sugarme/gotch/ts"
)

// opCase is one small graph reading "x" and computing "y", with hand-computed
// expected values (independent of libtorch) for one sample; the graph runs on
// a batch of two copies of it.
type opCase struct {
	name   string
	opset  int
	x      []float32
	xshape []int64 // per sample
	consts []*graph.Tensor
	nodes  []graph.Node
	want   []float32
	wshape []int64 // per sample
	// site, when set, is the one site the graph must have, with these fields.
	site *Site
}

func mustF(t *testing.T, name string, shape []int64, v ...float32) *graph.Tensor {
	t.Helper()
	x, err := graph.FromFloat32s(name, shape, v)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func mustI(t *testing.T, name string, shape []int64, v ...int64) *graph.Tensor {
	t.Helper()
	x, err := graph.FromInt64s(name, shape, v)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func nd(op string, in, out []string, attrs map[string]graph.Attr) graph.Node {
	return graph.Node{Name: op + "_" + out[0], Op: op, Inputs: in, Outputs: out, Attrs: attrs}
}

// seq is 1, 2, ..., n (times sign).
func seq(n int, sign float32) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = sign * float32(i+1)
	}
	return v
}

func softmax(v ...float64) []float32 {
	var sum float64
	for _, x := range v {
		sum += math.Exp(x)
	}
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(math.Exp(x) / sum)
	}
	return out
}

type attrs = map[string]graph.Attr

// Every op the executor supports, on small inputs with known results: the
// forms the corpus does not exercise (attributes, asymmetric pads, opset
// differences).
func TestOps(t *testing.T) {
	sm11 := softmax(1, 2, 3, 4)
	sm13a, sm13b := softmax(1, 3), softmax(2, 4)
	cases := []opCase{
		{name: "LeakyRelu", x: []float32{-2, -0.5, 0, 3}, xshape: []int64{4},
			nodes: []graph.Node{nd("LeakyRelu", []string{"x"}, []string{"y"}, attrs{"alpha": graph.Float(0.1)})},
			want:  []float32{-0.2, -0.05, 0, 3}, wshape: []int64{4}},
		{name: "PRelu", x: []float32{-1, 2, -4, 5}, xshape: []int64{2, 2},
			consts: []*graph.Tensor{mustF(t, "slope", []int64{2, 1}, 0.5, 0.25)},
			nodes:  []graph.Node{nd("PRelu", []string{"x", "slope"}, []string{"y"}, nil)},
			want:   []float32{-0.5, 2, -1, 5}, wshape: []int64{2, 2}},
		{name: "Tanh", x: []float32{-1, 0, 0.5}, xshape: []int64{3},
			nodes: []graph.Node{nd("Tanh", []string{"x"}, []string{"y"}, nil)},
			want:  []float32{float32(math.Tanh(-1)), 0, float32(math.Tanh(0.5))}, wshape: []int64{3}},
		{name: "Sigmoid", x: []float32{-1, 0, 2}, xshape: []int64{3},
			nodes: []graph.Node{nd("Sigmoid", []string{"x"}, []string{"y"}, nil)},
			want:  []float32{float32(1 / (1 + math.E)), 0.5, float32(1 / (1 + math.Exp(-2)))}, wshape: []int64{3}},
		{name: "Clip min only", x: []float32{-1, 0.4, 0.6, 9}, xshape: []int64{4},
			consts: []*graph.Tensor{mustF(t, "lo", nil, 0.5)},
			nodes:  []graph.Node{nd("Clip", []string{"x", "lo"}, []string{"y"}, nil)},
			want:   []float32{0.5, 0.5, 0.6, 9}, wshape: []int64{4}},
		{name: "Clip max only", x: []float32{-1, 0.4, 0.6, 9}, xshape: []int64{4},
			consts: []*graph.Tensor{mustF(t, "hi", nil, 0.5)},
			nodes:  []graph.Node{nd("Clip", []string{"x", "", "hi"}, []string{"y"}, nil)},
			want:   []float32{-1, 0.4, 0.5, 0.5}, wshape: []int64{4}},
		{name: "HardSigmoid", x: []float32{-2, 0, 1, 3}, xshape: []int64{4},
			nodes: []graph.Node{nd("HardSigmoid", []string{"x"}, []string{"y"}, attrs{"alpha": graph.Float(0.5), "beta": graph.Float(0.25)})},
			want:  []float32{0, 0.25, 0.75, 1}, wshape: []int64{4}},
		{name: "HardSwish", x: []float32{-4, -1, 0, 1, 4}, xshape: []int64{5},
			nodes: []graph.Node{nd("HardSwish", []string{"x"}, []string{"y"}, nil)},
			want:  []float32{0, -1.0 / 3, 0, 2.0 / 3, 4}, wshape: []int64{5}},
		{name: "Softmax opset 11 (flattened from axis 1)", opset: 11, x: []float32{1, 2, 3, 4}, xshape: []int64{2, 2},
			nodes: []graph.Node{nd("Softmax", []string{"x"}, []string{"y"}, attrs{"axis": graph.Int(1)})},
			want:  sm11, wshape: []int64{2, 2}},
		{name: "Softmax opset 13 (along axis 1)", opset: 13, x: []float32{1, 2, 3, 4}, xshape: []int64{2, 2},
			nodes: []graph.Node{nd("Softmax", []string{"x"}, []string{"y"}, attrs{"axis": graph.Int(1)})},
			want:  []float32{sm13a[0], sm13b[0], sm13a[1], sm13b[1]}, wshape: []int64{2, 2}},
		{name: "Gemm alpha beta transB=0", x: []float32{1, 2}, xshape: []int64{2},
			consts: []*graph.Tensor{mustF(t, "fc.weight", []int64{2, 3}, 1, 0, 2, 0, 1, 3), mustF(t, "fc.bias", []int64{3}, 1, 1, 1)},
			nodes: []graph.Node{nd("Gemm", []string{"x", "fc.weight", "fc.bias"}, []string{"y"},
				attrs{"alpha": graph.Float(2), "beta": graph.Float(0.5)})},
			want: []float32{2.5, 4.5, 16.5}, wshape: []int64{3},
			site: &Site{Name: "fc", Kind: Linear, WeightShape: []int64{3, 2}, HasBias: true, InShape: []int64{2}, OutShape: []int64{3}, TransposedWeight: true}},
		{name: "MatMul", x: []float32{1, 2, 3, 4}, xshape: []int64{2, 2},
			consts: []*graph.Tensor{mustF(t, "proj.weight", []int64{2, 1}, 1, -1)},
			nodes:  []graph.Node{nd("MatMul", []string{"x", "proj.weight"}, []string{"y"}, nil)},
			want:   []float32{-1, -1}, wshape: []int64{2, 1},
			site: &Site{Name: "proj", Kind: Linear, WeightShape: []int64{1, 2}, InShape: []int64{2, 2}, OutShape: []int64{2, 1}, TransposedWeight: true}},
		{name: "Sub Div broadcasting", x: []float32{1, 2, 3, 4}, xshape: []int64{2, 2},
			consts: []*graph.Tensor{mustF(t, "c", []int64{2, 1}, 1, 2), mustF(t, "two", nil, 2)},
			nodes: []graph.Node{nd("Sub", []string{"x", "c"}, []string{"d"}, nil),
				nd("Div", []string{"d", "two"}, []string{"y"}, nil)},
			want: []float32{0, 0.5, 0.5, 1}, wshape: []int64{2, 2}},
		{name: "Mul Add constant first", x: []float32{1, 2, 3}, xshape: []int64{3},
			consts: []*graph.Tensor{mustF(t, "k", nil, 3), mustF(t, "b", []int64{3}, 1, 0, -1)},
			nodes: []graph.Node{nd("Mul", []string{"k", "x"}, []string{"m"}, nil),
				nd("Add", []string{"b", "m"}, []string{"y"}, nil)},
			want: []float32{4, 6, 8}, wshape: []int64{3}},
		{name: "Split attribute and Concat", opset: 11, x: []float32{1, 2, 3}, xshape: []int64{3},
			nodes: []graph.Node{nd("Split", []string{"x"}, []string{"a", "b"}, attrs{"axis": graph.Int(1), "split": graph.Ints(1, 2)}),
				nd("Concat", []string{"b", "a"}, []string{"y"}, attrs{"axis": graph.Int(-1)})},
			want: []float32{2, 3, 1}, wshape: []int64{3}},
		{name: "Split input", opset: 13, x: []float32{1, 2, 3}, xshape: []int64{3},
			consts: []*graph.Tensor{mustI(t, "sizes", []int64{2}, 2, 1)},
			nodes: []graph.Node{nd("Split", []string{"x", "sizes"}, []string{"a", "b"}, attrs{"axis": graph.Int(1)}),
				nd("Concat", []string{"b", "a"}, []string{"y"}, attrs{"axis": graph.Int(1)})},
			want: []float32{3, 1, 2}, wshape: []int64{3}},
		{name: "Split equal", opset: 13, x: []float32{1, 2, 3, 4}, xshape: []int64{4},
			nodes: []graph.Node{nd("Split", []string{"x"}, []string{"a", "b"}, attrs{"axis": graph.Int(1)}),
				nd("Sub", []string{"b", "a"}, []string{"y"}, nil)},
			want: []float32{2, 2}, wshape: []int64{2}},
		{name: "Slice reversed", x: []float32{0, 1, 2, 3, 4}, xshape: []int64{5},
			consts: []*graph.Tensor{mustI(t, "s", []int64{1}, -1), mustI(t, "e", []int64{1}, -100), mustI(t, "a", []int64{1}, 1), mustI(t, "st", []int64{1}, -1)},
			nodes:  []graph.Node{nd("Slice", []string{"x", "s", "e", "a", "st"}, []string{"y"}, nil)},
			want:   []float32{4, 3, 2, 1, 0}, wshape: []int64{5}},
		{name: "Slice step -2 and 2", x: seq(12, 1), xshape: []int64{2, 6},
			consts: []*graph.Tensor{mustI(t, "s", []int64{2}, 1, 5), mustI(t, "e", []int64{2}, 2, 0), mustI(t, "a", []int64{2}, 1, 2), mustI(t, "st", []int64{2}, 1, -2)},
			nodes:  []graph.Node{nd("Slice", []string{"x", "s", "e", "a", "st"}, []string{"y"}, nil)},
			want:   []float32{12, 10, 8}, wshape: []int64{1, 3}},
		{name: "Slice clamped", x: seq(6, 1), xshape: []int64{6},
			consts: []*graph.Tensor{mustI(t, "s", []int64{1}, -4), mustI(t, "e", []int64{1}, math.MaxInt64), mustI(t, "a", []int64{1}, -1)},
			nodes:  []graph.Node{nd("Slice", []string{"x", "s", "e", "a"}, []string{"y"}, nil)},
			want:   []float32{3, 4, 5, 6}, wshape: []int64{4}},
		{name: "Pad with a value", x: []float32{7, 8}, xshape: []int64{1, 2},
			consts: []*graph.Tensor{mustI(t, "pads", []int64{6}, 0, 0, 1, 0, 0, 2), mustF(t, "v", nil, 1.5)},
			nodes:  []graph.Node{nd("Pad", []string{"x", "pads", "v"}, []string{"y"}, nil)},
			want:   []float32{1.5, 7, 8, 1.5, 1.5}, wshape: []int64{1, 5}},
		{name: "ReduceMean", x: []float32{1, 2, 3, 5}, xshape: []int64{2, 2},
			nodes: []graph.Node{nd("ReduceMean", []string{"x"}, []string{"y"}, attrs{"axes": graph.Ints(2), "keepdims": graph.Int(0)})},
			want:  []float32{1.5, 4}, wshape: []int64{2}},
		{name: "Unsqueeze attribute", opset: 11, x: []float32{1, 2}, xshape: []int64{2},
			nodes: []graph.Node{nd("Unsqueeze", []string{"x"}, []string{"y"}, attrs{"axes": graph.Ints(1, 3)})},
			want:  []float32{1, 2}, wshape: []int64{1, 2, 1}},
		{name: "Unsqueeze input Squeeze input", opset: 13, x: []float32{1, 2}, xshape: []int64{1, 2},
			consts: []*graph.Tensor{mustI(t, "ax", []int64{1}, -1), mustI(t, "sq", []int64{2}, 1, 3)},
			nodes: []graph.Node{nd("Unsqueeze", []string{"x", "ax"}, []string{"u"}, nil),
				nd("Squeeze", []string{"u", "sq"}, []string{"y"}, nil)},
			want: []float32{1, 2}, wshape: []int64{2}},
		{name: "Squeeze all", opset: 13, x: []float32{1, 2, 3}, xshape: []int64{1, 3, 1},
			nodes: []graph.Node{nd("Squeeze", []string{"x"}, []string{"y"}, nil)},
			want:  []float32{1, 2, 3}, wshape: []int64{3}},
		{name: "Transpose", x: seq(6, 1), xshape: []int64{2, 3},
			nodes: []graph.Node{nd("Transpose", []string{"x"}, []string{"y"}, attrs{"perm": graph.Ints(0, 2, 1)})},
			want:  []float32{1, 4, 2, 5, 3, 6}, wshape: []int64{3, 2}},
		{name: "Reshape copying a dimension", x: seq(6, 1), xshape: []int64{6},
			consts: []*graph.Tensor{mustI(t, "shape", []int64{3}, 0, 3, -1)},
			nodes:  []graph.Node{nd("Reshape", []string{"x", "shape"}, []string{"y"}, nil)},
			want:   seq(6, 1), wshape: []int64{3, 2}},
		{name: "Flatten", x: seq(6, 1), xshape: []int64{1, 2, 3},
			nodes: []graph.Node{nd("Flatten", []string{"x"}, []string{"y"}, attrs{"axis": graph.Int(1)})},
			want:  seq(6, 1), wshape: []int64{6}},
		{name: "Gather scalar", x: seq(6, 1), xshape: []int64{3, 2},
			consts: []*graph.Tensor{mustI(t, "i", nil, -2)},
			nodes:  []graph.Node{nd("Gather", []string{"x", "i"}, []string{"y"}, attrs{"axis": graph.Int(1)})},
			want:   []float32{3, 4}, wshape: []int64{2}},
		{name: "Gather vector", x: seq(6, 1), xshape: []int64{3, 2},
			consts: []*graph.Tensor{mustI(t, "i", []int64{2}, 2, 0)},
			nodes:  []graph.Node{nd("Gather", []string{"x", "i"}, []string{"y"}, attrs{"axis": graph.Int(1)})},
			want:   []float32{5, 6, 1, 2}, wshape: []int64{2, 2}},
		{name: "Cast", x: []float32{1.7, -2.2, 3}, xshape: []int64{3},
			nodes: []graph.Node{nd("Cast", []string{"x"}, []string{"i"}, attrs{"to": graph.Int(int64(graph.Int64))}),
				nd("Cast", []string{"i"}, []string{"y"}, attrs{"to": graph.Int(int64(graph.Float32))})},
			want: []float32{1, -2, 3}, wshape: []int64{3}},
		{name: "Dropout", x: []float32{1, 2}, xshape: []int64{2},
			nodes: []graph.Node{nd("Dropout", []string{"x"}, []string{"y"}, attrs{"ratio": graph.Float(0.5)})},
			want:  []float32{1, 2}, wshape: []int64{2}},
		{name: "Identity", x: []float32{1, 2}, xshape: []int64{2},
			nodes: []graph.Node{nd("Identity", []string{"x"}, []string{"y"}, nil)},
			want:  []float32{1, 2}, wshape: []int64{2}},
		{name: "AveragePool excluding pads", x: seq(9, 1), xshape: []int64{1, 3, 3},
			nodes: []graph.Node{nd("AveragePool", []string{"x"}, []string{"y"}, attrs{"kernel_shape": graph.Ints(2, 2), "strides": graph.Ints(2, 2), "pads": graph.Ints(1, 1, 1, 1)})},
			want:  []float32{1, 2.5, 5.5, 7}, wshape: []int64{1, 2, 2}},
		{name: "AveragePool including pads", x: seq(9, 1), xshape: []int64{1, 3, 3},
			nodes: []graph.Node{nd("AveragePool", []string{"x"}, []string{"y"}, attrs{"kernel_shape": graph.Ints(2, 2), "strides": graph.Ints(2, 2), "pads": graph.Ints(1, 1, 1, 1), "count_include_pad": graph.Int(1)})},
			want:  []float32{0.25, 1.25, 2.75, 7}, wshape: []int64{1, 2, 2}},
		{name: "AveragePool asymmetric pads", x: seq(9, 1), xshape: []int64{1, 3, 3},
			nodes: []graph.Node{nd("AveragePool", []string{"x"}, []string{"y"}, attrs{"kernel_shape": graph.Ints(2, 2), "strides": graph.Ints(2, 2), "pads": graph.Ints(0, 0, 1, 1)})},
			want:  []float32{3, 4.5, 7.5, 9}, wshape: []int64{1, 2, 2}},
		{name: "AveragePool asymmetric pads included", x: seq(9, 1), xshape: []int64{1, 3, 3},
			nodes: []graph.Node{nd("AveragePool", []string{"x"}, []string{"y"}, attrs{"kernel_shape": graph.Ints(2, 2), "strides": graph.Ints(2, 2), "pads": graph.Ints(0, 0, 1, 1), "count_include_pad": graph.Int(1)})},
			want:  []float32{3, 2.25, 3.75, 2.25}, wshape: []int64{1, 2, 2}},
		{name: "AveragePool ceil_mode", x: seq(9, 1), xshape: []int64{1, 3, 3},
			nodes: []graph.Node{nd("AveragePool", []string{"x"}, []string{"y"}, attrs{"kernel_shape": graph.Ints(2, 2), "strides": graph.Ints(2, 2), "ceil_mode": graph.Int(1)})},
			want:  []float32{3, 4.5, 7.5, 9}, wshape: []int64{1, 2, 2}},
		{name: "MaxPool asymmetric pads", x: seq(9, -1), xshape: []int64{1, 3, 3},
			nodes: []graph.Node{nd("MaxPool", []string{"x"}, []string{"y"}, attrs{"kernel_shape": graph.Ints(2, 2), "strides": graph.Ints(2, 2), "pads": graph.Ints(1, 1, 0, 0)})},
			want:  []float32{-1, -2, -4, -5}, wshape: []int64{1, 2, 2}},
		{name: "MaxPool ceil_mode", x: seq(9, 1), xshape: []int64{1, 3, 3},
			nodes: []graph.Node{nd("MaxPool", []string{"x"}, []string{"y"}, attrs{"kernel_shape": graph.Ints(2, 2), "strides": graph.Ints(2, 2), "ceil_mode": graph.Int(1)})},
			want:  []float32{5, 6, 8, 9}, wshape: []int64{1, 2, 2}},
		{name: "MaxPool dilation and auto_pad", x: seq(9, 1), xshape: []int64{1, 3, 3},
			nodes: []graph.Node{nd("MaxPool", []string{"x"}, []string{"y"}, attrs{"kernel_shape": graph.Ints(2, 2), "dilations": graph.Ints(2, 2), "auto_pad": graph.Str("VALID")})},
			want:  []float32{9}, wshape: []int64{1, 1, 1}},
		{name: "GlobalAveragePool", x: seq(8, 1), xshape: []int64{2, 2, 2},
			nodes: []graph.Node{nd("GlobalAveragePool", []string{"x"}, []string{"y"}, nil)},
			want:  []float32{2.5, 6.5}, wshape: []int64{2, 1, 1}},
		{name: "Conv asymmetric pads", x: []float32{1, 2, 3, 4}, xshape: []int64{1, 2, 2},
			consts: []*graph.Tensor{mustF(t, "c.weight", []int64{1, 1, 2, 2}, 1, 1, 1, 1)},
			nodes:  []graph.Node{nd("Conv", []string{"x", "c.weight"}, []string{"y"}, attrs{"pads": graph.Ints(0, 1, 1, 0)})},
			want:   []float32{4, 10, 3, 7}, wshape: []int64{1, 2, 2},
			site: &Site{Name: "c", Kind: Conv, WeightShape: []int64{1, 1, 2, 2}, InShape: []int64{1, 2, 2}, OutShape: []int64{1, 2, 2},
				Stride: 1, Groups: 1, Kernel: []int64{2, 2}, Strides: []int64{1, 1}, Pads: []int64{0, 1, 1, 0}, Dilations: []int64{1, 1}}},
		{name: "Conv SAME_UPPER", x: seq(4, 1), xshape: []int64{1, 2, 2},
			consts: []*graph.Tensor{mustF(t, "c.weight", []int64{1, 1, 2, 2}, 1, 1, 1, 1)},
			nodes:  []graph.Node{nd("Conv", []string{"x", "c.weight"}, []string{"y"}, attrs{"auto_pad": graph.Str("SAME_UPPER")})},
			want:   []float32{10, 6, 7, 4}, wshape: []int64{1, 2, 2},
			site: &Site{Name: "c", Kind: Conv, WeightShape: []int64{1, 1, 2, 2}, InShape: []int64{1, 2, 2}, OutShape: []int64{1, 2, 2},
				Stride: 1, Groups: 1, Kernel: []int64{2, 2}, Strides: []int64{1, 1}, Pads: []int64{0, 0, 1, 1}, Dilations: []int64{1, 1}}},
		{name: "Conv dilation", x: seq(9, 1), xshape: []int64{1, 3, 3},
			consts: []*graph.Tensor{mustF(t, "c.weight", []int64{1, 1, 2, 2}, 1, 1, 1, 1)},
			nodes:  []graph.Node{nd("Conv", []string{"x", "c.weight"}, []string{"y"}, attrs{"dilations": graph.Ints(2, 2)})},
			want:   []float32{20}, wshape: []int64{1, 1, 1},
			site: &Site{Name: "c", Kind: Conv, WeightShape: []int64{1, 1, 2, 2}, InShape: []int64{1, 3, 3}, OutShape: []int64{1, 1, 1},
				Stride: 1, Groups: 1, Kernel: []int64{2, 2}, Strides: []int64{1, 1}, Pads: []int64{0, 0, 0, 0}, Dilations: []int64{2, 2}}},
		{name: "Conv depthwise with bias, stride 2", x: seq(8, 1), xshape: []int64{2, 2, 2},
			consts: []*graph.Tensor{mustF(t, "dw.weight", []int64{2, 1, 1, 1}, 2, -1), mustF(t, "dw.bias", []int64{2}, 0.5, 0)},
			nodes: []graph.Node{nd("Conv", []string{"x", "dw.weight", "dw.bias"}, []string{"y"},
				attrs{"group": graph.Int(2), "strides": graph.Ints(2, 2)})},
			want: []float32{2.5, -5}, wshape: []int64{2, 1, 1},
			site: &Site{Name: "dw", Kind: Conv, WeightShape: []int64{2, 1, 1, 1}, HasBias: true, InShape: []int64{2, 2, 2}, OutShape: []int64{2, 1, 1},
				Stride: 2, Groups: 2, Kernel: []int64{1, 1}, Strides: []int64{2, 2}, Pads: []int64{0, 0, 0, 0}, Dilations: []int64{1, 1}}},
		{name: "BatchNormalization", x: []float32{1, 2, 3, 4}, xshape: []int64{2, 2},
			consts: []*graph.Tensor{mustF(t, "bn.weight", []int64{2}, 2, 1), mustF(t, "bn.bias", []int64{2}, 0, 1),
				mustF(t, "bn.running_mean", []int64{2}, 1, 2), mustF(t, "bn.running_var", []int64{2}, 4, 1)},
			nodes: []graph.Node{nd("BatchNormalization", []string{"x", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"},
				[]string{"y"}, attrs{"epsilon": graph.Float(0)})},
			want: []float32{0, 1, 2, 3}, wshape: []int64{2, 2}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opset := tc.opset
			if opset == 0 {
				opset = 13
			}
			g := &graph.Graph{Opset: opset,
				Inputs:       []graph.Value{{Name: "x", DType: graph.Float32, Shape: append([]int64{-1}, tc.xshape...)}},
				Outputs:      []graph.Value{{Name: "y", DType: graph.Float32}},
				Nodes:        tc.nodes,
				Initializers: tc.consts,
			}
			m := fromGraph(t, g)
			switch sites := m.Sites(); {
			case tc.site == nil && len(sites) > 0:
				t.Errorf("sites %+v, want none", sites)
			case tc.site != nil:
				want := *tc.site
				if len(sites) != 1 {
					t.Fatalf("sites %+v, want %+v", sites, want)
				}
				got := sites[0]
				got.Node = ""
				if !sameSite(got, want) {
					t.Errorf("site %+v, want %+v", got, want)
				}
				if got.Regular() != (want.Stride > 0 && allEqual(want.Pads) && !want.TransposedWeight && (want.Dilations == nil || want.Dilations[0] == 1)) {
					t.Errorf("Regular() = %v for %+v", got.Regular(), got)
				}
			}
			x := append(append([]float32(nil), tc.x...), tc.x...)
			shape := append([]int64{2}, tc.xshape...)
			got, gshape := forward(t, m, x, shape, nil)
			want := append(append([]float32(nil), tc.want...), tc.want...)
			if !slices.Equal(gshape, append([]int64{2}, tc.wshape...)) || len(got) != len(want) {
				t.Fatalf("output %v of shape %v, want %v of shape [2 %v]", got, gshape, want, tc.wshape)
			}
			if d, _, _ := maxDiff(got, want); d > 1e-6 {
				t.Fatalf("output %v, want %v", got, want)
			}
		})
	}
}

// sameSite compares sites field by field (nil and empty slices alike).
func sameSite(a, b Site) bool {
	eq := func(x, y []int64) bool { return len(x) == len(y) && (len(x) == 0 || slices.Equal(x, y)) }
	return a.Name == b.Name && a.Kind == b.Kind && a.HasBias == b.HasBias && a.Stride == b.Stride &&
		a.Padding == b.Padding && a.Groups == b.Groups && a.TransposedWeight == b.TransposedWeight &&
		eq(a.WeightShape, b.WeightShape) && eq(a.InShape, b.InShape) && eq(a.OutShape, b.OutShape) &&
		eq(a.Kernel, b.Kernel) && eq(a.Strides, b.Strides) && eq(a.Pads, b.Pads) && eq(a.Dilations, b.Dilations)
}

// A graph's scalar constants are 0-d parameters that survive an .npz round
// trip (written 0-d, read back into the 0-d tensor).
func TestScalarParamNPZ(t *testing.T) {
	g := &graph.Graph{Opset: 13,
		Inputs:       []graph.Value{{Name: "x", DType: graph.Float32, Shape: []int64{-1, 3}}},
		Outputs:      []graph.Value{{Name: "y", DType: graph.Float32}},
		Nodes:        []graph.Node{nd("Mul", []string{"x", "scale"}, []string{"y"}, nil)},
		Initializers: []*graph.Tensor{mustF(t, "scale", nil, 3)},
	}
	m := fromGraph(t, g)
	p := m.Params()
	if len(p) != 1 || p[0].Name != "scale" || p[0].Trainable {
		t.Fatalf("params %+v, want the buffer scale", p)
	}
	path := t.TempDir() + "/w.npz"
	if err := m.SaveNPZ(path, 0); err != nil {
		t.Fatal(err)
	}
	do(t, func() error {
		return torch.NoGrad(func() error { return p[0].Tensor.Fill_(zeroScalar) })
	})
	if err := m.LoadNPZ(path); err != nil {
		t.Fatal(err)
	}
	if got := evalLogits(t, m, []float32{1, 2, 3}, []int64{1, 3}); got[2] != 9 {
		t.Errorf("after the round trip: %v, want [3 6 9]", got)
	}
}

// A graph without nodes (its output is its input) is one stage without sites.
func TestEmptyGraph(t *testing.T) {
	g := &graph.Graph{Opset: 13,
		Inputs:  []graph.Value{{Name: "x", DType: graph.Float32, Shape: []int64{-1, 3}}},
		Outputs: []graph.Value{{Name: "x", DType: graph.Float32, Shape: []int64{-1, 3}}},
	}
	m := fromGraph(t, g)
	if m.NumStages() != 1 || len(m.Sites()) != 0 || m.Lead(0) != "" {
		t.Errorf("%d stages, sites %v, lead %q", m.NumStages(), m.SiteNames(), m.Lead(0))
	}
	if got := evalLogits(t, m, []float32{1, 2, 3}, []int64{1, 3}); got[0] != 1 || got[2] != 3 {
		t.Errorf("output %v, want the input", got)
	}
}

// ReLU works in place only on a tensor nothing else reads: never on the
// caller's input (through views of it) nor on a value a later node reads.
func TestInPlaceSafety(t *testing.T) {
	cases := []struct {
		name   string
		consts []*graph.Tensor
		nodes  []graph.Node
		want   []float32
	}{
		{"view of the input", []*graph.Tensor{mustI(t, "shape", []int64{2}, -1, 2)},
			[]graph.Node{nd("Reshape", []string{"x", "shape"}, []string{"v"}, nil), nd("Relu", []string{"v"}, []string{"y"}, nil)},
			[]float32{0, 2}},
		{"unbounded Clip of the input", nil,
			[]graph.Node{nd("Clip", []string{"x"}, []string{"v"}, nil), nd("Identity", []string{"v"}, []string{"w"}, nil),
				nd("Relu", []string{"w"}, []string{"y"}, nil)},
			[]float32{0, 2}},
		{"value read again later", []*graph.Tensor{mustF(t, "two", nil, 2)},
			[]graph.Node{nd("Mul", []string{"x", "two"}, []string{"a"}, nil), nd("Relu", []string{"a"}, []string{"r"}, nil),
				nd("Add", []string{"a", "r"}, []string{"y"}, nil)},
			[]float32{-2, 8}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := &graph.Graph{Opset: 13,
				Inputs:       []graph.Value{{Name: "x", DType: graph.Float32, Shape: []int64{-1, 2}}},
				Outputs:      []graph.Value{{Name: "y", DType: graph.Float32}},
				Nodes:        tc.nodes,
				Initializers: tc.consts,
			}
			m := fromGraph(t, g)
			withInput(t, []float32{-1, 2}, []int64{1, 2}, func(x *ts.Tensor) error {
				y, err := m.Forward(x, false, nil)
				if err != nil {
					return err
				}
				got, err := takeFloats(y)
				if err != nil {
					return err
				}
				in, err := torch.Float32s(x)
				if err != nil {
					return err
				}
				if got[0] != tc.want[0] || got[1] != tc.want[1] {
					t.Errorf("output %v, want %v", got, tc.want)
				}
				if in[0] != -1 || in[1] != 2 {
					t.Errorf("the input became %v", in)
				}
				return nil
			})
		})
	}
}
