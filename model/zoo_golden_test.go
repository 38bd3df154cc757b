package model

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/faultline/faultline/internal/npz"
	"github.com/faultline/faultline/internal/torch"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
	"gorgonia.org/tensor"
)

// The zoo's numerics are pinned by golden files written by the hand-written
// stage code that the graph executor replaced (commit "model: golden zoo
// fixtures", before the executor existed): for each architecture, a seeded New
// must give the same initial weights bit for bit, and the same forward passes
// (eval, hooked, clamped, training mode), gradients and BatchNorm running
// statistics. Regenerating them (FAULTLINE_REGEN_ZOO_GOLDEN=1) records the
// current code, which defeats the test's purpose unless the numerics are meant
// to change.

// goldenSpecs are small instances of the zoo, so the fixtures stay small.
var goldenSpecs = []Spec{
	{Arch: "mlp", InChannels: 1, Height: 12, Width: 12, Classes: 10, WidthMult: 1, Hidden: []int{16, 8}},
	{Arch: "lenet5", InChannels: 1, Height: 28, Width: 28, Classes: 10, WidthMult: 0.5},
	{Arch: "vgg11", InChannels: 1, Height: 16, Width: 16, Classes: 10, WidthMult: 1.0 / 16, BatchNorm: true},
	{Arch: "vgg11", InChannels: 3, Height: 32, Width: 32, Classes: 10, WidthMult: 1.0 / 32},
	{Arch: "resnet20", InChannels: 3, Height: 16, Width: 16, Classes: 10, WidthMult: 0.25},
}

// goldenName names spec's fixture.
func goldenName(s Spec) string {
	name := s.Arch
	if s.BatchNorm {
		name += "-bn"
	}
	return fmt.Sprintf("%s-%dx%dx%d", name, s.InChannels, s.Height, s.Width)
}

// goldenRecord computes what the fixture of spec holds: float32 arrays
// ("input", "logits/...") and SHA-256 digests (uint8[32]) of the raw float32
// bytes of every parameter ("param/NAME"), gradient ("grad/NAME") and buffer
// after a training-mode forward ("buffer/NAME").
func goldenRecord(t *testing.T, spec Spec, seed int64) []npz.Array {
	t.Helper()
	torch.ManualSeed(seed)
	m := newModel(t, spec)
	var out []npz.Array
	floats := func(name string, v []float32, shape ...int) {
		out = append(out, npz.Array{Name: name, T: tensor.New(tensor.WithShape(shape...), tensor.WithBacking(v))})
	}
	digest := func(name string, tt *ts.Tensor) error {
		v, err := torch.Float32s(tt)
		if err != nil {
			return err
		}
		b := make([]byte, 4*len(v))
		for i, f := range v {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
		}
		sum := sha256.Sum256(b)
		out = append(out, npz.Array{Name: name, T: tensor.New(tensor.WithShape(32), tensor.WithBacking(sum[:]))})
		return nil
	}
	const n = 4
	x, shape := randomInput(spec, n, seed+1)
	floats("input", x, n, int(spec.InChannels), int(spec.Height), int(spec.Width))
	sites := m.SiteNames()
	mid := sites[len(sites)/2]
	// weights for the loss of the gradient check
	r := rand.New(rand.NewSource(seed + 2))
	lw := make([]float32, n*int(spec.Classes))
	for i := range lw {
		lw[i] = float32(r.NormFloat64())
	}
	do(t, func() error {
		for _, p := range m.Params() {
			if err := digest("param/"+p.Name, p.Tensor); err != nil {
				return err
			}
		}
		in, err := torch.FromFloat32(x, shape, gotch.CPU)
		if err != nil {
			return err
		}
		defer in.Drop()
		logits := func(name string, train bool, hook Hook) error {
			return torch.NoGrad(func() error {
				y, err := m.Forward(in, train, hook)
				if err != nil {
					return err
				}
				defer y.Drop()
				v, err := torch.Float32s(y)
				if err != nil {
					return err
				}
				floats(name, v, n, int(spec.Classes))
				return nil
			})
		}
		if err := logits("logits/eval", false, nil); err != nil {
			return err
		}
		if err := logits("logits/hook_nil", false, func(*Site, *ts.Tensor, *ts.Tensor) (*ts.Tensor, error) { return nil, nil }); err != nil {
			return err
		}
		double := func(s *Site, in, y *ts.Tensor) (*ts.Tensor, error) {
			if s.Name != mid {
				return nil, nil
			}
			return y.Add(y, false)
		}
		if err := logits("logits/hook_double", false, double); err != nil {
			return err
		}
		if err := m.SetClamps(Clamps{mid: {Min: -0.05, Max: 0.05}}); err != nil {
			return err
		}
		if err := logits("logits/clamped", false, nil); err != nil {
			return err
		}
		if err := m.SetClamps(nil); err != nil {
			return err
		}
		// Training mode with gradients: logits, gradients of sum(logits * lw),
		// then the running statistics it updated.
		y, err := m.Forward(in, true, nil)
		if err != nil {
			return err
		}
		v, err := torch.Float32s(y)
		if err != nil {
			y.Drop()
			return err
		}
		floats("logits/train", v, n, int(spec.Classes))
		w, err := torch.FromFloat32(lw, []int64{n, spec.Classes}, gotch.CPU)
		if err != nil {
			y.Drop()
			return err
		}
		loss, err := y.Mul(w, true)
		w.Drop()
		if err != nil {
			return err
		}
		if loss, err = loss.Sum(gotch.Float, true); err != nil {
			return err
		}
		err = loss.Backward()
		loss.Drop()
		if err != nil {
			return err
		}
		for _, p := range m.Params() {
			if !p.Trainable {
				if err := digest("buffer/"+p.Name, p.Tensor); err != nil {
					return err
				}
				continue
			}
			g, err := p.Tensor.Grad(false)
			if err != nil {
				return err
			}
			err = digest("grad/"+p.Name, g)
			g.Drop()
			if err != nil {
				return err
			}
			p.Tensor.ZeroGrad()
		}
		return logits("logits/eval_after_train", false, nil)
	})
	return out
}

