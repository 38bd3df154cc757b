package model

import (
	"bytes"
	"fmt"
	"math"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/faultline/faultline/internal/npz"
	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model/graph"
	"github.com/faultline/faultline/model/onnx"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// smallnetIO reads the smallnet fixture's inputs, labels and PyTorch logits.
func smallnetIO(t *testing.T) (x []float32, labels []int64, logits []float32) {
	t.Helper()
	arrays, err := npz.Read(filepath.Join("testdata", "onnx", "smallnet_io.npz"))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range arrays {
		switch a.Name {
		case "input":
			x, err = float32Values(a.T)
		case "logits":
			logits, err = float32Values(a.T)
		case "labels":
			v, ok := a.T.Data().([]int64)
			if !ok {
				t.Fatalf("labels of type %v", a.T.Dtype())
			}
			labels = v
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(x) != 8*28*28 || len(logits) != 80 || len(labels) != 8 {
		t.Fatalf("smallnet_io.npz: %d inputs, %d logits, %d labels", len(x), len(logits), len(labels))
	}
	return x, labels, logits
}

// The smallnet fixtures (BatchNorm folded into the convs, and kept as
// BatchNormalization nodes) compute PyTorch's logits; their sites, stages and
// parameters come from the graph.
func TestONNXFixtures(t *testing.T) {
	x, _, want := smallnetIO(t)
	shape := []int64{8, 1, 28, 28}
	cases := []struct {
		file      string
		params    int // tensors
		trainable int
		leads     int
	}{
		{"smallnet-opset13-eval.onnx", 22, 20, 2},
		{"smallnet-opset13-preserve.onnx", 37, 25, 2},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			m := loadONNX(t, filepath.Join("testdata", "onnx", tc.file))
			got := evalLogits(t, m, x, shape)
			diff, scale := compareRef(t, tc.file, got, want, 8)
			t.Logf("%s: max |faultline - pytorch| = %.3g (max |logit| %.3g)", tc.file, diff, scale)
			if s := m.Spec(); s.Arch != GraphArch || s.InChannels != 1 || s.Height != 28 || s.Classes != 10 {
				t.Errorf("spec %+v", s)
			}
			wantSites := []string{"stem.0", "branch_a.0", "branch_b.0", "dw.0", "pw.0", "down", "se_reduce", "se_expand", "fc"}
			if got := m.SiteNames(); !slices.Equal(got, wantSites) {
				t.Errorf("sites %v, want %v", got, wantSites)
			}
			trainable := 0
			for _, p := range m.Params() {
				if p.Trainable {
					trainable++
				}
			}
			leads := 0
			for i := range m.NumStages() {
				if m.Lead(i) != "" {
					leads++
				}
			}
			if len(m.Params()) != tc.params || trainable != tc.trainable || leads != tc.leads {
				t.Errorf("%d tensors (%d trainable), %d leads; want %d (%d), %d", len(m.Params()), trainable, leads, tc.params, tc.trainable, tc.leads)
			}
			if m2, _, _ := roundTrip(t, m, Metadata{}); !slices.Equal(m2.SiteNames(), m.SiteNames()) {
				t.Errorf("sites %v after a checkpoint round trip, want %v", m2.SiteNames(), m.SiteNames())
			}
			for _, s := range m.Sites() {
				w, err := m.Param(s.Weight())
				if err != nil {
					t.Fatal(err)
				}
				shape, _ := torch.Shape(w)
				if !slices.Equal(shape, s.WeightShape) {
					t.Errorf("%s: weight %s of shape %v, site says %v", s.Name, s.Weight(), shape, s.WeightShape)
				}
				if s.HasBias {
					if _, err := m.Param(s.Bias()); err != nil {
						t.Error(err)
					}
				}
			}
			down, _ := m.Site("down")
			if down.Stride != 2 || down.Padding != 0 || !down.Regular() || down.Node != "/down/Conv" {
				t.Errorf("down: %+v", down)
			}
			// The hook sees every site in order, with the shapes the site gives.
			var calls []string
			forward(t, m, x, shape, func(s *Site, in, out *ts.Tensor) (*ts.Tensor, error) {
				calls = append(calls, s.Name)
				is, _ := in.Size()
				os, _ := out.Size()
				if !slices.Equal(is[1:], s.InShape) || !slices.Equal(os[1:], s.OutShape) {
					t.Errorf("%s: in %v out %v, site says %v -> %v", s.Name, is, os, s.InShape, s.OutShape)
				}
				return nil, nil
			})
			if !slices.Equal(calls, wantSites) {
				t.Errorf("hook calls %v, want %v", calls, wantSites)
			}
			dw, _ := m.Site("dw.0")
			if dw.Groups != 16 || dw.Padding != 1 {
				t.Errorf("dw.0: %+v", dw)
			}
		})
	}
}

// The smallnet graph's stages: the stem (lead stem.0), the two branches joined
// by Concat, the residual depthwise-separable block, the strided conv with its
// squeeze-and-excitation gate, and the classifier (lead fc).
func TestONNXStages(t *testing.T) {
	m := loadONNX(t, filepath.Join("testdata", "onnx", "smallnet-opset13-preserve.onnx"))
	want := []struct {
		sites []string
		lead  string
		in    []int64
	}{
		{[]string{"stem.0"}, "stem.0", []int64{1, 28, 28}},
		{[]string{"branch_a.0", "branch_b.0"}, "", []int64{12, 28, 28}},
		{[]string{"dw.0", "pw.0"}, "", []int64{16, 14, 14}},
		{[]string{"down", "se_reduce", "se_expand"}, "", []int64{16, 15, 15}},
		{[]string{"fc"}, "fc", []int64{216}},
	}
	if m.NumStages() != len(want) {
		t.Fatalf("%d stages, want %d", m.NumStages(), len(want))
	}
	for i, w := range want {
		var sites []string
		for _, s := range m.Sites() {
			if st, _ := m.StageOf(s.Name); st == i {
				sites = append(sites, s.Name)
			}
		}
		if !slices.Equal(sites, w.sites) || m.Lead(i) != w.lead || !slices.Equal(m.StageInShape(i), w.in) {
			t.Errorf("stage %d: sites %v, lead %q, input %v; want %v, %q, %v", i, sites, m.Lead(i), m.StageInShape(i), w.sites, w.lead, w.in)
		}
	}
	// Every split point and every lead gives the whole pass's logits.
	x, _, _ := smallnetIO(t)
	shape := []int64{8, 1, 28, 28}
	wantLogits := evalLogits(t, m, x, shape)
	withInput(t, x, shape, func(in *ts.Tensor) error {
		for k := 0; k <= m.NumStages(); k++ {
			mid, err := m.RunStages(in, 0, k, false, nil)
			if err != nil {
				return err
			}
			var outs []*ts.Tensor
			out, err := m.RunStages(mid, k, m.NumStages(), false, nil)
			if err != nil {
				mid.Drop()
				return err
			}
			outs = append(outs, out)
			if m.Lead(k) != "" {
				out, err := afterLead(m, k, mid, nil)
				if err != nil {
					mid.Drop()
					return err
				}
				outs = append(outs, out)
			}
			mid.Drop()
			for _, o := range outs {
				got, err := takeFloats(o)
				if err != nil {
					return err
				}
				sameLogits(t, fmt.Sprintf("from stage %d", k), got, wantLogits)
			}
		}
		return nil
	})
}

// One SGD step in training mode on the PRESERVE export changes the weights and
// the BatchNorm running statistics as PyTorch's step does.
func TestONNXTrainStep(t *testing.T) {
	needTorch(t)
	if out, err := exec.Command(torchPython, "-c", "import torchvision, onnx").CombinedOutput(); err != nil {
		t.Skipf("%s cannot import torchvision and onnx (scripts/onnx-corpus.py needs them): %v: %s", torchPython, err, bytes.TrimSpace(out))
	}
	const lr = 0.1
	m := loadONNX(t, filepath.Join("testdata", "onnx", "smallnet-opset13-preserve.onnx"))
	dir := t.TempDir()
	state, after := filepath.Join(dir, "state.npz"), filepath.Join(dir, "after.npz")
	if err := m.SaveNPZ(state, 0); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(torchPython, filepath.Join("testdata", "onnx_train.py"), state,
		filepath.Join("testdata", "onnx", "smallnet_io.npz"), fmt.Sprint(lr), after)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("onnx_train.py: %v\n%s", err, out)
	}
	ref := npzFloats(t, after)
	before := map[string][]float32{}
	x, labels, _ := smallnetIO(t)
	var logits []float32
	var loss float32
	do(t, func() error {
		for _, p := range m.Params() {
			v, err := torch.Float32s(p.Tensor)
			if err != nil {
				return err
			}
			before[p.Name] = v
		}
		opt, err := ts.Sgd(lr, 0, 0, 0, false)
		if err != nil {
			return err
		}
		defer opt.Drop()
		var params []*ts.Tensor
		for _, p := range m.Params() {
			if p.Trainable {
				params = append(params, p.Tensor)
			}
		}
		if err := opt.AddParameters(params); err != nil {
			return err
		}
		in, err := torch.FromFloat32(x, []int64{8, 1, 28, 28}, gotch.CPU)
		if err != nil {
			return err
		}
		defer in.Drop()
		y, err := torch.FromInt64(labels, []int64{8}, gotch.CPU)
		if err != nil {
			return err
		}
		defer y.Drop()
		out, err := m.Forward(in, true, nil)
		if err != nil {
			return err
		}
		defer out.Drop()
		if logits, err = torch.Float32s(out); err != nil {
			return err
		}
		l, err := out.CrossEntropyLoss(y, ts.NewTensor(), 1, -100, 0, false)
		if err != nil {
			return err
		}
		defer l.Drop()
		lv, err := torch.Float32s(l)
		if err != nil {
			return err
		}
		loss = lv[0]
		if err := opt.ZeroGrad(); err != nil {
			return err
		}
		if err := l.Backward(); err != nil {
			return err
		}
		return opt.Step()
	})
	compareRef(t, "training-mode logits", logits, ref["logits"], 8)
	if d := math.Abs(float64(loss - ref["loss"][0])); d > 1e-5 {
		t.Errorf("loss %v, PyTorch %v", loss, ref["loss"][0])
	}
	worst := 0.0
	do(t, func() error {
		for _, p := range m.Params() {
			got, err := torch.Float32s(p.Tensor)
			if err != nil {
				return err
			}
			want, ok := ref[p.Name]
			if !ok || len(want) != len(got) {
				t.Errorf("%s: PyTorch has %d values, faultline %d", p.Name, len(want), len(got))
				continue
			}
			// The change the step made, compared with PyTorch's.
			var dmax, emax float64
			for i := range got {
				dmax = max(dmax, math.Abs(float64(want[i]-before[p.Name][i])))
				emax = max(emax, math.Abs(float64(got[i]-want[i])))
			}
			if dmax == 0 {
				t.Errorf("%s: PyTorch's step left it unchanged", p.Name)
				continue
			}
			rel := emax / dmax
			worst = max(worst, rel)
			if rel > 1e-3 {
				t.Errorf("%s: faultline's step differs from PyTorch's by %.3g (the step changed it by up to %.3g)", p.Name, emax, dmax)
			}
		}
		return nil
	})
	t.Logf("loss %v (PyTorch %v); largest difference from PyTorch's update, relative to the update: %.3g", loss, ref["loss"][0], worst)
}

