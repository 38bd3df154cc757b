package model

import (
	"fmt"
	"math"

	"github.com/faultline/faultline/internal/torch"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/nn"
	"github.com/sugarme/gotch/ts"
)

// Spec describes an architecture and its input; it is saved in checkpoint metadata
// and is enough to rebuild the model.
type Spec struct {
	Arch       string  `json:"arch"`        // mlp, lenet5, vgg11, resnet20
	InChannels int64   `json:"in_channels"` // 1 for (Fashion-)MNIST, 3 for CIFAR-10
	Height     int64   `json:"height"`
	Width      int64   `json:"width"`
	Classes    int64   `json:"classes"`
	WidthMult  float64 `json:"width_multiplier"` // scales every hidden channel count
	Hidden     []int   `json:"hidden,omitempty"` // mlp hidden sizes
	BatchNorm  bool    `json:"batch_norm"`       // vgg11 (resnet20 always has BatchNorm)
}

// Architectures lists the zoo.
func Architectures() []string { return []string{"mlp", "lenet5", "vgg11", "resnet20"} }

// Validate checks a spec before anything is allocated.
func (s Spec) Validate() error {
	if s.InChannels < 1 || s.Height < 1 || s.Width < 1 {
		return fmt.Errorf("model: input shape %dx%dx%d is impossible", s.InChannels, s.Height, s.Width)
	}
	if s.Classes < 2 {
		return fmt.Errorf("model: classes must be >= 2, got %d", s.Classes)
	}
	if !(s.WidthMult > 0) || math.IsInf(s.WidthMult, 0) {
		return fmt.Errorf("model: width multiplier must be > 0, got %v", s.WidthMult)
	}
	switch s.Arch {
	case "mlp":
		if len(s.Hidden) == 0 {
			return fmt.Errorf("model: mlp needs at least one hidden size")
		}
		for _, h := range s.Hidden {
			if h < 1 {
				return fmt.Errorf("model: mlp hidden size %d must be >= 1", h)
			}
		}
	case "lenet5", "resnet20":
		if s.Height < 8 || s.Width < 8 {
			return fmt.Errorf("model: %s needs inputs of at least 8x8, got %dx%d", s.Arch, s.Height, s.Width)
		}
	case "vgg11":
		if s.Height < 16 || s.Width < 16 {
			return fmt.Errorf("model: vgg11 needs inputs of at least 16x16, got %dx%d", s.Height, s.Width)
		}
	default:
		return fmt.Errorf("model: unknown architecture %q (known: %v)", s.Arch, Architectures())
	}
	return nil
}

// scale applies the width multiplier to a channel count (at least 1).
func (s Spec) scale(c int64) int64 {
	v := int64(math.Round(float64(c) * s.WidthMult))
	if v < 1 {
		v = 1
	}
	return v
}

