package fault

import (
	"fmt"
	"math"
	"sort"

	"github.com/faultline/faultline/model"
)

// Target is what a fault corrupts.
type Target string

// Targets.
const (
	Weight     Target = "weight"     // an element of a parameter (weight or bias)
	Activation Target = "activation" // an element of a layer's input or output, or a MAC operand
)

// Point is where in a layer an activation fault lands.
type Point string

// Activation points.
const (
	// Output is a stored output value of a conv or linear layer (before BatchNorm
	// and the activation function): every later reader sees the error.
	Output Point = "output"
	// Input is a stored input value of a conv or linear layer: every neuron of the
	// layer that reads it sees the error.
	Input Point = "input"
	// MAC is one input operand of one output neuron's multiply-accumulate: only
	// that neuron changes, by (x' - x) * w (DeepVigor+'s fault model).
	MAC Point = "mac"
)

// Kind is what a fault does to the value's bits.
type Kind string

// Fault kinds.
const (
	BitFlip     Kind = "bitflip" // invert Bits (one bit, or several distinct bits)
	StuckAt0    Kind = "stuck0"  // force Bits to 0
	StuckAt1    Kind = "stuck1"  // force Bits to 1
	RandomValue Kind = "random"  // replace the value by Value (drawn when sampled)
	Zero        Kind = "zero"    // replace the value by +0
)

// DType is the number format of the faulty value. Only float32 exists today;
// quantised int8 sites will add a DType, and Corrupt dispatches on it.
type DType string

// Data types.
const Float32 DType = "float32"

// Duration says how long a fault stays.
type Duration string

// Durations.
const (
	Transient Duration = "transient" // one inference
	Permanent Duration = "permanent" // until removed (weights only)
)

// Fault is one fault: where it lands and what it does. It is one line of a fault
// list (JSONL), with its Outcome after a run.
type Fault struct {
	ID     int64  `json:"id"`
	Target Target `json:"target"`
	// Layer is the site (conv or linear layer) name, e.g. "conv1", "layer2.0.conv1".
	Layer string `json:"layer"`
	// Param is the parameter of a weight fault: "weight" or "bias".
	Param string `json:"param,omitempty"`
	// Point is where an activation fault lands (default Output).
	Point Point `json:"point,omitempty"`
	// Index locates the value: for a weight fault, the flat (row-major) index into
	// the parameter in the layer's WeightShape order (for a linear layer whose
	// parameter is stored [in, out], model.Site.TransposedWeight, the index is
	// still into [out, in]); for an activation fault, the per-sample coordinates (c,h,w) of
	// a conv map or (j) of a linear layer, at the layer's output (Output, MAC) or
	// input (Input).
	Index []int64 `json:"index"`
	// Operand, for a MAC fault, is the faulty input operand of the neuron at Index:
	// (ci,kh,kw) within a conv kernel window (a zero-padding position reads 0), or
	// (j) for a linear layer.
	Operand []int64 `json:"operand,omitempty"`
	Kind    Kind    `json:"kind"`
	Bits    []int   `json:"bits,omitempty"`
	// Value is the replacement of a RandomValue fault.
	Value    *Value   `json:"value,omitempty"`
	DType    DType    `json:"dtype"`
	Duration Duration `json:"duration"`
	// Images is the range [first, first+count) of evaluation images the fault runs
	// on; empty means all of them.
	Images []int64 `json:"images,omitempty"`
	// Outcome is filled in by a run.
	Outcome *Outcome `json:"outcome,omitempty"`
}

// Corrupt returns the faulty version of v.
func (f *Fault) Corrupt(v float32) float32 {
	switch f.Kind {
	case BitFlip:
		return FlipBits(v, f.Bits...)
	case StuckAt0, StuckAt1:
		for _, b := range f.Bits {
			v = SetBit(v, b, f.Kind == StuckAt1)
		}
		return v
	case RandomValue:
		if f.Value != nil {
			return float32(*f.Value)
		}
	case Zero:
		return 0
	}
	return v
}