// FromGraph refuses what it cannot run, naming the op and the node.
func TestFromGraphErrors(t *testing.T) {
	base, err := onnx.ReadFile(filepath.Join("testdata", "onnx", "smallnet-opset13-preserve.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		edit func(g *graph.Graph)
		want string
	}{
		{"unsupported op", func(g *graph.Graph) { g.Nodes[5].Op = "Elu" }, "Elu"},
		{"reflect pad", func(g *graph.Graph) {
			for i := range g.Nodes {
				if g.Nodes[i].Op == "Pad" {
					g.Nodes[i].Attrs["mode"] = graph.Str("reflect")
				}
			}
		}, "Pad(mode=reflect)"},
		{"old opset", func(g *graph.Graph) { g.Opset = 9 }, "opset 9"},
		{"dynamic input", func(g *graph.Graph) { g.Inputs[0].Shape = []int64{-1, 1, -1, 28} }, "graph.Fold"},
		{"two inputs", func(g *graph.Graph) {
			g.Inputs = append(g.Inputs, graph.Value{Name: "extra", DType: graph.Float32, Shape: []int64{-1, 3}})
		}, "2 data inputs"},
		{"bad attribute", func(g *graph.Graph) {
			for i := range g.Nodes {
				if g.Nodes[i].Op == "Concat" {
					g.Nodes[i].Attrs["axis"] = graph.Str("one")
				}
			}
		}, "Concat"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := base.Clone()
			for i := range g.Nodes {
				n := &g.Nodes[i]
				attrs := map[string]graph.Attr{}
				for k, v := range n.Attrs {
					attrs[k] = v
				}
				n.Attrs = attrs
			}
			g.Inputs = append([]graph.Value(nil), g.Inputs...)
			tc.edit(g)
			_, err := FromGraph(g, gotch.CPU)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

// Forward passes of every kind drop every tensor they make.
func TestForwardDropsTensors(t *testing.T) {
	models := map[string]*Model{"preserve": loadONNX(t, filepath.Join("testdata", "onnx", "smallnet-opset13-preserve.onnx"))}
	for _, arch := range Architectures() {
		models[arch] = newModel(t, fashion(arch))
	}
	noop := func(*Site, *ts.Tensor, *ts.Tensor) (*ts.Tensor, error) { return nil, nil }
	for name, m := range models {
		t.Run(name, func(t *testing.T) {
			spec := m.Spec()
			do(t, func() error {
				x, err := ts.Randn([]int64{4, spec.InChannels, spec.Height, spec.Width}, gotch.Float, gotch.CPU)
				if err != nil {
					return err
				}
				defer x.Drop()
				round := func() error {
					return torch.NoGrad(func() error {
						for _, mode := range []struct {
							train bool
							hook  Hook
						}{{false, nil}, {false, noop}, {true, nil}} {
							y, err := m.Forward(x, mode.train, mode.hook)
							if err != nil {
								return err
							}
							y.Drop()
						}
						for k := 0; k < m.NumStages(); k++ {
							mid, err := m.RunStages(x, 0, k, false, nil)
							if err != nil {
								return err
							}
							if m.Lead(k) != "" {
								out, err := afterLead(m, k, mid, noop)
								if err != nil {
									mid.Drop()
									return err
								}
								out.Drop()
							}
							mid.Drop()
						}
						return nil
					})
				}
				if err := round(); err != nil { // warm-up
					return err
				}
				before := torch.LiveTensors()
				for range 3 {
					if err := round(); err != nil {
						return err
					}
				}
				if d := torch.LiveTensors() - before; d != 0 {
					t.Errorf("%d tensors more after three rounds of forward passes", d)
				}
				return nil
			})
		})
	}
}

// Model.Graph returns the executed graph with the current weights: written as
// ONNX and read back, it builds a model with the same parameters and logits
// (the zoo with training-mode running statistics, and an imported graph), and
// onnx.checker accepts the file when python3-onnx is installed.
func TestGraphRoundTrip(t *testing.T) {
	lenet, resnet := newModel(t, fashion("lenet5")), newModel(t, fashion("resnet20"))
	nonTrivialState(t, resnet, 11)
	checker := exec.Command(torchPython, "-c", "import onnx").Run() == nil
	for name, m := range map[string]*Model{
		"lenet5": lenet, "resnet20": resnet,
		"smallnet": loadONNX(t, filepath.Join("testdata", "onnx", "smallnet-opset13-eval.onnx")),
	} {
		t.Run(name, func(t *testing.T) {
			g, err := m.Graph()
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "model.onnx")
			if err := onnx.WriteFile(path, g); err != nil {
				t.Fatal(err)
			}
			m2 := loadONNX(t, path)
			if !slices.Equal(m2.SiteNames(), m.SiteNames()) || m2.NumStages() != m.NumStages() {
				t.Errorf("read back: sites %v, %d stages; want %v, %d", m2.SiteNames(), m2.NumStages(), m.SiteNames(), m.NumStages())
			}
			p1, p2 := m.Params(), m2.Params()
			if len(p1) != len(p2) {
				t.Fatalf("%d parameters read back, want %d", len(p2), len(p1))
			}
			for i := range p1 {
				if p1[i].Name != p2[i].Name || p1[i].Trainable != p2[i].Trainable {
					t.Errorf("parameter %d: %s (trainable %v), want %s (%v)", i, p2[i].Name, p2[i].Trainable, p1[i].Name, p1[i].Trainable)
				}
			}
			s := m.Spec()
			x, shape := randomInput(s, 3, 5)
			want, got := evalLogits(t, m, x, shape), evalLogits(t, m2, x, shape)
			if !sameLogits(t, "read back", got, want) {
				t.FailNow()
			}
			if checker {
				out, err := exec.Command(torchPython, "-c",
					"import onnx, sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)", path).CombinedOutput()
				if err != nil {
					t.Errorf("onnx.checker: %v\n%s", err, out)
				}
			}
		})
	}
}