// A seeded New gives the zoo's golden weights, and the forward and backward
// passes give the golden logits, gradients and running statistics, bit for bit.
func TestZooGolden(t *testing.T) {
	regen := os.Getenv("FAULTLINE_REGEN_ZOO_GOLDEN") != ""
	for i, spec := range goldenSpecs {
		name := goldenName(spec)
		t.Run(name, func(t *testing.T) {
			got := goldenRecord(t, spec, int64(7000+i))
			path := filepath.Join("testdata", "zoo", name+".npz")
			if regen {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := npz.Write(path, got); err != nil {
					t.Fatal(err)
				}
				t.Logf("wrote %s (%d arrays)", path, len(got))
				return
			}
			want, err := npz.Read(path)
			if err != nil {
				t.Fatal(err)
			}
			wantBy := map[string]*tensor.Dense{}
			for _, a := range want {
				wantBy[a.Name] = a.T
			}
			var bad []string
			for _, a := range got {
				w, ok := wantBy[a.Name]
				switch {
				case !ok:
					bad = append(bad, a.Name+" (not in the fixture)")
				case !sameBits(a.T, w):
					bad = append(bad, a.Name)
				}
				delete(wantBy, a.Name)
			}
			for name := range wantBy {
				bad = append(bad, name+" (not computed)")
			}
			if len(bad) > 0 {
				t.Errorf("%d of %d arrays differ from %s: %s", len(bad), len(want), path, strings.Join(bad, ", "))
			}
		})
	}
}

// sameBits reports whether two arrays have the same shape and bit-identical
// data (float32 compared by bits).
func sameBits(a, b *tensor.Dense) bool {
	if fmt.Sprint(a.Shape()) != fmt.Sprint(b.Shape()) {
		return false
	}
	switch x := a.Data().(type) {
	case []float32:
		y, ok := b.Data().([]float32)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if math.Float32bits(x[i]) != math.Float32bits(y[i]) {
				return false
			}
		}
		return true
	case []uint8:
		y, ok := b.Data().([]uint8)
		return ok && string(x) == string(y)
	}
	return false
}