// Inactive reports whether the fault leaves stored value v bit for bit as it
// was: a stuck-at fault whose forced bits all hold their forced value already
// (stuck-at-0 on a 0 bit, stuck-at-1 on a 1 bit; a multi-bit stuck-at fault that
// changes any of its bits is active), a zero fault on +0, or a random value
// equal to v. Such a fault changes nothing, so its outcome is neither masked nor
// critical: it is inactive. A bit flip is never inactive. For a weight fault v
// is the stored weight; for an activation fault, the golden value on one image.
func (f *Fault) Inactive(v float32) bool { return unchanged(v, f.Corrupt(v)) }

// unchanged reports whether a fault turned before into after without changing a
// bit (NaN payloads and the sign of zero count).
func unchanged(before, after float32) bool { return BitsOf(before) == BitsOf(after) }

// alwaysActive reports whether every fault of kind k changes the value it hits
// (bit flips), so that none of its outcomes can be inactive.
func (k Kind) alwaysActive() bool { return k == BitFlip }

// ParamName is the state_dict name of a weight fault's parameter in a layer
// named PyTorch-style (the zoo); an imported layer may name its parameters
// otherwise (model.Site.Weight and Bias give the names).
func (f *Fault) ParamName() string { return f.Layer + "." + f.Param }

// Validate checks the fault on its own (not against a model: see Injector).
func (f *Fault) Validate() error {
	if f.DType == "" {
		f.DType = Float32
	}
	if f.DType != Float32 {
		return fmt.Errorf("dtype %q: only float32 is supported", f.DType)
	}
	if f.Duration == "" {
		f.Duration = Transient
	}
	if f.Duration != Transient && f.Duration != Permanent {
		return fmt.Errorf("duration %q: want transient or permanent", f.Duration)
	}
	if f.Layer == "" {
		return fmt.Errorf("no layer")
	}
	switch f.Target {
	case Weight:
		if f.Param != "weight" && f.Param != "bias" {
			return fmt.Errorf("param %q: want weight or bias", f.Param)
		}
		if f.Point != "" || f.Operand != nil {
			return fmt.Errorf("a weight fault has no point or operand")
		}
		if len(f.Index) != 1 {
			return fmt.Errorf("weight index %v: want one flat index", f.Index)
		}
	case Activation:
		if f.Param != "" {
			return fmt.Errorf("an activation fault has no param")
		}
		if f.Point == "" {
			f.Point = Output
		}
		switch f.Point {
		case Output, Input:
			if f.Operand != nil {
				return fmt.Errorf("only a mac fault has an operand")
			}
		case MAC:
			if len(f.Operand) == 0 {
				return fmt.Errorf("a mac fault needs an operand")
			}
		default:
			return fmt.Errorf("point %q: want output, input or mac", f.Point)
		}
		if f.Duration == Permanent {
			return fmt.Errorf("activation faults are transient")
		}
		if len(f.Index) == 0 {
			return fmt.Errorf("no activation index")
		}
	default:
		return fmt.Errorf("target %q: want weight or activation", f.Target)
	}
	switch f.Kind {
	case BitFlip, StuckAt0, StuckAt1:
		if len(f.Bits) == 0 {
			return fmt.Errorf("kind %s needs bits", f.Kind)
		}
		seen := map[int]bool{}
		for _, b := range f.Bits {
			if b < 0 || b >= Float32Bits {
				return fmt.Errorf("bit %d outside 0..31", b)
			}
			if seen[b] {
				return fmt.Errorf("bit %d given twice", b)
			}
			seen[b] = true
		}
	case RandomValue:
		if f.Value == nil {
			return fmt.Errorf("a random-value fault needs its value")
		}
	case Zero:
		if len(f.Bits) != 0 {
			return fmt.Errorf("kind zero takes no bits")
		}
	default:
		return fmt.Errorf("kind %q: want bitflip, stuck0, stuck1, random or zero", f.Kind)
	}
	for _, i := range append(append([]int64(nil), f.Index...), f.Operand...) {
		if i < 0 {
			return fmt.Errorf("negative index in %v/%v", f.Index, f.Operand)
		}
	}
	if f.Images != nil && (len(f.Images) != 2 || f.Images[0] < 0 || f.Images[1] < 1) {
		return fmt.Errorf("images %v: want [first, count] with count >= 1", f.Images)
	}
	return nil
}

