package fault

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/faultline/faultline/datasets"
	"github.com/faultline/faultline/internal/testgraph"
	"github.com/faultline/faultline/model"
	"github.com/faultline/faultline/model/graph"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// smallnetPath is the ONNX fixture with a Concat branch, a depthwise-separable
// block and a squeeze-excitation gate (layers inside stages without a lead).
const smallnetPath = "../model/testdata/onnx/smallnet-opset13-eval.onnx"

// agreementSpaces are the fault spaces the imported-graph tests compare
// reference and batched injection on.
var agreementSpaces = []Space{
	{Target: Weight, Kind: BitFlip, Bias: true},
	{Target: Weight, Kind: BitFlip, Multi: 2, Bits: []int{30, 29, 28, 23}},
	{Target: Weight, Kind: StuckAt1, Bits: []int{30, 29}},
	{Target: Activation, Point: Output, Kind: BitFlip, Bits: []int{30, 29, 28, 27, 22}},
	{Target: Activation, Point: Input, Kind: BitFlip, Bits: []int{30, 29, 28, 27, 22}},
	{Target: Activation, Point: MAC, Kind: BitFlip, Bits: []int{31, 30, 29, 28}},
	{Target: Activation, Point: MAC, Kind: StuckAt1, Multi: 2, Bits: []int{30, 29, 23, 22}},
	{Target: Activation, Point: Output, Kind: Zero},
}

// agreeAll runs faults of every space at every site of m through the reference
// and the batched engine and returns how many of how many faults differ in
// outcome (and the critical pairs, so that a test can ask for some).
func agreeAll(t *testing.T, m *model.Model, perSite int64, images int) (differ, total, critical int) {
	t.Helper()
	te := datasets.Synthetic(datasets.SyntheticConfig{N: images, C: 1, H: 28, W: 28, Classes: 10, Seed: 3, Split: datasets.Test})
	stats := datasets.ComputeStats(te)
	golden := paramBits(t, m)
	var inj *Injector
	do(t, func() error {
		var err error
		if inj, err = NewInjector(m); err != nil {
			return err
		}
		inj.BatchSize = 128
		return nil
	})
	for si, sp := range agreementSpaces {
		for _, s := range m.Sites() {
			sp := sp
			sp.Layers = []string{s.Name}
			var ref, bat []*Fault
			do(t, func() error {
				ev, err := inj.LoadEvalSet(te, stats, images)
				if err != nil {
					return err
				}
				defer ev.Drop()
				plan, err := NewPlan(m, sp, PlanOptions{Sampler: Uniform, Faults: perSite, Seed: int64(si)})
				if err != nil {
					return err
				}
				for i := int64(0); i < plan.Total; i++ {
					f, g := plan.Fault(i), plan.Fault(i)
					ref, bat = append(ref, &f), append(bat, &g)
				}
				if err := inj.RunReference(ev, ref); err != nil {
					return err
				}
				return inj.RunBatched(ev, bat)
			})
			sameBits(t, golden, paramBits(t, m))
			for i := range ref {
				r, b := ref[i].Outcome, bat[i].Outcome
				total++
				critical += r.Critical()
				if sp.Target == Weight && (r.BeforeBits != b.BeforeBits || r.AfterBits != b.AfterBits) {
					t.Errorf("%s fault %+v: before/after %v/%v vs %v/%v", s.Name, *ref[i], r.Before, r.After, b.Before, b.After)
				}
				if r.SDC != b.SDC || r.DUE != b.DUE || r.Masked != b.Masked || r.Images != b.Images || r.Inactive != b.Inactive {
					differ++
					t.Logf("space %d %s fault %+v: reference %+v, batched %+v", si, s.Name, *ref[i], *r, *b)
				}
			}
		}
	}
	return differ, total, critical
}

// Reference and batched injection agree fault by fault at every site of
// imported graphs: smallnet (a Concat branch, a depthwise-separable block, a
// squeeze-excitation gate: most sites are in stages without a lead layer) and
// a graph of per-axis strides, asymmetric pads, dilations, groups and [in,
// out] linear weights.
func TestImportedAgreement(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the reference injector on every site")
	}
	odd, err := model.FromGraph(testgraph.Odd(t), gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		m    *model.Model
	}{
		{"smallnet", testgraph.FromONNX(t, smallnetPath)},
		{"odd", odd},
	} {
		t.Run(tc.name, func(t *testing.T) {
			differ, total, crit := agreeAll(t, tc.m, 8, 24)
			t.Logf("%s: %d of %d faults differ, %d critical pairs", tc.name, differ, total, crit)
			if differ != 0 {
				t.Errorf("%d of %d faults differ between reference and batched", differ, total)
			}
			if crit == 0 {
				t.Errorf("no critical pair: the spaces are meant to exercise faults that matter")
			}
		})
	}
}

