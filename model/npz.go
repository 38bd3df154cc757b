package model

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/faultline/faultline/internal/npz"
	"github.com/faultline/faultline/internal/torch"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/pickle"
	"github.com/sugarme/gotch/ts"
	"gorgonia.org/tensor"
)

// SaveNPZ writes every parameter and buffer as float32 arrays under their PyTorch
// state_dict names, plus each BatchNorm's num_batches_tracked (a 0-d int64, the
// number of training steps), so that
//
//	sd = {k: torch.from_numpy(v) for k, v in numpy.load("model.npz").items()}
//	net.load_state_dict(sd)
//
// rebuilds the model in PyTorch.
func (m *Model) SaveNPZ(path string, steps int64) error {
	var arrays []npz.Array
	err := torch.Do(func() error {
		seenBN := map[string]bool{}
		for _, p := range m.params {
			vals, err := torch.Float32s(p.Tensor)
			if err != nil {
				return fmt.Errorf("model: npz %s: %w", p.Name, err)
			}
			shape, _ := torch.Shape(p.Tensor)
			dims := make([]int, len(shape))
			for i, d := range shape {
				dims[i] = int(d)
			}
			arrays = append(arrays, npz.Array{Name: p.Name, T: tensor.New(tensor.WithShape(dims...), tensor.WithBacking(vals))})
			if prefix, ok := strings.CutSuffix(p.Name, ".running_var"); ok && !seenBN[prefix] {
				seenBN[prefix] = true
				arrays = append(arrays, npz.Array{Name: prefix + ".num_batches_tracked", T: tensor.New(tensor.FromScalar(steps))})
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return npz.Write(path, arrays)
}

// LoadNPZ replaces the model's weights with those in a NumPy .npz of PyTorch
// state_dict names (float32 or float64; num_batches_tracked is ignored).
func (m *Model) LoadNPZ(path string) error {
	arrays, err := npz.Read(path)
	if err != nil {
		return err
	}
	return torch.Do(func() error {
		tensors := map[string]*ts.Tensor{}
		defer func() {
			for _, t := range tensors {
				_ = t.Drop()
			}
		}()
		for _, a := range arrays {
			if strings.HasSuffix(a.Name, ".num_batches_tracked") {
				continue
			}
			vals, err := float32Values(a.T)
			if err != nil {
				return fmt.Errorf("model: %s: %s: %w", path, a.Name, err)
			}
			shape := make([]int64, len(a.T.Shape()))
			for i, d := range a.T.Shape() {
				shape[i] = int64(d)
			}
			if len(shape) == 0 {
				shape = []int64{1}
			}
			t, err := torch.FromFloat32(vals, shape, gotch.CPU)
			if err != nil {
				return fmt.Errorf("model: %s: %s: %w", path, a.Name, err)
			}
			tensors[a.Name] = t
		}
		return m.assign(tensors, path)
	})
}

func float32Values(t *tensor.Dense) ([]float32, error) {
	switch d := t.Data().(type) {
	case []float32:
		return append([]float32(nil), d...), nil
	case []float64:
		out := make([]float32, len(d))
		for i, v := range d {
			out[i] = float32(v)
		}
		return out, nil
	case float32:
		return []float32{d}, nil
	case float64:
		return []float32{float32(d)}, nil
	}
	return nil, fmt.Errorf("dtype %v: want float32 or float64", t.Dtype())
}

// LoadStateDict replaces the model's weights with a PyTorch state_dict saved by
// torch.save (the zip format of PyTorch >= 1.6).
func (m *Model) LoadStateDict(path string) error {
	return torch.Do(func() error {
		sd, err := pickle.Decode(path)
		if err != nil {
			return fmt.Errorf("model: read %s (want a state_dict saved with torch.save): %w", path, firstLine(err))
		}
		defer func() {
			for _, t := range sd {
				_ = t.Drop()
			}
		}()
		return m.assign(sd, path)
	})
}

// Import loads weights trained elsewhere into a fresh model of spec: an .npz of
// state_dict names, or a state_dict .pt/.pth saved by torch.save.
func Import(spec Spec, weights string) (*Model, error) {
	m, err := New(spec, gotch.CPU)
	if err != nil {
		return nil, err
	}
	switch strings.ToLower(filepath.Ext(weights)) {
	case ".npz":
		err = m.LoadNPZ(weights)
	case ".pt", ".pth":
		err = m.LoadStateDict(weights)
	default:
		return nil, fmt.Errorf("model: import %s: want a .npz or a .pt/.pth state_dict", weights)
	}
	if err != nil {
		return nil, err
	}
	return m, nil
}
