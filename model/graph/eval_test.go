package graph

import (
	"math"
	"slices"
	"testing"
)

func TestSlice(t *testing.T) {
	x := i64(t, "", []int64{6}, 0, 1, 2, 3, 4, 5)
	for _, tc := range []struct {
		start, end, step int64
		want             []int64
	}{
		{0, 6, 1, []int64{0, 1, 2, 3, 4, 5}},
		{1, 100, 2, []int64{1, 3, 5}},
		{-1, math.MinInt64 + 1, -1, []int64{5, 4, 3, 2, 1, 0}}, // torch's flip
		{-2, -5, -2, []int64{4, 2}},
		{5, 0, -3, []int64{5, 2}},
		{10, -10, -1, []int64{5, 4, 3, 2, 1, 0}},
		{3, 3, 1, []int64{}},
		{0, 6, math.MinInt64, []int64{}},
		{5, -100, math.MinInt64, []int64{5}},
		{-100, 2, 1, []int64{0, 1}},
	} {
		out, err := slice(x, []int64{tc.start}, []int64{tc.end}, []int64{0}, []int64{tc.step})
		wantErr(t, err, "")
		if got, _ := out.Int64s(); !slices.Equal(got, tc.want) || out.Shape[0] != int64(len(tc.want)) {
			t.Errorf("slice(%d:%d:%d) = %v %v, want %v", tc.start, tc.end, tc.step, got, out.Shape, tc.want)
		}
		if n := sliceLen(6, tc.start, tc.end, tc.step); n != int64(len(tc.want)) {
			t.Errorf("sliceLen(%d:%d:%d) = %d, want %d", tc.start, tc.end, tc.step, n, len(tc.want))
		}
	}
	m := f32(t, "", []int64{2, 3})
	out, err := slice(m, []int64{-1, 0}, []int64{-3, 3}, []int64{1, 0}, []int64{-1, 1})
	wantErr(t, err, "")
	if got, _ := out.Float32s(); !slices.Equal(got, []float32{2, 1, 5, 4}) {
		t.Errorf("2-D slice %v", got)
	}
	_, err = slice(x, []int64{0}, []int64{1}, []int64{0}, []int64{0})
	wantErr(t, err, "Slice step 0")
	_, err = slice(x, []int64{0}, []int64{1}, []int64{1}, nil)
	wantErr(t, err, "axis 1 out of range for rank 1")
}