// Outcome is the result of one fault over its images, against the golden run on
// the same images. Every image is counted once among Masked, SDC, DUE and
// Inactive.
type Outcome struct {
	Images int `json:"images"`
	// Masked: the fault changed the value (it was active), yet top-1 equals the
	// golden top-1 and the logits are finite.
	Masked int `json:"masked"`
	// SDC: finite logits whose top-1 differs from the golden top-1.
	SDC int `json:"sdc"`
	// DUE: a non-finite logit (NaN or Inf).
	DUE int `json:"due"`
	// Top5: the golden top-1 class left the top 5.
	Top5 int `json:"top5"`
	// Inactive counts the images on which the fault left the value it hit bit for
	// bit as it was (see [Fault.Inactive]): their prediction is the golden one and
	// they are neither masked, SDC nor DUE. A weight fault is inactive on all of
	// its images or on none; an activation fault depends on each image's golden
	// value. Absent (0) for bit flips, which are never inactive.
	Inactive int `json:"inactive,omitempty"`
	// Misclassified: top-1 differs from the label (golden runs may already do so;
	// an inactive image counts when its golden top-1 does).
	Misclassified int `json:"misclassified"`
	// Margin is the mean, over the active images with finite logits, of the
	// golden class's logit minus the largest other logit (negative: the fault
	// won). It is absent when no active image gave finite logits.
	Margin *float64 `json:"margin,omitempty"`
	// Before and After are the value the fault hit, before and after, with their
	// bit patterns (authoritative); for an activation fault, on its first image.
	Before     Value `json:"before"`
	BeforeBits Bits  `json:"before_bits"`
	After      Value `json:"after"`
	AfterBits  Bits  `json:"after_bits"`
}

// Critical counts the images on which the fault changed the prediction (SDC+DUE).
func (o *Outcome) Critical() int { return o.SDC + o.DUE }

// Active counts the images on which the fault changed the value it hit.
func (o *Outcome) Active() int { return o.Images - o.Inactive }

// record sets Before/After from v and the fault.
func (o *Outcome) record(before, after float32) {
	o.Before, o.BeforeBits = Value(before), BitsOf(before)
	o.After, o.AfterBits = Value(after), BitsOf(after)
}

func finite(v float32) bool { return !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0) }

// classify adds one image's faulty logits to o, against the golden top-1 and the
// label, and appends its margin when the logits are finite.
func classify(o *Outcome, logits []float32, golden, label int, margins *[]float64) {
	o.Images++
	top := model.Top1(logits)
	isFinite := true
	for _, v := range logits {
		isFinite = isFinite && finite(v)
	}
	if !isFinite {
		o.DUE++
		o.Misclassified++
		o.Top5++
		return
	}
	if top != golden {
		o.SDC++
	} else {
		o.Masked++
	}
	if top != label {
		o.Misclassified++
	}
	rank := 0
	best := float32(math.Inf(-1))
	for j, v := range logits {
		if j == golden {
			continue
		}
		if v > logits[golden] || (v == logits[golden] && j < golden) {
			rank++
		}
		if v > best {
			best = v
		}
	}
	if rank >= 5 {
		o.Top5++
	}
	*margins = append(*margins, float64(logits[golden])-float64(best))
}

// classifyInactive adds one image on which the fault was inactive: its
// prediction is the golden one, so it is misclassified when the golden top-1
// misses the label, and it has no margin of its own.
func classifyInactive(o *Outcome, golden, label int) {
	o.Images++
	o.Inactive++
	if golden != label {
		o.Misclassified++
	}
}

// finishMargin sets the mean margin.
func finishMargin(o *Outcome, margins []float64) {
	if len(margins) == 0 {
		o.Margin = nil
		return
	}
	sort.Float64s(margins) // order-independent sum
	s := 0.0
	for _, m := range margins {
		s += m
	}
	m := s / float64(len(margins))
	o.Margin = &m
}
