package model

import (
	"fmt"
	"math"
	"slices"

	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model/graph"
	"github.com/sugarme/gotch"
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
	if s.Arch == GraphArch {
		// A graph's spec describes its input and output; the rest is the graph's.
		return nil
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

// New builds a freshly initialised model on dev: the architecture as a graph of
// ONNX operations (Conv, Gemm, BatchNormalization, Relu, MaxPool, Flatten,
// GlobalAveragePool, Add) whose initializers carry the PyTorch state_dict names,
// executed like any graph (FromGraph). Initialisation uses libtorch's global
// generator, with PyTorch's defaults: seed it (torch.ManualSeed) first for
// reproducible weights.
func New(spec Spec, dev gotch.Device) (*Model, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	var m *Model
	err := torch.Do(func() error {
		g, err := zooGraph(spec, dev)
		if err != nil {
			return err
		}
		if m, err = compileGraph(g, spec, []int64{spec.InChannels, spec.Height, spec.Width}, dev); err != nil {
			return err
		}
		if out := m.outShape(); !slices.Equal(out, []int64{spec.Classes}) {
			return fmt.Errorf("model: %s ends with shape %v, want [%d]", spec.Arch, out, spec.Classes)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// zooGraph builds spec's architecture as a graph with freshly initialised
// weights.
func zooGraph(spec Spec, dev gotch.Device) (*graph.Graph, error) {
	in := []int64{spec.InChannels, spec.Height, spec.Width}
	b := &builder{dev: dev, x: "input", shape: in, names: map[string]int{}, g: &graph.Graph{
		Name: spec.Arch, Opset: 13,
		Inputs: []graph.Value{{Name: "input", DType: graph.Float32, Shape: append([]int64{-1}, in...),
			DimNames: []string{"batch", "", "", ""}}},
	}}
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
	if b.err != nil {
		return nil, b.err
	}
	b.g.Outputs = []graph.Value{{Name: b.x, DType: graph.Float32, Shape: []int64{-1, spec.Classes}, DimNames: []string{"batch", ""}}}
	return b.g, nil
}

// builder appends nodes to a graph, tracking the current value and its
// per-sample shape, and creates the weights in the order PyTorch's modules do.
type builder struct {
	g     *graph.Graph
	dev   gotch.Device
	x     string  // the current value
	shape []int64 // its per-sample shape: [C, H, W] or [F]
	names map[string]int
	err   error
}

func (b *builder) fail(format string, a ...any) {
	if b.err == nil {
		b.err = fmt.Errorf(format, a...)
	}
}

// node appends a node named after its module (or its op) reading inputs and
// makes its output the current value.
func (b *builder) node(op, module string, inputs []string, attrs map[string]graph.Attr) {
	name := module
	if name == "" {
		name = op
	}
	if b.names[name]++; b.names[name] > 1 {
		name = fmt.Sprintf("%s_%d", name, b.names[name]-1)
	}
	b.g.Nodes = append(b.g.Nodes, graph.Node{Name: name, Op: op, Inputs: inputs, Outputs: []string{name}, Attrs: attrs})
	b.x = name
}

// param adds an initializer: drawn from U(-bound, bound) by libtorch's
// generator on the model's device, as PyTorch initialises conv and linear
// layers (bound 1/sqrt(fan_in)), or, for bound 0, filled with fill.
func (b *builder) param(name string, dims []int64, bound float64, fill float32) string {
	if b.err != nil {
		return name
	}
	var vals []float32
	if bound > 0 {
		t, err := ts.Zeros(dims, gotch.Float, b.dev)
		if err == nil {
			if err = t.Uniform_(-bound, bound); err == nil {
				vals, err = torch.Float32s(t)
			}
			_ = t.Drop()
		}
		if err != nil {
			b.fail("model: initialise %s: %w", name, err)
			return name
		}
	} else {
		vals = make([]float32, Numel(dims))
		for i := range vals {
			vals[i] = fill
		}
	}
	t, err := graph.FromFloat32s(name, dims, vals)
	if err != nil {
		b.fail("model: initialise %s: %w", name, err)
		return name
	}
	b.g.Initializers = append(b.g.Initializers, t)
	return name
}

// conv adds a k x k convolution with out channels.
func (b *builder) conv(name string, out, k, stride, pad int64, bias bool) {
	if b.err != nil {
		return
	}
	if len(b.shape) != 3 {
		b.fail("model: conv %s needs a [C,H,W] input, have %v", name, b.shape)
		return
	}
	c, h, w := b.shape[0], b.shape[1], b.shape[2]
	oh, ow := (h+2*pad-k)/stride+1, (w+2*pad-k)/stride+1
	if oh < 1 || ow < 1 || h+2*pad < k || w+2*pad < k {
		b.fail("model: conv %s: input %dx%d too small for kernel %d", name, h, w, k)
		return
	}
	bound := 1 / math.Sqrt(float64(c*k*k))
	inputs := []string{b.x, b.param(name+".weight", []int64{out, c, k, k}, bound, 0)}
	if bias {
		inputs = append(inputs, b.param(name+".bias", []int64{out}, bound, 0))
	}
	b.node("Conv", name, inputs, map[string]graph.Attr{
		"kernel_shape": graph.Ints(k, k), "strides": graph.Ints(stride, stride),
		"pads": graph.Ints(pad, pad, pad, pad), "dilations": graph.Ints(1, 1), "group": graph.Int(1)})
	b.shape = []int64{out, oh, ow}
}

// linear adds a fully connected layer with out units (the input must be flat).
func (b *builder) linear(name string, out int64) {
	if b.err != nil {
		return
	}
	if len(b.shape) != 1 {
		b.fail("model: linear %s needs a flat input, have %v", name, b.shape)
		return
	}
	in := b.shape[0]
	bound := 1 / math.Sqrt(float64(in))
	w := b.param(name+".weight", []int64{out, in}, bound, 0)
	bias := b.param(name+".bias", []int64{out}, bound, 0)
	b.node("Gemm", name, []string{b.x, w, bias}, map[string]graph.Attr{"transB": graph.Int(1)})
	b.shape = []int64{out}
}

// batchNorm adds a BatchNorm2d over the current channels (PyTorch's defaults:
// weight 1, bias 0, running statistics 0 and 1, eps 1e-5, momentum 0.1).
func (b *builder) batchNorm(name string) {
	if b.err != nil {
		return
	}
	c := []int64{b.shape[0]}
	inputs := []string{b.x, b.param(name+".weight", c, 0, 1), b.param(name+".bias", c, 0, 0),
		b.param(name+".running_mean", c, 0, 0), b.param(name+".running_var", c, 0, 1)}
	b.node("BatchNormalization", name, inputs, map[string]graph.Attr{
		"epsilon": graph.Float(1e-5), "momentum": graph.Float(0.9)})
}

func (b *builder) relu() { b.node("Relu", "", []string{b.x}, nil) }

// pool adds a 2x2 max pool with stride 2.
func (b *builder) pool() {
	if b.err != nil {
		return
	}
	if len(b.shape) != 3 || b.shape[1] < 2 || b.shape[2] < 2 {
		b.fail("model: max pool 2 on shape %v", b.shape)
		return
	}
	b.node("MaxPool", "", []string{b.x}, map[string]graph.Attr{
		"kernel_shape": graph.Ints(2, 2), "strides": graph.Ints(2, 2), "pads": graph.Ints(0, 0, 0, 0)})
	b.shape = []int64{b.shape[0], b.shape[1] / 2, b.shape[2] / 2}
}

// flatten flattens [C,H,W] into [C*H*W].
func (b *builder) flatten() {
	b.node("Flatten", "", []string{b.x}, map[string]graph.Attr{"axis": graph.Int(1)})
	b.shape = []int64{Numel(b.shape)}
}

// globalPool adds global average pooling and a flatten.
func (b *builder) globalPool() {
	b.node("GlobalAveragePool", "", []string{b.x}, nil)
	b.shape = []int64{b.shape[0], 1, 1}
	b.flatten()
}

func buildMLP(b *builder, s Spec) {
	b.flatten()
	var outs []int64
	for _, h := range s.Hidden {
		outs = append(outs, s.scale(int64(h)))
	}
	outs = append(outs, s.Classes)
	for i, out := range outs {
		b.linear(fmt.Sprintf("fc%d", i+1), out)
		if i < len(outs)-1 {
			b.relu()
		}
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
	b.conv("conv1", s.scale(6), 5, 1, pad, true)
	b.relu()
	b.pool()
	b.conv("conv2", s.scale(16), 5, 1, 0, true)
	b.relu()
	b.pool()
	b.flatten()
	b.linear("fc1", s.scale(120))
	b.relu()
	b.linear("fc2", s.scale(84))
	b.relu()
	b.linear("fc3", s.Classes)
}

// vgg11Config is VGG-11's feature stack: channel counts and "M" (max pool) as 0.
var vgg11Config = []int64{64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0}

// buildVGG11 is VGG-11 in the CIFAR style (3x3 convs, optional BatchNorm, one
// linear classifier after global average pooling), with layers named like
// PyTorch's nn.Sequential (features.0, features.1, ...). On inputs smaller than
// 32x32 the last max pool is left out, so 28x28 ends at 1x1 like 32x32 does.
func buildVGG11(b *builder, s Spec) {
	idx := 0
	for i := 0; i < len(vgg11Config); i++ {
		b.conv(fmt.Sprintf("features.%d", idx), s.scale(vgg11Config[i]), 3, 1, 1, true)
		idx++
		if s.BatchNorm {
			b.batchNorm(fmt.Sprintf("features.%d", idx))
			idx++
		}
		b.relu()
		idx++
		if i+1 < len(vgg11Config) && vgg11Config[i+1] == 0 {
			i++
			idx++
			if !(i == len(vgg11Config)-1 && (s.Height < 32 || s.Width < 32)) {
				b.pool()
			}
		}
	}
	b.globalPool()
	b.linear("classifier", s.Classes)
}

// buildResNet20 is the CIFAR ResNet-20 of He et al. (3 stages of 3 basic blocks,
// 16/32/64 channels times the width multiplier, 1x1 projection shortcuts with
// BatchNorm where the shape changes), named like the common PyTorch
// implementation (conv1, bn1, layer1.0.conv1, ..., layer2.0.shortcut.0, fc).
func buildResNet20(b *builder, s Spec) {
	b.conv("conv1", s.scale(16), 3, 1, 1, false)
	b.batchNorm("bn1")
	b.relu()
	for stage := 1; stage <= 3; stage++ {
		planes := s.scale(16 << (stage - 1))
		for i := 0; i < 3; i++ {
			stride := int64(1)
			if stage > 1 && i == 0 {
				stride = 2
			}
			name := fmt.Sprintf("layer%d.%d", stage, i)
			in, inShape := b.x, b.shape
			b.conv(name+".conv1", planes, 3, stride, 1, false)
			b.batchNorm(name + ".bn1")
			b.relu()
			b.conv(name+".conv2", planes, 3, 1, 1, false)
			b.batchNorm(name + ".bn2")
			main, out := b.x, b.shape
			short := in
			if stride != 1 || inShape[0] != planes {
				b.x, b.shape = in, inShape
				b.conv(name+".shortcut.0", planes, 1, stride, 0, false)
				b.batchNorm(name + ".shortcut.1")
				if b.err == nil && !slices.Equal(b.shape, out) {
					b.fail("model: %s: shortcut shape %v != block shape %v", name, b.shape, out)
				}
				short = b.x
			}
			b.node("Add", name+".add", []string{main, short}, nil)
			b.shape = out
			b.relu()
		}
	}
	b.globalPool()
	b.linear("fc", s.Classes)
}
