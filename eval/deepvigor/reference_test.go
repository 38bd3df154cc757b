package deepvigor

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/faultline/faultline/internal/npz"
	"github.com/faultline/faultline/internal/testckpt"
	"github.com/faultline/faultline/internal/testdeps"
	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
	"gorgonia.org/tensor"
)

// torchPython is Debian's interpreter, which has python3-torch and numpy.
const torchPython = "/usr/bin/python3"

// needTorch skips unless torchPython can import torch, and in -short mode.
func needTorch(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs PyTorch in a subprocess; skipped in -short mode")
	}
	out, err := exec.Command(torchPython, "-c", "import torch, numpy").CombinedOutput()
	if err != nil {
		testdeps.Skipf(t, testdeps.Torch, "%s cannot import torch (scripts/setup.sh --test installs python3-torch): %v: %s",
			torchPython, err, bytes.TrimSpace(out))
	}
}

// pyResult is testdata/reference_deepvigor.py's output.
type pyResult struct {
	Layers []struct {
		Name         string             `json:"name"`
		CVFWeights   []float64          `json:"cvf_weights"`
		NVF          map[string]float64 `json:"nvf"`
		FwdWeights   int64              `json:"forwards_weights"`
		FwdActivaton int64              `json:"forwards_activations"`
	} `json:"layers"`
}

