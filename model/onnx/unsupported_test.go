package onnx

import (
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/faultline/faultline/internal/testdeps"
	"github.com/faultline/faultline/model/graph"
)

// checkUnsupported folds g and checks that Check lists exactly want (op ->
// nodes) as unsupported.
func checkUnsupported(t *testing.T, g *graph.Graph, want map[string][]string) string {
	t.Helper()
	h, err := graph.Fold(g, []int64{1, 28, 28})
	if err != nil {
		t.Fatal(err)
	}
	err = graph.Check(h)
	var u *graph.UnsupportedError
	if !errors.As(err, &u) {
		t.Fatalf("Check = %v, want an UnsupportedError", err)
	}
	got := map[string][]string{}
	for _, op := range u.Ops {
		got[op.Op] = op.Nodes
	}
	if len(got) != len(want) {
		t.Errorf("unsupported %v, want %v", got, want)
	}
	for op, nodes := range want {
		if !slices.Equal(got[op], nodes) {
			t.Errorf("%s: nodes %v, want %v (error: %v)", op, got[op], nodes, err)
		}
	}
	return err.Error()
}

// TestUnsupportedHandMade: a graph with two LSTMs and a Resize, written and
// read back, is refused with every node named.
func TestUnsupportedHandMade(t *testing.T) {
	w := func(name string, shape ...int64) *graph.Tensor {
		n, _ := graph.NumElems(shape)
		x, err := graph.FromFloat32s(name, shape, make([]float32, n))
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	scales := w("scales", 4)
	shape, _ := graph.FromInt64s("seq", []int64{3}, []int64{28, -1, 28})
	g := &graph.Graph{
		Name: "rnn", Opset: 13,
		Inputs:  []graph.Value{{Name: "x", DType: graph.Float32, Shape: []int64{-1, 1, 28, 28}, DimNames: []string{"batch", "", "", ""}}},
		Outputs: []graph.Value{{Name: "y", DType: graph.Float32}},
		Initializers: []*graph.Tensor{w("conv.weight", 1, 1, 3, 3), scales, shape,
			w("W1", 1, 32, 28), w("R1", 1, 32, 8), w("W2", 1, 32, 8), w("R2", 1, 32, 8)},
		Nodes: []graph.Node{
			{Name: "conv", Op: "Conv", Inputs: []string{"x", "conv.weight"}, Outputs: []string{"c"},
				Attrs: map[string]graph.Attr{"pads": graph.Ints(1, 1, 1, 1)}},
			{Name: "up1", Op: "Resize", Inputs: []string{"c", "", "scales"}, Outputs: []string{"u"},
				Attrs: map[string]graph.Attr{"mode": graph.Str("nearest")}},
			{Name: "rs", Op: "Reshape", Inputs: []string{"u", "seq"}, Outputs: []string{"s"}},
			{Name: "lstm_1", Op: "LSTM", Inputs: []string{"s", "W1", "R1"}, Outputs: []string{"h1"},
				Attrs: map[string]graph.Attr{"hidden_size": graph.Int(8)}},
			{Name: "sq", Op: "Squeeze", Inputs: []string{"h1"}, Outputs: []string{"h1s"}, Attrs: map[string]graph.Attr{"axes": graph.Ints(1)}},
			{Name: "lstm_2", Op: "LSTM", Inputs: []string{"h1s", "W2", "R2"}, Outputs: []string{"y"},
				Attrs: map[string]graph.Attr{"hidden_size": graph.Int(8)}},
		},
	}
	var buf bytes.Buffer
	if err := Encode(&buf, g); err != nil {
		t.Fatal(err)
	}
	g, err := Decode(&buf, "rnn.onnx")
	if err != nil {
		t.Fatal(err)
	}
	msg := checkUnsupported(t, g, map[string][]string{"LSTM": {"lstm_1", "lstm_2"}, "Resize": {"up1"}})
	if !strings.HasPrefix(msg, "unsupported operations: LSTM (nodes lstm_1, lstm_2), Resize (node up1); ") {
		t.Errorf("message %q", msg)
	}
}

// exportScript exports, with torch.onnx, a model with F.interpolate (Resize)
// and two LSTMs.
const exportScript = `
import sys, torch, torch.nn as nn, torch.nn.functional as F
torch.manual_seed(0)
class M(nn.Module):
    def __init__(s):
        super().__init__()
        s.conv = nn.Conv2d(1, 4, 3, padding=1)
        s.lstm1 = nn.LSTM(4 * 14, 8)
        s.lstm2 = nn.LSTM(8, 8)
        s.fc = nn.Linear(8, 10)
    def forward(s, x):
        x = F.max_pool2d(F.relu(s.conv(x)), 4)
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        x = x.permute(3, 0, 1, 2).flatten(2)
        x, _ = s.lstm1(x)
        x, _ = s.lstm2(x)
        return s.fc(x[-1])
torch.onnx.export(M().eval(), torch.zeros(2, 1, 28, 28), sys.argv[1], opset_version=13,
                  input_names=["input"], output_names=["logits"],
                  dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
`

// TestUnsupportedTorchExport runs PyTorch's exporter (skipped without
// python3-torch) on a model with unsupported ops.
func TestUnsupportedTorchExport(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	if out, err := exec.Command(python, "-c", "import torch, onnx").CombinedOutput(); err != nil {
		testdeps.Skipf(t, testdeps.ONNX, "%s does not import torch and onnx (scripts/setup.sh --test installs python3-torch and python3-onnx): %v: %s",
			python, err, bytes.TrimSpace(out))
	}
	path := filepath.Join(t.TempDir(), "rnn.onnx")
	if out, err := exec.Command(python, "-c", exportScript, path).CombinedOutput(); err != nil {
		t.Fatalf("export: %v\n%s", err, out)
	}
	g, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	msg := checkUnsupported(t, g, map[string][]string{"LSTM": {"/lstm1/LSTM", "/lstm2/LSTM"}, "Resize": {"/Resize"}})
	t.Log(msg)
}