// New builds a freshly initialised model on dev. Initialisation uses libtorch's
// global generator: seed it (torch.ManualSeed) first for reproducible weights.
func New(spec Spec, dev gotch.Device) (*Model, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	var m *Model
	err := torch.Do(func() error {
		m = &Model{spec: spec, vs: nn.NewVarStore(dev), byName: map[string]int{},
			convs: map[string]*conv{}, fcs: map[string]*linear{}}
		b := newBuilder(m, []int64{spec.InChannels, spec.Height, spec.Width})
		switch spec.Arch {
		case "mlp":
			buildMLP(b, spec)
		case "lenet5":
			buildLeNet5(b, spec)
		case "vgg11":
			buildVGG11(b, spec)
		case "resnet20":
			buildResNet20(b, spec)
		}
		if b.err == nil && (len(b.shape) != 1 || b.shape[0] != spec.Classes) {
			b.fail("model: %s ends with shape %v, want [%d]", spec.Arch, b.shape, spec.Classes)
		}
		return b.err
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

func buildMLP(b *builder, s Spec) {
	var outs []int64
	for _, h := range s.Hidden {
		outs = append(outs, s.scale(int64(h)))
	}
	outs = append(outs, s.Classes)
	for i, out := range outs {
		first, last := i == 0, i == len(outs)-1
		b.begin()
		if first {
			b.flatten()
		}
		name := fmt.Sprintf("fc%d", i+1)
		l := b.linear(name, out)
		if first { // the stage flattens its input before the layer
			b.end(func(r *pass, x *ts.Tensor) (*ts.Tensor, error) {
				x, err := flatten(x, nil)
				if err != nil {
					return nil, err
				}
				y, err := r.linear(l, x)
				if last || err != nil {
					return y, err
				}
				return r.relu(y, nil)
			})
			continue
		}
		b.endLead(name, func(r *pass, y *ts.Tensor) (*ts.Tensor, error) {
			if last {
				return y, nil
			}
			return r.relu(y, nil)
		})
	}
}

// buildLeNet5 is LeNet-5 with ReLU and max pooling: conv1 (6, 5x5, padding 2 for
// 28x28 inputs so the classic 32x32 geometry holds), pool, conv2 (16, 5x5), pool,
// fc1 120, fc2 84, fc3 classes.
func buildLeNet5(b *builder, s Spec) {
	pad := int64(0)
	if s.Height < 32 {
		pad = (32 - s.Height + 1) / 2
	}
	b.begin()
	b.conv("conv1", s.scale(6), 5, 1, pad, true)
	b.pool(2)
	b.endLead("conv1", func(r *pass, y *ts.Tensor) (*ts.Tensor, error) { return pool2(r.relu(y, nil)) })
	b.begin()
	b.conv("conv2", s.scale(16), 5, 1, 0, true)
	b.pool(2)
	b.flatten()
	b.endLead("conv2", func(r *pass, y *ts.Tensor) (*ts.Tensor, error) { return flatten(pool2(r.relu(y, nil))) })
	for _, n := range []struct {
		name string
		out  int64
	}{{"fc1", s.scale(120)}, {"fc2", s.scale(84)}} {
		b.begin()
		b.linear(n.name, n.out)
		b.endLead(n.name, func(r *pass, y *ts.Tensor) (*ts.Tensor, error) { return r.relu(y, nil) })
	}
	b.begin()
	b.linear("fc3", s.Classes)
	b.endLead("fc3", func(r *pass, y *ts.Tensor) (*ts.Tensor, error) { return y, nil })
}

// vgg11Config is VGG-11's feature stack: channel counts and "M" (max pool) as 0.
var vgg11Config = []int64{64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0}

// buildVGG11 is VGG-11 in the CIFAR style (3x3 convs, optional BatchNorm, one
// linear classifier), with layers named like PyTorch's nn.Sequential
// (features.0, features.1, ...). On inputs smaller than 32x32 the last max pool is
// left out, so 28x28 ends at 1x1 like 32x32 does. Each conv with its BatchNorm,
// ReLU and following pool is one stage.
func buildVGG11(b *builder, s Spec) {
	idx := 0
	for i := 0; i < len(vgg11Config); i++ {
		c := vgg11Config[i]
		b.begin()
		name := fmt.Sprintf("features.%d", idx)
		b.conv(name, s.scale(c), 3, 1, 1, true)
		idx++
		var bn *batchNorm
		if s.BatchNorm {
			bn = b.batchNorm(fmt.Sprintf("features.%d", idx))
			idx++
		}
		idx++ // ReLU
		pool := false
		if i+1 < len(vgg11Config) && vgg11Config[i+1] == 0 {
			i++
			idx++
			if !(i == len(vgg11Config)-1 && (s.Height < 32 || s.Width < 32)) {
				b.pool(2)
				pool = true
			}
		}
		b.endLead(name, func(r *pass, x *ts.Tensor) (*ts.Tensor, error) {
			var err error
			if bn != nil {
				x, err = r.batchNorm(bn, x)
			}
			x, err = r.relu(x, err)
			if pool {
				x, err = pool2(x, err)
			}
			return x, err
		})
	}
	b.poolHead("classifier", s.Classes)
}

// poolHead adds the last stage of VGG and ResNet: global average pooling and a
// linear layer with out units.
func (b *builder) poolHead(name string, out int64) {
	b.begin()
	b.globalPool()
	l := b.linear(name, out)
	b.end(func(r *pass, x *ts.Tensor) (*ts.Tensor, error) {
		x, err := globalPool(x, nil)
		if err != nil {
			return nil, err
		}
		return r.linear(l, x)
	})
}

// basicBlock is ResNet's two-conv residual block with an optional 1x1 projection
// shortcut (shortcut.0 conv, shortcut.1 BatchNorm) when the shape changes.
type basicBlock struct {
	conv1, conv2 *conv
	bn1, bn2     *batchNorm
	proj         *conv
	projBN       *batchNorm
}

// buildResNet20 is the CIFAR ResNet-20 of He et al. (3 stages of 3 basic blocks,
// 16/32/64 channels times the width multiplier, projection shortcuts), named like
// the common PyTorch implementation (conv1, bn1, layer1.0.conv1, ..., fc). The
// stem, each basic block and the head are one stage each.
func buildResNet20(b *builder, s Spec) {
	b.begin()
	b.conv("conv1", s.scale(16), 3, 1, 1, false)
	stemBN := b.batchNorm("bn1")
	b.endLead("conv1", func(r *pass, y *ts.Tensor) (*ts.Tensor, error) { return r.relu(r.batchNorm(stemBN, y)) })
	for stage := 1; stage <= 3; stage++ {
		planes := s.scale(16 << (stage - 1))
		for i := 0; i < 3; i++ {
			stride := int64(1)
			if stage > 1 && i == 0 {
				stride = 2
			}
			name := fmt.Sprintf("layer%d.%d", stage, i)
			b.begin()
			in := append([]int64(nil), b.shape...)
			var blk basicBlock
			blk.conv1 = b.conv(name+".conv1", planes, 3, stride, 1, false)
			blk.bn1 = b.batchNorm(name + ".bn1")
			blk.conv2 = b.conv(name+".conv2", planes, 3, 1, 1, false)
			blk.bn2 = b.batchNorm(name + ".bn2")
			if stride != 1 || in[0] != planes {
				out := b.shape
				b.shape = in
				blk.proj = b.conv(name+".shortcut.0", planes, 1, stride, 0, false)
				blk.projBN = b.batchNorm(name + ".shortcut.1")
				if b.err == nil && (b.shape[1] != out[1] || b.shape[2] != out[2]) {
					b.fail("model: %s: shortcut shape %v != block shape %v", name, b.shape, out)
				}
			}
			b.end(func(r *pass, x *ts.Tensor) (*ts.Tensor, error) { return r.block(blk, x) })
		}
	}
	b.poolHead("fc", s.Classes)
}

// block runs one basic block; it consumes x.
func (r *pass) block(blk basicBlock, x *ts.Tensor) (*ts.Tensor, error) {
	short, err := x.ShallowClone()
	if err != nil {
		_ = x.Drop()
		return nil, err
	}
	y, err := r.conv(blk.conv1, x)
	if err == nil {
		y, err = r.relu(r.batchNorm(blk.bn1, y))
	}
	if err == nil {
		y, err = r.conv(blk.conv2, y)
	}
	if err == nil {
		y, err = r.batchNorm(blk.bn2, y)
	}
	if err != nil {
		_ = short.Drop()
		return nil, err
	}
	if blk.proj != nil {
		short, err = r.conv(blk.proj, short)
		if err == nil {
			short, err = r.batchNorm(blk.projBN, short)
		}
		if err != nil {
			_ = y.Drop()
			return nil, err
		}
	}
	return r.relu(add(y, short))
}
