package train

import (
	"fmt"
	"math"

	"github.com/faultline/faultline/configs"
	"github.com/faultline/faultline/datasets"
	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// Data is a training and a test set with the normalisation the model uses.
type Data struct {
	Name  string
	Train *datasets.Set
	Test  *datasets.Set
	Stats datasets.Stats
}

// LoadData loads the data set named in c, honouring its limits. The normalisation
// is the data set's known statistics, else computed from the training set.
func LoadData(c configs.DataConfig) (*Data, error) {
	tr, err := datasets.Load(c.Dataset, c.Dir, datasets.Train)
	if err != nil {
		return nil, err
	}
	te, err := datasets.Load(c.Dataset, c.Dir, datasets.Test)
	if err != nil {
		return nil, err
	}
	if c.TrainLimit > 0 && c.TrainLimit < tr.Len() {
		if tr, err = tr.Head(c.TrainLimit); err != nil {
			return nil, err
		}
	}
	if c.TestLimit > 0 && c.TestLimit < te.Len() {
		if te, err = te.Head(c.TestLimit); err != nil {
			return nil, err
		}
	}
	stats, ok := datasets.KnownStats(c.Dataset)
	if !ok {
		stats = datasets.ComputeStats(tr)
	}
	return &Data{Name: c.Dataset, Train: tr, Test: te, Stats: stats}, nil
}

// SpecFor is the model spec for a model config and the data's image shape.
func SpecFor(c configs.ModelConfig, set *datasets.Set) model.Spec {
	return model.Spec{Arch: c.Arch, InChannels: int64(set.C), Height: int64(set.H), Width: int64(set.W),
		Classes: int64(set.Classes), WidthMult: c.Width, Hidden: c.Hidden, BatchNorm: c.BatchNorm}
}

// Evaluate returns m's top-1 accuracy on set (a fraction in [0,1]) in eval mode
// without gradients, optionally with a forward hook.
func Evaluate(m *model.Model, set *datasets.Set, stats datasets.Stats, batch int, dev gotch.Device, hook model.Hook) (float64, error) {
	return evaluate(m, set, stats, batch, dev, hook, nil)
}

// EvaluateLogits is Evaluate without a hook that also returns m's logits on
// every image of set, in set order: row-major [set.Len(), classes] float32, as
// the forward pass computed them. The accuracy is Evaluate's.
func EvaluateLogits(m *model.Model, set *datasets.Set, stats datasets.Stats, batch int, dev gotch.Device) (acc float64, logits []float32, classes int, err error) {
	classes = int(m.Spec().Classes)
	logits = make([]float32, 0, set.Len()*classes)
	acc, err = evaluate(m, set, stats, batch, dev, nil, func(out *ts.Tensor) error {
		shape, err := torch.Shape(out)
		if err != nil {
			return err
		}
		if len(shape) != 2 || shape[1] != int64(classes) {
			return fmt.Errorf("train: evaluate: logits of shape %v, want [N %d]", shape, classes)
		}
		v, err := torch.Float32s(out)
		if err != nil {
			return fmt.Errorf("train: evaluate: logits: %w", err)
		}
		logits = append(logits, v...)
		return nil
	})
	if err != nil {
		return 0, nil, 0, err
	}
	return acc, logits, classes, nil
}

// evaluate is Evaluate, handing every batch's logits to keep when set.
func evaluate(m *model.Model, set *datasets.Set, stats datasets.Stats, batch int, dev gotch.Device, hook model.Hook, keep func(*ts.Tensor) error) (float64, error) {
	if set.Len() == 0 {
		return 0, fmt.Errorf("train: evaluate: empty data set")
	}
	if int64(set.C) != m.Spec().InChannels || int64(set.H) != m.Spec().Height || int64(set.W) != m.Spec().Width {
		return 0, fmt.Errorf("train: evaluate: %s images are %dx%dx%d, the model takes %dx%dx%d", set.Name,
			set.C, set.H, set.W, m.Spec().InChannels, m.Spec().Height, m.Spec().Width)
	}
	loader, err := datasets.NewLoader(set, datasets.LoaderOptions{BatchSize: batch, Stats: stats})
	if err != nil {
		return 0, err
	}
	var correct int64
	err = torch.Do(func() error {
		return torch.NoGrad(func() error {
			it := loader.Epoch(0)
			for {
				b, ok := it.Next()
				if !ok {
					return nil
				}
				n, err := evalBatch(m, b, dev, hook, keep)
				if err != nil {
					return err
				}
				correct += n
			}
		})
	})
	if err != nil {
		return 0, err
	}
	return float64(correct) / float64(set.Len()), nil
}

func evalBatch(m *model.Model, b *datasets.Batch, dev gotch.Device, hook model.Hook, keep func(*ts.Tensor) error) (int64, error) {
	var s torch.Scope
	defer s.Drop()
	x, y, err := b.Tensors(dev)
	if err != nil {
		return 0, err
	}
	s.Keep(x)
	s.Keep(y)
	logits, err := s.KeepErr(m.Forward(x, false, hook))
	if err != nil {
		return 0, err
	}
	if keep != nil {
		if err := keep(logits); err != nil {
			return 0, err
		}
	}
	return countCorrect(logits, y)
}

// snapshot is a copy of every parameter and buffer (for best-epoch keeping).
type snapshot struct{ tensors []*ts.Tensor }

func snapshotOf(m *model.Model) (*snapshot, error) {
	s := &snapshot{}
	err := torch.NoGrad(func() error {
		for _, p := range m.Params() {
			c, err := p.Tensor.DetachCopy(false)
			if err != nil {
				return err
			}
			s.tensors = append(s.tensors, c)
		}
		return nil
	})
	if err != nil {
		s.drop()
		return nil, err
	}
	return s, nil
}

func (s *snapshot) restore(m *model.Model) error {
	return torch.NoGrad(func() error {
		for i, p := range m.Params() {
			if err := p.Tensor.CopyFrom(s.tensors[i]); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *snapshot) drop() {
	for _, t := range s.tensors {
		_ = t.Drop()
	}
	s.tensors = nil
}

// LogitsAgreement compares another runtime's logits for the same images with
// faultline's (LogitsAgree).
type LogitsAgreement struct {
	Images int `json:"images"`
	// SameTop1 counts the images on which both give the same top-1 class
	// (model.Top1).
	SameTop1         int     `json:"same_top1"`
	SameTop1Fraction float64 `json:"same_top1_fraction"`
	// Accuracy is the other runtime's top-1 accuracy on the labels, and
	// AccuracyDiff its difference with faultline's (theirs - ours).
	Accuracy     float64 `json:"accuracy"`
	AccuracyDiff float64 `json:"accuracy_diff"`
	// MaxAbsDiff is the largest |ours - theirs| over every logit, and
	// MaxAbsLogit the largest |ours|, its scale.
	MaxAbsDiff  float64 `json:"max_abs_diff"`
	MaxAbsLogit float64 `json:"max_abs_logit"`
}

// LogitsAgree compares theirs (another runtime's logits, [images, classes]
// row-major) with ours for the same images, whose labels are given.
func LogitsAgree(ours, theirs []float32, classes int, labels []uint8) (LogitsAgreement, error) {
	n := len(labels)
	if classes <= 0 || len(ours) != n*classes {
		return LogitsAgreement{}, fmt.Errorf("train: logits: %d values for %d images of %d classes", len(ours), n, classes)
	}
	if len(theirs) != len(ours) {
		return LogitsAgreement{}, fmt.Errorf("train: logits: %d values to compare, want %d (%d images x %d classes)", len(theirs), len(ours), n, classes)
	}
	r := LogitsAgreement{Images: n}
	var mine, good int
	for i := 0; i < n; i++ {
		a, b := ours[i*classes:(i+1)*classes], theirs[i*classes:(i+1)*classes]
		ta, tb := model.Top1(a), model.Top1(b)
		if ta == tb {
			r.SameTop1++
		}
		if tb == int(labels[i]) {
			good++
		}
		if ta == int(labels[i]) {
			mine++
		}
		for k := range a {
			r.MaxAbsDiff = math.Max(r.MaxAbsDiff, math.Abs(float64(a[k])-float64(b[k])))
			r.MaxAbsLogit = math.Max(r.MaxAbsLogit, math.Abs(float64(a[k])))
		}
	}
	if n > 0 {
		r.SameTop1Fraction = float64(r.SameTop1) / float64(n)
		r.Accuracy = float64(good) / float64(n)
		r.AccuracyDiff = float64(good-mine) / float64(n)
	}
	return r, nil
}