func TestEvalOps(t *testing.T) {
	m := f32(t, "", []int64{2, 3}) // 0..5
	for _, tc := range []struct {
		name string
		node Node
		in   []*Tensor
		want []int64 // output shape, then the values (as int64)
		vals []float64
		err  string
	}{
		{"gather negative", nd("Gather", "g", "a,b", "y", "axis", Int(1)), []*Tensor{m, i64(t, "", []int64{2}, -1, 0)},
			[]int64{2, 2}, []float64{2, 0, 5, 3}, ""},
		{"gather out of range", nd("Gather", "g", "a,b", "y"), []*Tensor{m, i64(t, "", nil, 2)}, nil, nil,
			"index 2 out of range for dimension 2"},
		{"transpose", nd("Transpose", "t", "a", "y"), []*Tensor{m}, []int64{3, 2}, []float64{0, 3, 1, 4, 2, 5}, ""},
		{"concat", nd("Concat", "c", "a,b", "y", "axis", Int(-1)), []*Tensor{m, m}, []int64{2, 6},
			[]float64{0, 1, 2, 0, 1, 2, 3, 4, 5, 3, 4, 5}, ""},
		{"squeeze all", nd("Squeeze", "s", "a", "y"), []*Tensor{f32(t, "", []int64{1, 2, 1}, 7, 8)}, []int64{2}, []float64{7, 8}, ""},
		{"unsqueeze input axes", nd("Unsqueeze", "u", "a,b", "y"), []*Tensor{m, i64(t, "", []int64{2}, 0, -1)},
			[]int64{1, 2, 3, 1}, []float64{0, 1, 2, 3, 4, 5}, ""},
		{"reshape 0 and -1", nd("Reshape", "r", "a,b", "y"), []*Tensor{m, i64(t, "", []int64{3}, 0, -1, 1)},
			[]int64{2, 3, 1}, []float64{0, 1, 2, 3, 4, 5}, ""},
		{"reshape bad", nd("Reshape", "r", "a,b", "y"), []*Tensor{m, i64(t, "", []int64{1}, 4)}, nil, nil,
			"cannot reshape [2 3] to [4]"},
		{"add broadcast", nd("Add", "a", "a,b", "y"), []*Tensor{m, f32(t, "", []int64{3}, 10, 20, 30)},
			[]int64{2, 3}, []float64{10, 21, 32, 13, 24, 35}, ""},
		{"div int truncates", nd("Div", "d", "a,b", "y"), []*Tensor{i64(t, "", []int64{2}, 7, -7), i64(t, "", nil, 2)},
			[]int64{2}, []float64{3, -3}, ""},
		{"mixed types", nd("Mul", "m", "a,b", "y"), []*Tensor{m, i64(t, "", nil, 2)}, nil, nil, "Mul of float32 and int64"},
		{"cast to int", nd("Cast", "c", "a", "y", "to", Int(int64(Int32))), []*Tensor{f32(t, "", []int64{3}, 2.7, -2.7, 0)},
			[]int64{3}, []float64{2, -2, 0}, ""},
		{"range", nd("Range", "r", "a,b,c", "y"), []*Tensor{i64(t, "", nil, 5), i64(t, "", nil, 0), i64(t, "", nil, -2)},
			[]int64{3}, []float64{5, 3, 1}, ""},
		{"range too long", nd("Range", "r", "a,b,c", "y"), []*Tensor{i64(t, "", nil, 0), i64(t, "", nil, 1<<40), i64(t, "", nil, 1)},
			nil, nil, "Range of 1.099511627776e+12 elements"},
		{"equal where", nd("Where", "w", "a,b,c", "y"), []*Tensor{
			func() *Tensor {
				e, err := elementwise("Equal", i64(t, "", []int64{3}, 1, -1, 3), i64(t, "", nil, -1))
				wantErr(t, err, "")
				return e
			}(), i64(t, "", []int64{3}, 1, 2, 3), i64(t, "", nil, 9)}, []int64{3}, []float64{9, 2, 9}, ""},
		{"constant of shape", nd("ConstantOfShape", "c", "a", "y", "value", TensorAttr(i64(t, "", []int64{1}, 4))),
			[]*Tensor{i64(t, "", []int64{2}, 1, 2)}, []int64{1, 2}, []float64{4, 4}, ""},
		{"constant of huge shape", nd("ConstantOfShape", "c", "a", "y"), []*Tensor{i64(t, "", []int64{2}, 1<<20, 1<<20)},
			nil, nil, "folded tensor would have 1099511627776 elements"},
		{"constant value_ints", nd("Constant", "c", "", "y", "value_ints", Ints(3, 4)), nil, []int64{2}, []float64{3, 4}, ""},
		{"flatten", nd("Flatten", "f", "a", "y", "axis", Int(0)), []*Tensor{m}, []int64{1, 6}, []float64{0, 1, 2, 3, 4, 5}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			outs, err := evalNode(&tc.node, tc.in)
			wantErr(t, err, tc.err)
			if tc.err != "" {
				return
			}
			y := outs[0]
			var got []float64
			if y.DType.IsFloat() {
				v, _ := y.Float32s()
				for _, f := range v {
					got = append(got, float64(f))
				}
			} else {
				v, _ := y.Int64s()
				for _, i := range v {
					got = append(got, float64(i))
				}
			}
			if !slices.Equal(y.Shape, tc.want) || !slices.Equal(got, tc.vals) {
				t.Errorf("got %v %v, want %v %v", y.Shape, got, tc.want, tc.vals)
			}
		})
	}
}

func TestInferConvPool(t *testing.T) {
	x := ranked(Float32, []int64{dimBatch, 3, 28, 28})
	w := func(shape ...int64) info { return ranked(Float32, shape) }
	for _, tc := range []struct {
		name string
		node Node
		w    info
		want []int64
	}{
		{"conv same", nd("Conv", "c", "x,w", "y", "pads", Ints(1, 1, 1, 1)), w(8, 3, 3, 3), []int64{dimBatch, 8, 28, 28}},
		{"conv stride 2 asymmetric", nd("Conv", "c", "x,w", "y", "pads", Ints(0, 1, 1, 0), "strides", Ints(2, 2)),
			w(8, 3, 3, 3), []int64{dimBatch, 8, 14, 14}},
		{"conv dilation", nd("Conv", "c", "x,w", "y", "dilations", Ints(2, 3)), w(8, 3, 3, 3), []int64{dimBatch, 8, 24, 22}},
		{"depthwise", nd("Conv", "c", "x,w", "y", "group", Int(3), "kernel_shape", Ints(5, 5)), w(3, 1, 5, 5),
			[]int64{dimBatch, 3, 24, 24}},
		{"same upper", nd("Conv", "c", "x,w", "y", "auto_pad", Str("SAME_UPPER"), "strides", Ints(3, 3)), w(4, 3, 2, 2),
			[]int64{dimBatch, 4, 10, 10}},
		{"valid", nd("Conv", "c", "x,w", "y", "auto_pad", Str("VALID"), "strides", Ints(2, 2)), w(4, 3, 3, 3),
			[]int64{dimBatch, 4, 13, 13}},
		{"maxpool", nd("MaxPool", "p", "x", "y", "kernel_shape", Ints(2, 2), "strides", Ints(2, 2)), info{}, []int64{dimBatch, 3, 14, 14}},
		{"maxpool ceil", nd("MaxPool", "p", "x", "y", "kernel_shape", Ints(3, 3), "strides", Ints(2, 2), "ceil_mode", Int(1)),
			info{}, []int64{dimBatch, 3, 14, 14}},
		// ceil mode: a last window starting in the end padding is dropped
		{"avgpool ceil padded", nd("AveragePool", "p", "x", "y", "kernel_shape", Ints(2, 2), "strides", Ints(3, 3),
			"pads", Ints(1, 1, 1, 1), "ceil_mode", Int(1)), info{}, []int64{dimBatch, 3, 10, 10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			outs, err := infer(&tc.node, []info{x, tc.w}, nil)
			wantErr(t, err, "")
			if !slices.Equal(outs[0].shape, tc.want) {
				t.Errorf("shape %v, want %v", outs[0].shape, tc.want)
			}
		})
	}
	geo := ConvGeometry{AutoPad: "SAME_LOWER", Kernel: []int64{4}, Strides: []int64{1}, Dilations: []int64{1}, Pads: make([]int64, 2)}
	if out, err := geo.OutSize(0, 7); err != nil || out != 7 || !slices.Equal(geo.Pads, []int64{2, 1}) {
		t.Errorf("SAME_LOWER: %d %v %v", out, geo.Pads, err)
	}
}