// The odd graph's sites carry the geometry the test is about.
func TestOddGraphSites(t *testing.T) {
	m, err := model.FromGraph(testgraph.Odd(t), gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	irregular := 0
	for _, s := range m.Sites() {
		if err := CheckSite(&s); err != nil {
			t.Errorf("%s: %v", s.Name, err)
		}
		if !s.Regular() {
			irregular++
		}
	}
	if irregular != 5 {
		t.Errorf("%d irregular sites of %d, want 5: %+v", irregular, len(m.Sites()), m.Sites())
	}
}

// corpusFile returns a file of the ONNX corpus (FAULTLINE_ONNX_CORPUS, or
// /tmp/onnx-corpus), or skips the test.
func corpusFile(t testing.TB, name string) string {
	t.Helper()
	dir := os.Getenv("FAULTLINE_ONNX_CORPUS")
	if dir == "" {
		dir = "/tmp/onnx-corpus"
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("no ONNX corpus file %s (set FAULTLINE_ONNX_CORPUS)", p)
	}
	return p
}

// The MAC operands of a neuron, as the engine addresses them (macOperand:
// input position through strides, pads, dilations and groups; weight in
// WeightShape order), sum with the bias to the neuron's output: reference and
// batched MAC faults share this arithmetic, so it is checked against the
// layer's own output here.
func TestMACOperandsSumToOutput(t *testing.T) {
	odd, err := model.FromGraph(testgraph.Odd(t), gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	te := datasets.Synthetic(datasets.SyntheticConfig{N: 2, C: 1, H: 28, W: 28, Classes: 10, Seed: 3, Split: datasets.Test})
	for _, m := range []*model.Model{testgraph.FromONNX(t, smallnetPath), odd} {
		var inj *Injector
		do(t, func() error {
			var err error
			inj, err = NewInjector(m)
			return err
		})
		r := rand.New(rand.NewPCG(1, 2))
		do(t, func() error {
			ev, err := inj.LoadEvalSet(te, datasets.ComputeStats(te), 2)
			if err != nil {
				return err
			}
			defer ev.Drop()
			hook := func(s *model.Site, in, out *ts.Tensor) (*ts.Tensor, error) {
				g, err := inj.geometry(s)
				if err != nil {
					return nil, err
				}
				var ops [][]int64
				if s.Kind == model.Conv {
					for ci := range s.WeightShape[1] {
						for ky := range s.WeightShape[2] {
							for kx := range s.WeightShape[3] {
								ops = append(ops, []int64{ci, ky, kx})
							}
						}
					}
				} else {
					for j := range s.WeightShape[1] {
						ops = append(ops, []int64{j})
					}
				}
				per := model.Numel(s.OutShape)
				for range 6 {
					k := r.Int64N(2)
					idx := unflat(r.Int64N(per), s.OutShape)
					var sum, mag float64
					for _, op := range ops {
						x, w, err := macOperand(s, g, in, k, idx, op, inj.wts[s.Name])
						if err != nil {
							return nil, err
						}
						sum += float64(x) * float64(w)
						mag += math.Abs(float64(x) * float64(w))
					}
					if s.HasBias {
						sum += float64(inj.host[s.Bias()][idx[0]])
					}
					y, err := readElement(out, k*per+flat(idx, s.OutShape))
					if err != nil {
						return nil, err
					}
					if math.Abs(sum-float64(y)) > 1e-4*(1+mag) {
						t.Errorf("%s neuron %v of sample %d: operands sum to %v, output %v", s.Name, idx, k, sum, y)
					}
				}
				return nil, nil
			}
			out, err := m.Forward(ev.X, false, hook)
			if err != nil {
				return err
			}
			out.Drop()
			return nil
		})
	}
}

// A Gemm that is not x W^T + b (a scaled product or bias) still runs, but the
// fault engine refuses its faults by name, with the reason; the same layer as
// plain x W + b is accepted.
func TestScaledGemmRefused(t *testing.T) {
	for _, tc := range []struct {
		name  string
		attrs map[string]graph.Attr
		want  string // "" = accepted
	}{
		{"plain", nil, ""},
		{"alpha 1 beta 1", map[string]graph.Attr{"alpha": graph.Float(1), "beta": graph.Float(1)}, ""},
		{"alpha", map[string]graph.Attr{"alpha": graph.Float(0.5)}, "alpha = 0.5"},
		{"beta", map[string]graph.Attr{"beta": graph.Float(2)}, "beta = 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := testgraph.Odd(t)
			last := &g.Nodes[len(g.Nodes)-1]
			if last.Op != "Gemm" {
				t.Fatalf("the odd graph ends with %s", last.Op)
			}
			last.Attrs = tc.attrs
			m, err := model.FromGraph(g, gotch.CPU)
			if err != nil {
				t.Fatal(err)
			}
			s, err := m.Site("fc2")
			if err != nil {
				t.Fatal(err)
			}
			err = CheckSite(&s)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), "fc2") || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("CheckSite: %v, want an error naming fc2 and %q", err, tc.want)
			}
		})
	}
}
