package model

import (
	"fmt"
	"math"
	"strings"

	"github.com/sugarme/gotch/nn"
	"github.com/sugarme/gotch/ts"
)

// conv is a 2-D convolution site.
type conv struct {
	site        *Site
	w, b        *ts.Tensor // b is an undefined tensor when the layer has no bias
	stride, pad []int64
	dilation    []int64
	groups      int64
}

// linear is a fully connected site.
type linear struct {
	site *Site
	w, b *ts.Tensor
}

// batchNorm is a 2-D BatchNorm layer (PyTorch defaults: weight 1, bias 0,
// momentum 0.1, eps 1e-5). gotch's nn.BatchNorm always ran in training mode and
// initialised its weight uniformly; this one takes the mode from the pass.
type batchNorm struct {
	w, b, mean, vr *ts.Tensor
}

// builder creates layers in order, tracking the per-sample shape so every site
// knows its input and output shapes.
type builder struct {
	m     *Model
	shape []int64 // current per-sample shape: [C, H, W] or [F]
	err   error
}

func newBuilder(m *Model, in []int64) *builder {
	return &builder{m: m, shape: append([]int64(nil), in...)}
}

func (b *builder) fail(format string, a ...any) {
	if b.err == nil {
		b.err = fmt.Errorf(format, a...)
	}
}

// path returns the VarStore path for a dotted layer name.
func (b *builder) path(name string) *nn.Path {
	p := b.m.vs.Root()
	for _, part := range strings.Split(name, ".") {
		p = p.Sub(part)
	}
	return p
}

// param creates a named tensor and records it in state_dict order.
func (b *builder) param(name, leaf string, dims []int64, init nn.Init, trainable bool) *ts.Tensor {
	if b.err != nil {
		return nil
	}
	p := b.path(name)
	var (
		t   *ts.Tensor
		err error
	)
	switch {
	case trainable:
		t, err = p.NewVar(leaf, dims, init)
	case leaf == "running_var":
		t, err = p.OnesNoTrain(leaf, dims)
	default:
		t, err = p.ZerosNoTrain(leaf, dims)
	}
	if err != nil {
		b.fail("model: create %s.%s: %w", name, leaf, err)
		return nil
	}
	full := name + "." + leaf
	if _, dup := b.m.byName[full]; dup {
		b.fail("model: duplicate parameter %s", full)
		return nil
	}
	b.m.byName[full] = len(b.m.params)
	b.m.params = append(b.m.params, Param{Name: full, Tensor: t, Trainable: trainable})
	return t
}

// uniformInit is PyTorch's default for conv and linear layers:
// U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for both weight and bias.
func uniformInit(fanIn int64) nn.Init {
	bound := 1 / math.Sqrt(float64(fanIn))
	return nn.NewUniformInit(-bound, bound)
}

// begin starts a stage: a run of layers whose input is the current shape.
func (b *builder) begin() {
	b.m.stages = append(b.m.stages, stage{in: append([]int64(nil), b.shape...), first: len(b.m.sites)})
}

// end closes the stage begun last with its forward function.
func (b *builder) end(run func(r *pass, x *ts.Tensor) (*ts.Tensor, error)) {
	st := &b.m.stages[len(b.m.stages)-1]
	st.end, st.run = len(b.m.sites), run
}

// endLead closes a stage that applies the conv or linear layer named site to the
// stage input itself and then only post (normalisation, activation, pooling,
// flattening: no further site). Such a stage can be started right after its lead
// layer (Model.RunAfterLead).
func (b *builder) endLead(site string, post func(r *pass, y *ts.Tensor) (*ts.Tensor, error)) {
	st := &b.m.stages[len(b.m.stages)-1]
	st.lead, st.post = site, post
	b.end(func(r *pass, x *ts.Tensor) (*ts.Tensor, error) {
		y, err := r.layer(site, x)
		if err != nil {
			return nil, err
		}
		return post(r, y)
	})
}

func (b *builder) addSite(s Site) *Site {
	s.Index = len(b.m.sites)
	b.m.sites = append(b.m.sites, s)
	return &b.m.sites[len(b.m.sites)-1]
}

// conv adds a k x k convolution with out channels.
func (b *builder) conv(name string, out, k, stride, pad int64, bias bool) *conv {
	if len(b.shape) != 3 {
		b.fail("model: conv %s needs a [C,H,W] input, have %v", name, b.shape)
		return nil
	}
	c, h, w := b.shape[0], b.shape[1], b.shape[2]
	oh, ow := (h+2*pad-k)/stride+1, (w+2*pad-k)/stride+1
	if oh < 1 || ow < 1 {
		b.fail("model: conv %s: input %dx%d too small for kernel %d", name, h, w, k)
		return nil
	}
	fanIn := c * k * k
	l := &conv{stride: []int64{stride, stride}, pad: []int64{pad, pad}, dilation: []int64{1, 1}, groups: 1}
	l.w = b.param(name, "weight", []int64{out, c, k, k}, uniformInit(fanIn), true)
	if bias {
		l.b = b.param(name, "bias", []int64{out}, uniformInit(fanIn), true)
	} else {
		l.b = ts.NewTensor()
	}
	l.site = b.addSite(Site{Name: name, Kind: Conv, WeightShape: []int64{out, c, k, k}, HasBias: bias,
		InShape: []int64{c, h, w}, OutShape: []int64{out, oh, ow}, Stride: stride, Padding: pad, Groups: 1})
	b.shape = []int64{out, oh, ow}
	b.m.convs[name] = l
	return l
}