func TestInferOthers(t *testing.T) {
	x := ranked(Float32, []int64{dimBatch, 4, 6, 6})
	for _, tc := range []struct {
		name   string
		node   Node
		ins    []info
		consts []*Tensor
		want   [][]int64
	}{
		{"flatten", nd("Flatten", "f", "x", "y"), []info{x}, nil, [][]int64{{dimBatch, 144}}},
		{"flatten 0", nd("Flatten", "f", "x", "y", "axis", Int(0)), []info{x}, nil, [][]int64{{1, dimUnknown}}},
		{"gemm", nd("Gemm", "g", "a,b", "y", "transB", Int(1)), []info{ranked(Float32, []int64{dimBatch, 144}),
			ranked(Float32, []int64{10, 144})}, nil, [][]int64{{dimBatch, 10}}},
		{"matmul", nd("MatMul", "m", "a,b", "y"), []info{ranked(Float32, []int64{dimBatch, 7, 144}),
			ranked(Float32, []int64{144, 10})}, nil, [][]int64{{dimBatch, 7, 10}}},
		{"split attr", nd("Split", "s", "x", "a,b", "axis", Int(1), "split", Ints(1, 3)), []info{x}, nil,
			[][]int64{{dimBatch, 1, 6, 6}, {dimBatch, 3, 6, 6}}},
		{"split equal", nd("Split", "s", "x", "a,b", "axis", Int(1)), []info{x}, nil,
			[][]int64{{dimBatch, 2, 6, 6}, {dimBatch, 2, 6, 6}}},
		{"reduce mean", nd("ReduceMean", "r", "x", "y", "axes", Ints(2, 3), "keepdims", Int(0)), []info{x}, nil,
			[][]int64{{dimBatch, 4}}},
		{"pad input", nd("Pad", "p", "x,pads", "y"), []info{x, ranked(Int64, []int64{8})},
			[]*Tensor{nil, i64(t, "", []int64{8}, 0, 0, 1, 0, 0, 0, 0, 2)}, [][]int64{{dimBatch, 4, 7, 8}}},
		{"slice batch whole", nd("Slice", "s", "x,a,b,c", "y"), []info{x}, []*Tensor{nil, i64(t, "", []int64{2}, 0, 2),
			i64(t, "", []int64{2}, math.MaxInt64, 4), i64(t, "", []int64{2}, 0, 1)}, [][]int64{{dimBatch, 2, 6, 6}}},
		{"broadcast", nd("Add", "a", "x,b", "y"), []info{x, ranked(Float32, []int64{4, 1, 1})}, nil, [][]int64{{dimBatch, 4, 6, 6}}},
		{"global pool", nd("GlobalAveragePool", "g", "x", "y"), []info{x}, nil, [][]int64{{dimBatch, 4, 1, 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			outs, err := infer(&tc.node, tc.ins, tc.consts)
			wantErr(t, err, "")
			for i, want := range tc.want {
				if !outs[i].ranked || !slices.Equal(outs[i].shape, want) {
					t.Errorf("output %d: %v, want %v", i, dimString(outs[i].shape), dimString(want))
				}
			}
		})
	}
	_, err := infer(ptr(nd("Add", "a", "x,b", "y")), []info{x, ranked(Float32, []int64{5, 1, 1})}, nil)
	wantErr(t, err, "dimensions 4 and 5 do not broadcast")
}

func ptr(n Node) *Node { return &n }