// runReference runs the Python oracle of the reference implementation on
// dir's model.npz and images.npy, writing dir/name.
func runReference(t *testing.T, dir, name string, args ...string) pyResult {
	t.Helper()
	out := filepath.Join(dir, name)
	cmd := exec.Command(torchPython, append([]string{filepath.Join("testdata", "reference_deepvigor.py"),
		"--weights", filepath.Join(dir, "model.npz"), "--images", filepath.Join(dir, "images.npy"),
		"--layers", "conv1,conv2", "--out", out}, args...)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("reference_deepvigor.py %v: %v\n%s", args, err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var r pyResult
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// Reference semantics equals the reference algorithm, run by an independent
// PyTorch implementation of it (testdata/reference_deepvigor.py, checked once
// against the authors' code itself: every filter and neuron of LeNet-5's two
// conv layers equal, the same forward counts), on the same weights and images:
// every filter's CVF and every sampled neuron's VF of both conv layers within
// 1e-6. (Forward counts were compared when the oracle was checked against the
// authors' code; the oracle counts only the neurons it is asked for.)
func TestReferenceEqualsReferenceAlgorithm(t *testing.T) {
	needTorch(t)
	_, set, stats := tiny(t)
	m, _, err := model.Load(testckpt.Trained(t, 600), gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	const b = 8
	res, _, ev := analyze(t, m, set, stats, b, Options{Activations: true, Weights: true, Semantics: Reference, SamplingRatio: 1,
		Layers: []string{"conv1", "conv2"}})
	dir := t.TempDir()
	if err := m.Save(dir, model.Metadata{Dataset: "synthetic"}); err != nil {
		t.Fatal(err)
	}
	var x []float32
	do(t, func() error {
		var err error
		x, err = torch.Float32s(ev.X)
		return err
	})
	f, err := os.Create(filepath.Join(dir, "images.npy"))
	if err != nil {
		t.Fatal(err)
	}
	if err := npz.WriteNpy(f, tensor.New(tensor.WithShape(b, 1, 28, 28), tensor.WithBacking(x))); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	// The oracle analyses a sample of the neurons (every 8th of conv1, every
	// 4th of conv2: its per-neuron loop is slow); each gets the value a full
	// analysis gives it.
	var pick [][2]any
	for i, l := range res.Layers {
		for n := 0; n < int(l.Neurons); n += 8 / (i + 1) {
			pick = append(pick, [2]any{l.Name, n})
		}
	}
	neurons, err := json.Marshal(pick)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "neurons.json"), neurons, 0o644); err != nil {
		t.Fatal(err)
	}
	py := runReference(t, dir, "reference.json", "--neurons", filepath.Join(dir, "neurons.json"))
	if len(py.Layers) != 2 || len(res.Layers) != 2 {
		t.Fatalf("layers: python %d, go %d", len(py.Layers), len(res.Layers))
	}
	const tol = 1e-6
	for i, l := range res.Layers {
		p := py.Layers[i]
		if p.Name != l.Name || len(p.CVFWeights) != l.Channels || len(l.ChannelVFs) != l.Channels {
			t.Fatalf("%s: %d python filters, %d channels, %d analysed", l.Name, len(p.CVFWeights), l.Channels, len(l.ChannelVFs))
		}
		var worstW, worstN float64
		neurons := 0
		for _, ch := range l.ChannelVFs {
			if d := math.Abs(*ch.CVFWeights - p.CVFWeights[ch.Index]); d > worstW {
				worstW = d
			}
			for k, pos := range ch.Positions {
				want, ok := p.NVF[strconv.Itoa(ch.Index*l.Positions+pos)]
				if !ok {
					continue
				}
				worstN = max(worstN, math.Abs(ch.NVF[k]-want))
				neurons++
			}
		}
		if worstW > tol || worstN > tol || neurons != len(p.NVF) {
			t.Errorf("%s: largest difference %.3g over %d filters, %.3g over %d neurons (python %d); want at most %g",
				l.Name, worstW, l.Channels, worstN, neurons, len(p.NVF), tol)
		}

		t.Logf("%s: %d filters (largest difference %.2g), %d neurons (%.2g), %d batch forwards", l.Name, l.Channels, worstW, neurons, worstN, p.FwdWeights+p.FwdActivaton)
	}
}

// The reference's loss mixes a group's images (its [B,1,C] one-hots broadcast
// to [B,B,C]): where every margin of an image saturates the sigmoid, a
// per-image loss has a zero gradient there, the reference's does not. The
// gradient equals the formula's, computed in float64.
func TestReferenceLossBroadcastsOverImages(t *testing.T) {
	// Two images, three classes: golden classes 0 and 2, all margins > 20.
	logits := []float32{30, 5, 1, 2, 4, 40}
	golden := []int{0, 2}
	const b, c = 2, 3
	sig := func(v float64) float64 { return 1 / (1 + math.Exp(-v)) }
	// L = (1/B) sum_i sum_k sum_j sigmoid(S[i,j] - E[k,j]), S[i,j] = oh_i[j] sum_k' E[k',j].
	want := make([]float64, b*c)
	for i := range b {
		for k := range b {
			for j := range c {
				s := 0.0
				if golden[i] == j {
					for k2 := range b {
						s += float64(logits[k2*c+j])
					}
				}
				d := sig(s-float64(logits[k*c+j])) * (1 - sig(s-float64(logits[k*c+j]))) / b
				want[k*c+j] -= d // through -E[k,j]
				if golden[i] == j {
					for k2 := range b { // through S[i,j]
						want[k2*c+j] += d
					}
				}
			}
		}
	}
	var got []float32
	do(t, func() error {
		var sc torch.Scope
		defer sc.Drop()
		prev, err := torch.SetGradEnabled(true)
		if err != nil {
			return err
		}
		defer func() { _, _ = torch.SetGradEnabled(prev) }()
		y, err := sc.KeepErr(torch.FromFloat32(logits, []int64{b, c}, gotch.CPU))
		if err != nil {
			return err
		}
		if err := y.RequiresGrad_(true); err != nil {
			return err
		}
		e, err := sc.KeepErr(y.MulScalar(ts.FloatScalar(1), false))
		if err != nil {
			return err
		}
		r := &runner{m: nil, golden: golden, classes: c}
		qs := []query{{img: 0}, {img: 1}}
		g, err := r.backwardOn(&sc, qs, y, e, gotch.CPU)
		if err != nil {
			return err
		}
		got, err = torch.Float32s(g)
		return err
	})
	nonzero := false
	for i := range want {
		if math.Abs(float64(got[i])-want[i]) > 1e-6*math.Max(1, math.Abs(want[i])) {
			t.Errorf("gradient %d: %g, want %g", i, got[i], want[i])
		}
		nonzero = nonzero || got[i] != 0
	}
	if !nonzero {
		t.Error("the broadcast loss's gradient is zero where every margin saturates")
	}
}