// linear adds a fully connected layer with out units (the input must be flat).
func (b *builder) linear(name string, out int64) *linear {
	if len(b.shape) != 1 {
		b.fail("model: linear %s needs a flat input, have %v", name, b.shape)
		return nil
	}
	in := b.shape[0]
	l := &linear{}
	l.w = b.param(name, "weight", []int64{out, in}, uniformInit(in), true)
	l.b = b.param(name, "bias", []int64{out}, uniformInit(in), true)
	l.site = b.addSite(Site{Name: name, Kind: Linear, WeightShape: []int64{out, in}, HasBias: true,
		InShape: []int64{in}, OutShape: []int64{out}})
	b.shape = []int64{out}
	b.m.fcs[name] = l
	return l
}

// batchNorm adds a BatchNorm2d over the current channels.
func (b *builder) batchNorm(name string) *batchNorm {
	c := b.shape[0]
	return &batchNorm{
		w:    b.param(name, "weight", []int64{c}, nn.NewConstInit(1), true),
		b:    b.param(name, "bias", []int64{c}, nn.NewConstInit(0), true),
		mean: b.param(name, "running_mean", []int64{c}, nil, false),
		vr:   b.param(name, "running_var", []int64{c}, nil, false),
	}
}

// pool records a k x k max pool (stride k) on the shape.
func (b *builder) pool(k int64) {
	if len(b.shape) != 3 || b.shape[1] < k || b.shape[2] < k {
		b.fail("model: max pool %d on shape %v", k, b.shape)
		return
	}
	b.shape = []int64{b.shape[0], b.shape[1] / k, b.shape[2] / k}
}

// flatten records the flattening of [C,H,W] into [C*H*W].
func (b *builder) flatten() {
	n := int64(1)
	for _, d := range b.shape {
		n *= d
	}
	b.shape = []int64{n}
}

// globalPool records an adaptive average pool to 1x1 followed by a flatten.
func (b *builder) globalPool() { b.shape = []int64{b.shape[0]} }

// --- forward-pass operations. Each consumes (drops) its input tensor. ---

// site calls the hook at s and returns the output to continue with, clamped
// when the model restricts the site's range: the hook sees the raw output, and
// what it returns (a fault, a delta) goes through the clamp like the golden
// output would.
func (r *pass) site(s *Site, in, out *ts.Tensor) (*ts.Tensor, error) {
	if r.hook != nil {
		rep, err := r.hook(s, in, out)
		if err != nil {
			_ = out.Drop()
			return nil, fmt.Errorf("hook at %s: %w", s.Name, err)
		}
		if rep != nil && rep != out {
			_ = out.Drop()
			out = rep
		}
	}
	return r.m.clampOutput(s.Name, out)
}

func (r *pass) conv(l *conv, x *ts.Tensor) (*ts.Tensor, error) {
	defer x.Drop()
	w, done, err := r.m.weightFor(l.site.Name, l.w)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", l.site.Name, err)
	}
	defer done()
	y, err := ts.Conv2d(x, w, l.b, l.stride, l.pad, l.dilation, l.groups)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", l.site.Name, err)
	}
	return r.site(l.site, x, y)
}

func (r *pass) linear(l *linear, x *ts.Tensor) (*ts.Tensor, error) {
	defer x.Drop()
	w, done, err := r.m.weightFor(l.site.Name, l.w)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", l.site.Name, err)
	}
	defer done()
	y, err := ts.Linear(x, w, l.b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", l.site.Name, err)
	}
	return r.site(l.site, x, y)
}

// layer runs the conv or linear layer named site.
func (r *pass) layer(site string, x *ts.Tensor) (*ts.Tensor, error) {
	if l, ok := r.m.convs[site]; ok {
		return r.conv(l, x)
	}
	if l, ok := r.m.fcs[site]; ok {
		return r.linear(l, x)
	}
	_ = x.Drop()
	return nil, fmt.Errorf("model: %s has no layer %q (sites: %v)", r.m.spec.Arch, site, r.m.SiteNames())
}

func (r *pass) batchNorm(l *batchNorm, x *ts.Tensor) (*ts.Tensor, error) {
	defer x.Drop()
	return ts.BatchNorm(x, l.w, l.b, l.mean, l.vr, r.train, 0.1, 1e-5, false)
}

func relu(x *ts.Tensor, err error) (*ts.Tensor, error) {
	if err != nil {
		return nil, err
	}
	return x.Relu(true)
}

// relu is relu, in place when the pass owns its tensors (no hook can hold them
// and no gradient is recorded), which saves an allocation per call.
func (r *pass) relu(x *ts.Tensor, err error) (*ts.Tensor, error) {
	if err != nil || !r.inPlace {
		return relu(x, err)
	}
	if err := x.Relu_(); err != nil {
		_ = x.Drop()
		return nil, err
	}
	return x, nil
}

// pool2 is a 2x2 max pool with stride 2.
func pool2(x *ts.Tensor, err error) (*ts.Tensor, error) {
	if err != nil {
		return nil, err
	}
	return x.MaxPool2d([]int64{2, 2}, []int64{2, 2}, []int64{0, 0}, []int64{1, 1}, false, true)
}

func flatten(x *ts.Tensor, err error) (*ts.Tensor, error) {
	if err != nil {
		return nil, err
	}
	return x.Flatten(1, -1, true)
}

func globalPool(x *ts.Tensor, err error) (*ts.Tensor, error) {
	if err != nil {
		return nil, err
	}
	y, err := x.AdaptiveAvgPool2d([]int64{1, 1}, true)
	return flatten(y, err)
}

// add returns a + b and drops both.
func add(a, b *ts.Tensor) (*ts.Tensor, error) {
	defer b.Drop()
	return a.Add(b, true)
}
