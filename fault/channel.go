package fault

import (
	"fmt"
	"math"

	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// A weight or bias fault at a stage's lead layer changes one output channel (one
// neuron of a linear layer). When the rest of the stage keeps channels apart
// (normalisation, activation, pooling, flattening) and the next stage has a lead
// layer, the fault changes one block of that layer's input, and the layer's
// output changes by that block's delta times the weights that read it. When that
// layer is a convolution, batched weight injection computes this as a
// one-input-channel convolution instead of the whole layer (a large share of the
// suffix for deep VGG-11 layers: features.18 is 80% of the MACs after
// features.15). Like the shortcuts in lead.go it is exact up to float rounding.

// channelLocal reports whether channel c of stage st's lead output reaches only
// block c of stage st+1's input (its c-th share, in order) and stage st+1's lead
// layer reads that block as one input channel (a one-group conv) or as a slice
// of its input (linear). It is probed once per injector, as footprint is.
func (inj *Injector) channelLocal(st int) (bool, error) {
	if ok, seen := inj.local[st]; seen {
		return ok, nil
	}
	ok, err := inj.probeChannels(st)
	if err != nil {
		return false, fmt.Errorf("fault: channels of %s: %w", inj.m.Lead(st), err)
	}
	if inj.local == nil {
		inj.local = map[int]bool{}
	}
	inj.local[st] = ok
	return ok, nil
}

// channelConv reports whether weight faults at stage st's lead layer take the
// one-channel shortcut: channelLocal holds and stage st+1's lead is a conv.
func (inj *Injector) channelConv(st int) (bool, error) {
	local, err := inj.channelLocal(st)
	if err != nil || !local {
		return false, err
	}
	return inj.sites[inj.m.Lead(st+1)].Kind == model.Conv, nil
}

// probeChannels runs the rest of stage st on zero outputs where sample c carries
// NaN, +1e30 or -1e30 in all of channel c, and checks where stage st+1's input
// differs from the all-zero output's.
func (inj *Injector) probeChannels(st int) (bool, error) {
	if inj.m.Lead(st) == "" || st+1 >= inj.m.NumStages() || inj.m.Lead(st+1) == "" {
		return false, nil
	}
	s, next := inj.sites[inj.m.Lead(st)], inj.sites[inj.m.Lead(st+1)]
	c := s.OutShape[0]
	nextPer := model.Numel(inj.m.StageInShape(st + 1))
	if nextPer%c != 0 {
		return false, nil
	}
	if CheckSite(&next) != nil {
		return false, nil
	}
	switch next.Kind {
	case model.Conv:
		if next.InShape[0] != c || next.Groups > 1 {
			return false, nil
		}
	case model.Linear:
	default:
		return false, nil
	}
	block, per := nextPer/c, model.Numel(s.OutShape)
	plane := per / c
	dev := inj.m.Device()
	zero, err := ts.Zeros(append([]int64{1}, s.OutShape...), gotch.Float, dev)
	if err != nil {
		return false, err
	}
	base, err := inj.m.RunAfterLead(st, zero, st+1, false, nil)
	zero.Drop()
	if err != nil {
		return false, err
	}
	defer base.Drop()
	idx := make([]int64, 0, c*plane)
	for k := range c {
		for j := range plane {
			idx = append(idx, k*per+k*plane+j)
		}
	}
	for _, v := range []float32{float32(math.NaN()), 1e30, -1e30} {
		t, err := ts.Zeros(append([]int64{c}, s.OutShape...), gotch.Float, dev)
		if err != nil {
			return false, err
		}
		vals := make([]float32, len(idx))
		for i := range vals {
			vals[i] = v
		}
		err = put(t, idx, vals, false)
		var y *ts.Tensor
		if err == nil {
			y, err = inj.m.RunAfterLead(st, t, st+1, false, nil)
		}
		t.Drop()
		if err != nil {
			return false, err
		}
		ne, err := y.NeTensor(base, true)
		if err != nil {
			return false, err
		}
		if ne, err = ne.Reshape([]int64{c, -1}, true); err != nil {
			return false, err
		}
		nz, err := ne.Nonzero(true)
		if err != nil {
			return false, err
		}
		pos, err := torch.Int64s(nz)
		nz.Drop()
		if err != nil {
			return false, err
		}
		for k := 0; k+1 < len(pos); k += 2 {
			if pos[k+1]/block != pos[k] {
				return false, nil
			}
		}
	}
	return true, nil
}

// channelOf is the output channel (neuron) a weight or bias fault changes.
func channelOf(s *model.Site, f *Fault) int64 {
	if f.Param == "bias" {
		return f.Index[0]
	}
	return f.Index[0] / model.Numel(s.WeightShape[1:])
}

// maxChannels is the most distinct faulty channels a batch may hold for the
// one-channel shortcut: each takes its own small convolution.
const maxChannels = 8

// channelDelta finishes a batch of weight faults at stage st's lead layer s (out:
// the faulty outputs, sample n on image idx[n]; channelConv(st) holds): the rest
// of stage st gives each sample's delta in its fault's channel of stage st+1's
// input, and that channel's delta convolved with the weights that read it is
// added to the golden output of stage st+1's lead layer. It returns the logits, or nil when the batch holds more than
// maxChannels channels (the caller then runs the whole suffix).
func (inj *Injector) channelDelta(ev *EvalSet, st int, s *model.Site, sf []*Fault, idx, out *ts.Tensor) ([]float32, error) {
	s2 := inj.sites[inj.m.Lead(st+1)]
	rows := map[int64][]int64{} // channel -> samples
	var chs []int64
	for n, f := range sf {
		c := channelOf(s, f)
		if rows[c] == nil {
			chs = append(chs, c)
		}
		rows[c] = append(rows[c], int64(n))
	}
	if len(chs) > maxChannels {
		return nil, nil
	}
	d, err := inj.m.RunAfterLead(st, out, st+1, false, nil)
	if err != nil {
		return nil, err
	}
	defer d.Drop()
	next, err := inj.prefix(ev, st+1)
	if err != nil {
		return nil, err
	}
	g, err := next.IndexSelect(0, idx, false)
	if err != nil {
		return nil, err
	}
	err = d.Sub_(g)
	g.Drop()
	if err != nil {
		return nil, err
	}
	gold2, err := inj.leadOut(ev, st+1)
	if err != nil {
		return nil, err
	}
	out2, err := gold2.IndexSelect(0, idx, false)
	if err != nil {
		return nil, err
	}
	defer out2.Drop()
	dev := inj.m.Device()
	o2, cin, kh, kw := s2.WeightShape[0], s2.WeightShape[1], s2.WeightShape[2], s2.WeightShape[3]
	host := inj.wts[s2.Name]
	g2, err := GeometryOf(&s2)
	if err != nil {
		return nil, err
	}
	// libtorch pads symmetrically; asymmetric pads are added to the input
	symmetric := g2.PT == g2.PB && g2.PL == g2.PR
	pad := []int64{g2.PT, g2.PL}
	if !symmetric {
		pad = []int64{0, 0}
	}
	none := ts.NewTensor() // no bias
	defer none.Drop()
	for _, c := range chs {
		// channel c of every sample whose fault is in channel c, and the weights
		// of s2 that read channel c
		err := func() error {
			var drop []*ts.Tensor
			defer func() {
				for _, t := range drop {
					t.Drop()
				}
			}()
			keep := func(t *ts.Tensor, err error) (*ts.Tensor, error) {
				if err == nil {
					drop = append(drop, t)
				}
				return t, err
			}
			r, err := keep(torch.FromInt64(rows[c], []int64{int64(len(rows[c]))}, dev))
			if err != nil {
				return err
			}
			dc, err := keep(d.Narrow(1, c, 1, false))
			if err != nil {
				return err
			}
			x, err := keep(dc.IndexSelect(0, r, false))
			if err != nil {
				return err
			}
			wv := make([]float32, 0, o2*kh*kw)
			for o := range o2 {
				base := (o*cin + c) * kh * kw
				wv = append(wv, host[base:base+kh*kw]...)
			}
			w, err := keep(torch.FromFloat32(wv, []int64{o2, 1, kh, kw}, dev))
			if err != nil {
				return err
			}
			if !symmetric {
				if x, err = keep(x.ConstantPadNd([]int64{g2.PL, g2.PR, g2.PT, g2.PB}, false)); err != nil {
					return err
				}
			}
			y, err := keep(ts.Conv2d(x, w, none, []int64{g2.SH, g2.SW}, pad, []int64{g2.DH, g2.DW}, 1))
			if err != nil {
				return err
			}
			if len(chs) == 1 {
				return out2.Add_(y)
			}
			return out2.IndexAdd_(0, r, y)
		}()
		if err != nil {
			return nil, err
		}
	}
	inj.viaChannel += int64(len(sf))
	return inj.logitsAfterLead(st+1, out2)
}
