package gorgonnx

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/faultline/faultline/internal/npz"
	"github.com/faultline/faultline/model"
	"github.com/faultline/faultline/model/graph"
	"github.com/faultline/faultline/model/onnx"
)

const fixtureDir = "../testdata/onnx"

// fixtureIO returns smallnet_io.npz's images [8 1 28 28] and PyTorch's logits.
func fixtureIO(t *testing.T) (images, logits []float32) {
	t.Helper()
	arrays, err := npz.Read(filepath.Join(fixtureDir, "smallnet_io.npz"))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range arrays {
		switch a.Name {
		case "input":
			images = a.T.Data().([]float32)
		case "logits":
			logits = a.T.Data().([]float32)
		}
	}
	if len(images) != 8*28*28 || len(logits) != 8*10 {
		t.Fatalf("smallnet_io.npz: %d image values, %d logits", len(images), len(logits))
	}
	return images, logits
}

// agree checks that got matches want (n rows of classes logits): max |diff|
// within 1e-4 of the largest |logit| and the same top-1 class for every row.
// It returns the max |diff|.
func agree(t *testing.T, got, want []float32, classes int) float64 {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d logits, want %d", len(got), len(want))
	}
	var diff, scale float64
	for i := range got {
		diff = math.Max(diff, math.Abs(float64(got[i])-float64(want[i])))
		scale = math.Max(scale, math.Abs(float64(want[i])))
	}
	if !(diff <= 1e-4*scale) {
		t.Errorf("max |diff| %g, logits up to %g: more than 1e-4 of it", diff, scale)
	}
	for r := 0; r < len(got)/classes; r++ {
		if g, w := model.Top1(got[r*classes:(r+1)*classes]), model.Top1(want[r*classes:(r+1)*classes]); g != w {
			t.Errorf("image %d: class %d, want %d", r, g, w)
		}
	}
	return diff
}

// readFixture reads an ONNX fixture.
func readFixture(t *testing.T, name string) *graph.Graph {
	t.Helper()
	g, err := onnx.ReadFile(filepath.Join(fixtureDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// staticBatch returns g with its input and output declaring batch b.
func staticBatch(g *graph.Graph, b int64) *graph.Graph {
	h := g.Clone()
	h.Inputs[0].Shape = slices.Clone(h.Inputs[0].Shape)
	h.Inputs[0].Shape[0], h.Inputs[0].DimNames = b, nil
	h.Outputs[0].Shape = slices.Clone(h.Outputs[0].Shape)
	h.Outputs[0].Shape[0], h.Outputs[0].DimNames = b, nil
	return h
}

// TestFixtures runs the smallnet fixtures (eval: BatchNorm folded into the
// convolutions but one; preserve: every BatchNorm kept) on gorgonnx and
// compares with PyTorch's logits: in one batch, in batches of 3 (the last
// padded), one image at a time (padded to a batch of 2), and with the batch
// declared static at 1 (gorgonnx's batch-1 code paths, run 8 times).
func TestFixtures(t *testing.T) {
	images, want := fixtureIO(t)
	per := 28 * 28
	for _, file := range []string{"smallnet-opset13-eval.onnx", "smallnet-opset13-preserve.onnx"} {
		g := readFixture(t, file)
		if err := Supports(g); err != nil {
			t.Fatalf("%s: Supports: %v", file, err)
		}
		for _, tc := range []struct {
			name  string
			graph *graph.Graph
			n     int
			batch int64
		}{
			{"batch8", g, 8, MaxBatch},
			{"batches-of-3", g, 8, 3},
			{"one-image", g, 1, MaxBatch},
			{"static-batch-1", staticBatch(g, 1), 8, MaxBatch},
		} {
			t.Run(file+"/"+tc.name, func(t *testing.T) {
				defer func(b int64) { maxBatch = b }(maxBatch)
				maxBatch = tc.batch
				got, classes, err := RunGraph(file, tc.graph, images[:tc.n*per], []int64{int64(tc.n), 1, 28, 28})
				if err != nil {
					t.Fatal(err)
				}
				if classes != 10 {
					t.Fatalf("%d classes", classes)
				}
				diff := agree(t, got, want[:tc.n*10], classes)
				t.Logf("max |diff| vs PyTorch %.3g", diff)
			})
		}
	}
	t.Run("Run", func(t *testing.T) {
		got, classes, err := Run(filepath.Join(fixtureDir, "smallnet-opset13-eval.onnx"), images, []int64{8, 1, 28, 28})
		if err != nil {
			t.Fatal(err)
		}
		agree(t, got, want, classes)
	})
}

// tensorOf returns a float32 tensor of the given shape filled with a
// deterministic pattern (irregular enough that logits do not tie).
func tensorOf(t *testing.T, name string, shape ...int64) *graph.Tensor {
	t.Helper()
	n, _ := graph.NumElems(shape)
	vals := make([]float32, n)
	for i := range vals {
		vals[i] = float32(math.Sin(float64(i)*0.7 + 0.3))
	}
	x, err := graph.FromFloat32s(name, shape, vals)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// netWith returns a graph x [N 2 6 6] -> nodes -> Flatten -> Gemm -> logits
// [N 3]: nodes must compute "h" of shape [N 2 6 6] (hw static) from "x".
func netWith(t *testing.T, nodes []graph.Node, inits ...*graph.Tensor) *graph.Graph {
	t.Helper()
	nodes = append(nodes,
		graph.Node{Name: "flatten", Op: "Flatten", Inputs: []string{"h"}, Outputs: []string{"f"}},
		graph.Node{Name: "fc", Op: "Gemm", Inputs: []string{"f", "fc.weight", "fc.bias"}, Outputs: []string{"logits"},
			Attrs: map[string]graph.Attr{"transB": graph.Int(1)}})
	return &graph.Graph{
		Name: "net", Opset: 13,
		Inputs:       []graph.Value{{Name: "x", DType: graph.Float32, Shape: []int64{-1, 2, 6, 6}}},
		Outputs:      []graph.Value{{Name: "logits", DType: graph.Float32, Shape: []int64{-1, 3}}},
		Nodes:        nodes,
		Initializers: append(inits, tensorOf(t, "fc.weight", 3, 72), tensorOf(t, "fc.bias", 3)),
	}
}

func conv(name, in, out string, attrs map[string]graph.Attr) graph.Node {
	return graph.Node{Name: name, Op: "Conv", Inputs: []string{in, "w"}, Outputs: []string{out}, Attrs: attrs}
}

// TestUnsupported: graphs gorgonnx cannot run are reported by Supports and
// RunGraph with every unsupported op, its form and its nodes, and ops fed by
// an unsupported node are not reported for lack of shapes.
func TestUnsupported(t *testing.T) {
	w := tensorOf(t, "w", 2, 2, 3, 3)
	sizes, _ := graph.FromFloat32s("scales", []int64{4}, []float32{1, 1, 1, 1})
	for _, tc := range []struct {
		name  string
		g     *graph.Graph
		want  map[string][]string
		error string
	}{
		{"asymmetric conv pads and dilations", netWith(t, []graph.Node{
			conv("c1", "x", "a", map[string]graph.Attr{"pads": graph.Ints(1, 1, 0, 0), "kernel_shape": graph.Ints(2, 2)}),
			conv("c2", "a", "b", map[string]graph.Attr{"pads": graph.Ints(2, 2, 2, 2), "dilations": graph.Ints(2, 2)}),
			conv("c3", "b", "h", map[string]graph.Attr{"pads": graph.Ints(1, 1, 1, 1), "dilations": graph.Ints(1, 1)}),
		}, tensorOf(t, "w", 2, 2, 2, 2)), map[string][]string{
			"Conv(asymmetric pads)": {"c1"}, "Conv(dilations)": {"c2"},
		}, "gorgonnx cannot run net: Conv(asymmetric pads) (node c1), Conv(dilations) (node c2)"},
		{"unknown ops taint what follows", netWith(t, []graph.Node{
			{Name: "up", Op: "Resize", Inputs: []string{"x", "", "scales"}, Outputs: []string{"a"}},
			{Name: "lstm", Op: "LSTM", Domain: "com.example", Inputs: []string{"a"}, Outputs: []string{"b"}},
			conv("c", "b", "h", map[string]graph.Attr{"pads": graph.Ints(1, 1, 1, 1)}),
		}, w, sizes), map[string][]string{"Resize": {"up"}, "com.example.LSTM": {"lstm"}},
			"gorgonnx cannot run net: Resize (node up), com.example.LSTM (node lstm)"},
		{"softmax over channels, reflect pad", netWith(t, []graph.Node{
			{Name: "sm", Op: "Softmax", Inputs: []string{"x"}, Outputs: []string{"a"}, Attrs: map[string]graph.Attr{"axis": graph.Int(1)}},
			{Name: "pad", Op: "Pad", Inputs: []string{"a", "pads"}, Outputs: []string{"b"}, Attrs: map[string]graph.Attr{"mode": graph.Str("reflect")}},
			conv("c", "b", "h", nil),
		}, w, mustInt64s(t, "pads", 0, 0, 1, 1, 0, 0, 1, 1)), map[string][]string{
			"Softmax(not over the last axis of a matrix)": {"sm"}, "Pad(mode=reflect)": {"pad"},
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, run := range []bool{false, true} {
				var err error
				if run {
					_, _, err = RunGraph("", tc.g, make([]float32, 2*72), []int64{2, 2, 6, 6})
				} else {
					err = Supports(tc.g)
				}
				var u *UnsupportedError
				if !errors.As(err, &u) {
					t.Fatalf("run %v: error %v, want an UnsupportedError", run, err)
				}
				got := map[string][]string{}
				for _, op := range u.Ops {
					got[op.Op] = op.Nodes
				}
				if fmt.Sprint(got) != fmt.Sprint(tc.want) {
					t.Errorf("run %v: unsupported %v, want %v", run, got, tc.want)
				}
				if tc.error != "" && err.Error() != tc.error {
					t.Errorf("run %v: error %q, want %q", run, err, tc.error)
				}
			}
		})
	}
}

func mustInt64s(t *testing.T, name string, v ...int64) *graph.Tensor {
	t.Helper()
	x, err := graph.FromInt64s(name, []int64{int64(len(v))}, v)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// TestRewrites runs small graphs exercising the rewrites and compares
// gorgonnx with the same graph computed by an equivalent form gorgonnx runs
// without rewriting (or by hand).
func TestRewrites(t *testing.T) {
	x := make([]float32, 3*72)
	for i := range x {
		x[i] = float32((i*13)%17-8) / 4
	}
	shape := []int64{3, 2, 6, 6}
	w := tensorOf(t, "w", 2, 2, 3, 3)
	same := map[string]graph.Attr{"pads": graph.Ints(1, 1, 1, 1)}
	// reference: conv + relu, computed by gorgonnx without any rewrite that
	// changes the arithmetic
	ref := netWith(t, []graph.Node{
		conv("c", "x", "a", same),
		{Name: "r", Op: "Relu", Inputs: []string{"a"}, Outputs: []string{"h"}},
	}, w)
	want, _, err := RunGraph("", ref, x, shape)
	if err != nil {
		t.Fatal(err)
	}
	zero, _ := graph.FromFloat32s("zero", []int64{}, []float32{0})
	for _, tc := range []struct {
		name string
		g    *graph.Graph
	}{
		{"relu as Clip(0, inf)", netWith(t, []graph.Node{
			conv("c", "x", "a", same),
			{Name: "clip", Op: "Clip", Inputs: []string{"a", "zero"}, Outputs: []string{"h"}},
		}, w, zero)},
		{"repeated input: relu(a) + (a*0 + (a-a))", netWith(t, []graph.Node{
			conv("c", "x", "a", same),
			{Name: "m", Op: "Mul", Inputs: []string{"a", "zero"}, Outputs: []string{"z"}},
			{Name: "s", Op: "Sub", Inputs: []string{"a", "a"}, Outputs: []string{"z2"}},
			{Name: "add", Op: "Add", Inputs: []string{"z", "z2"}, Outputs: []string{"z3"}},
			{Name: "r", Op: "Relu", Inputs: []string{"a"}, Outputs: []string{"r"}},
			{Name: "sum", Op: "Add", Inputs: []string{"r", "z3"}, Outputs: []string{"h"}},
		}, w, zero)},
		{"auto_pad SAME_UPPER, squeeze/unsqueeze", netWith(t, []graph.Node{
			conv("c", "x", "a", map[string]graph.Attr{"auto_pad": graph.Str("SAME_UPPER")}),
			{Name: "u", Op: "Unsqueeze", Inputs: []string{"a", "axes"}, Outputs: []string{"u"}},
			{Name: "sq", Op: "Squeeze", Inputs: []string{"u", "axes"}, Outputs: []string{"s"}},
			{Name: "r", Op: "Relu", Inputs: []string{"s"}, Outputs: []string{"h"}},
		}, w, mustInt64s(t, "axes", 4))},
		{"grouped conv of 1 group, zero pad", netWith(t, []graph.Node{
			{Name: "pad", Op: "Pad", Inputs: []string{"x", "pads"}, Outputs: []string{"p"}},
			conv("c", "p", "a", map[string]graph.Attr{"group": graph.Int(1)}),
			{Name: "r", Op: "Relu", Inputs: []string{"a"}, Outputs: []string{"h"}},
		}, w, mustInt64s(t, "pads", 0, 0, 1, 1, 0, 0, 1, 1))},
		{"Gemm without C, then Add of the bias", func() *graph.Graph {
			g := ref.Clone()
			fc := &g.Nodes[len(g.Nodes)-1]
			fc.Inputs, fc.Outputs = fc.Inputs[:2], []string{"product"}
			g.Nodes = append(g.Nodes, graph.Node{Name: "bias", Op: "Add", Inputs: []string{"product", "fc.bias"}, Outputs: []string{"logits"}})
			return g
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, classes, err := RunGraph("", tc.g, x, shape)
			if err != nil {
				t.Fatal(err)
			}
			agree(t, got, want, classes)
		})
	}
	t.Run("Softmax of the logits", func(t *testing.T) {
		g := ref.Clone()
		g.Nodes[len(g.Nodes)-1].Outputs = []string{"z"}
		g.Nodes = append(g.Nodes, graph.Node{Name: "sm", Op: "Softmax", Inputs: []string{"z"}, Outputs: []string{"logits"}})
		got, classes, err := RunGraph("", g, x, shape)
		if err != nil {
			t.Fatal(err)
		}
		probs := make([]float32, len(want))
		for r := 0; r < len(want)/classes; r++ {
			row := want[r*classes : (r+1)*classes]
			var sum float64
			for _, v := range row {
				sum += math.Exp(float64(v))
			}
			for i, v := range row {
				probs[r*classes+i] = float32(math.Exp(float64(v)) / sum)
			}
		}
		agree(t, got, probs, classes)
	})
}

// TestMalformed: bad files, graphs and arguments give errors, not panics,
// and a panic inside onnx-go or gorgonia is returned as an error.
func TestMalformed(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(fixtureDir, "smallnet-opset13-eval.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	truncated := filepath.Join(dir, "truncated.onnx")
	if err := os.WriteFile(truncated, b[:len(b)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	images := make([]float32, 2*28*28)
	g := readFixture(t, "smallnet-opset13-eval.onnx")
	noOutput := g.Clone()
	noOutput.Outputs = nil
	for _, tc := range []struct {
		name string
		run  func() error
		want string
	}{
		{"missing file", func() error {
			_, _, err := Run(filepath.Join(dir, "none.onnx"), images, []int64{2, 1, 28, 28})
			return err
		}, "none.onnx"},
		{"truncated file", func() error {
			_, _, err := Run(truncated, images, []int64{2, 1, 28, 28})
			return err
		}, "truncated.onnx"},
		{"nil graph", func() error {
			_, _, err := RunGraph("nil", nil, images, []int64{2, 1, 28, 28})
			return err
		}, "nil: nil graph"},
		{"image count", func() error {
			_, _, err := RunGraph("m", g, images[1:], []int64{2, 1, 28, 28})
			return err
		}, "m: 1567 image values for shape [2 1 28 28]"},
		{"image shape", func() error {
			_, _, err := RunGraph("m", g, images, []int64{2, 4, 14, 14})
			return err
		}, `m: input "input" has shape [-1 1 28 28], images [4 14 14]`},
		{"no output", func() error {
			_, _, err := RunGraph("m", noOutput, images, []int64{2, 1, 28, 28})
			return err
		}, "m: 0 outputs, want 1"},
		{"garbage for onnx-go", func() error {
			_, _, err := execute("garbage", []byte{0x0a, 0xff, 0xff}, images, []int64{2, 1, 28, 28}, 2)
			return err
		}, "gorgonnx: garbage: onnx-go decoding"},
		{"panic in gorgonia", func() error {
			// a Constant without a value, which Fold would have refused
			var buf strings.Builder
			h := netWith(t, []graph.Node{
				{Name: "k", Op: "Constant", Outputs: []string{"k"}},
				{Name: "add", Op: "Add", Inputs: []string{"x", "k"}, Outputs: []string{"h"}},
			})
			if err := onnx.Encode(&buf, h); err != nil {
				return err
			}
			_, _, err := execute("raw", []byte(buf.String()), make([]float32, 2*72), []int64{2, 2, 6, 6}, 2)
			return err
		}, "gorgonnx: raw: panic in onnx-go/gorgonia: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			t.Log(strings.SplitN(err.Error(), "\n", 2)[0])
		})
	}
}

// TestMaxPool compares gorgonnx's MaxPool, after the rewrite of its pads and
// ceil_mode, with a direct computation of ONNX's MaxPool for several
// geometries (asymmetric pads, ceil_mode with and without pads).
func TestMaxPool(t *testing.T) {
	const n, c, h, w = 2, 2, 7, 6
	x := make([]float32, n*c*h*w)
	for i := range x {
		x[i] = float32((i*29)%23-11) / 3
	}
	for _, tc := range []struct {
		kernel, strides, pads []int64
		ceil                  int64
	}{
		{[]int64{3, 3}, []int64{2, 2}, []int64{0, 0, 0, 0}, 1},
		{[]int64{3, 3}, []int64{1, 1}, []int64{1, 1, 1, 1}, 0},
		{[]int64{2, 2}, []int64{2, 2}, []int64{0, 1, 0, 1}, 0},
		{[]int64{3, 2}, []int64{2, 2}, []int64{1, 0, 0, 1}, 1},
		{[]int64{2, 3}, []int64{1, 2}, []int64{0, 1, 1, 0}, 0},
	} {
		t.Run(fmt.Sprintf("k%v s%v p%v ceil%d", tc.kernel, tc.strides, tc.pads, tc.ceil), func(t *testing.T) {
			var outs [2]int64
			for i, in := range []int64{h, w} {
				span := in + tc.pads[i] + tc.pads[2+i] - tc.kernel[i]
				outs[i] = span/tc.strides[i] + 1
				if tc.ceil == 1 && span%tc.strides[i] != 0 {
					outs[i]++
					if (outs[i]-1)*tc.strides[i] >= in+tc.pads[i] {
						outs[i]--
					}
				}
			}
			pooled := make([]float32, n*c*outs[0]*outs[1])
			for b := range int64(n * c) {
				for oy := range outs[0] {
					for ox := range outs[1] {
						m := float32(math.Inf(-1))
						for ky := range tc.kernel[0] {
							for kx := range tc.kernel[1] {
								y, xx := oy*tc.strides[0]-tc.pads[0]+ky, ox*tc.strides[1]-tc.pads[1]+kx
								if y >= 0 && y < h && xx >= 0 && xx < w {
									m = max(m, x[(b*h+y)*w+xx])
								}
							}
						}
						pooled[(b*outs[0]+oy)*outs[1]+ox] = m
					}
				}
			}
			feat := c * outs[0] * outs[1]
			fw := tensorOf(t, "fc.weight", 3, feat)
			fwv, _ := fw.Float32s()
			want := make([]float32, n*3)
			for b := range int64(n) {
				for k := range int64(3) {
					var s float32
					for i := range feat {
						s += pooled[b*feat+i] * fwv[k*feat+i]
					}
					want[b*3+k] = s
				}
			}
			g := &graph.Graph{
				Name: "pool", Opset: 13,
				Inputs:  []graph.Value{{Name: "x", DType: graph.Float32, Shape: []int64{-1, c, h, w}}},
				Outputs: []graph.Value{{Name: "logits", DType: graph.Float32, Shape: []int64{-1, 3}}},
				Nodes: []graph.Node{
					{Name: "pool", Op: "MaxPool", Inputs: []string{"x"}, Outputs: []string{"p"}, Attrs: map[string]graph.Attr{
						"kernel_shape": graph.Ints(tc.kernel...), "strides": graph.Ints(tc.strides...),
						"pads": graph.Ints(tc.pads...), "ceil_mode": graph.Int(tc.ceil)}},
					{Name: "flatten", Op: "Flatten", Inputs: []string{"p"}, Outputs: []string{"f"}},
					{Name: "fc", Op: "Gemm", Inputs: []string{"f", "fc.weight"}, Outputs: []string{"logits"},
						Attrs: map[string]graph.Attr{"transB": graph.Int(1)}},
				},
				Initializers: []*graph.Tensor{fw},
			}
			got, classes, err := RunGraph("", g, x, []int64{n, c, h, w})
			if err != nil {
				t.Fatal(err)
			}
			agree(t, got, want, classes)
		})
	}
}
