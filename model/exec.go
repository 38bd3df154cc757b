package model

import (
	"fmt"
	"slices"

	"github.com/sugarme/gotch/ts"
)

// program is a compiled graph: one step per node, in topological order, over
// numbered value slots (the values computed from the network input; constants
// are bound into the steps).
type program struct {
	steps  []step
	input  int       // slot of the network input
	output int       // slot of the network output
	names  []string  // value name of each slot
	shapes [][]int64 // shape of each slot's value (batch -1)
	defs   []int     // step computing each slot (-1 for the input)
	last   []int     // last step reading each slot (len(steps) for the output, -1 if none)
}

// arg is one input of a step: a computed value (slot >= 0), or a constant
// tensor (a parameter or buffer) or an omitted input (t nil) when slot < 0.
type arg struct {
	slot int
	t    *ts.Tensor
}

// step is a compiled node.
type step struct {
	node    int    // index in the graph's nodes
	ref     string // the node, for messages
	op      string
	args    []arg
	outs    []int // slots of the outputs (-1 for an omitted one)
	run     opFunc
	alias   bool  // outputs may share memory with args[0]
	inPlace bool  // run can overwrite args[0]
	dead    []int // slots whose last reader (or, unread, whose producer) this is
	site    int   // index in Model.sites, -1 if the node is no site
	// selfContained says every input but the first is constant, so the
	// node runs alone on its input (Model.RunLayer).
	selfContained bool
}

// stage is a run of steps that the forward pass can start from: it begins at a
// cut of the graph (one computed value live) just before a site.
type stage struct {
	in          []int64 // per-sample input shape
	first, end  int     // the stage's sites are sites[first:end]
	start, stop int     // its steps are steps[start:stop]
	inSlot      int     // the value it starts from
	outSlot     int     // the value it ends with (the next stage's input, or the output)
	// lead is the site of the stage's first step when that step reads the stage
	// input, is the stage's only site, and its output is then the only live
	// value (Model.RunAfterLead starts after it).
	lead string
}

// live returns the slots live at position p (before step p runs): computed
// before p and read at p or later.
func (p *program) live(at int) []int {
	var out []int
	for s := range p.names {
		if p.defs[s] < at && p.last[s] >= at {
			out = append(out, s)
		}
	}
	return out
}

// stages cuts the program into stages: a stage starts at the network input and
// at every site step where exactly one computed value is live, unless the
// current stage holds no site yet. Sites are in step order.
func (p *program) stages(sites []Site) []stage {
	starts := []int{0}
	has := false
	for i := range p.steps {
		if p.steps[i].site < 0 {
			continue
		}
		if has && len(p.live(i)) == 1 {
			starts = append(starts, i)
		}
		has = true
	}
	var out []stage
	for k, start := range starts {
		st := stage{start: start, stop: len(p.steps), inSlot: p.input, outSlot: p.output}
		if k > 0 {
			st.inSlot = p.live(start)[0]
		}
		if k+1 < len(starts) {
			st.stop = starts[k+1]
			st.outSlot = p.live(st.stop)[0]
		}
		st.first = len(sites)
		for i := start; i < st.stop; i++ {
			if s := p.steps[i].site; s >= 0 {
				st.first, st.end = min(st.first, s), s+1
			}
		}
		if st.end == 0 {
			st.first = 0
		}
		st.in = perSample(p.shapes[st.inSlot])
		if start == len(p.steps) { // a graph without nodes
			out = append(out, st)
			continue
		}
		first := &p.steps[start]
		if first.site >= 0 && st.end-st.first == 1 && first.selfContained && first.args[0].slot == st.inSlot &&
			len(first.outs) == 1 && slices.Equal(p.live(start+1), []int{first.outs[0]}) {
			st.lead = sites[first.site].Name
		}
		out = append(out, st)
	}
	return out
}

// run executes steps [from, to) with slot in holding x, which run owns (it is
// dropped once read for the last time) and may overwrite when own is set, and
// returns the value of slot out (x itself when from == to).
func (r *pass) run(from, to, in int, x *ts.Tensor, own bool, out int) (res *ts.Tensor, err error) {
	p := r.m.prog
	vals := make([]*ts.Tensor, len(p.names))
	owned := make([]bool, len(p.names))
	vals[in], owned[in] = x, own
	defer func() {
		for _, v := range vals {
			if v != nil {
				_ = v.Drop()
			}
		}
	}()
	args := make([]*ts.Tensor, 0, 8)
	for i := from; i < to; i++ {
		st := &p.steps[i]
		args = args[:0]
		for _, a := range st.args {
			if a.slot < 0 {
				args = append(args, a.t)
				continue
			}
			if vals[a.slot] == nil {
				return nil, fmt.Errorf("%s: input %q is not computed in this part of the network", st.ref, p.names[a.slot])
			}
			args = append(args, vals[a.slot])
		}
		s0 := st.args[0].slot
		// The first input may be overwritten when nothing else reads it: the
		// pass owns it, this is its last reader, and it is not read twice here.
		mine := s0 >= 0 && owned[s0] && p.last[s0] == i && slices.IndexFunc(st.args[1:], func(a arg) bool { return a.slot == s0 }) < 0
		outs, err := r.step(st, args, r.inPlace && st.inPlace && mine)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", st.ref, err)
		}
		for k, o := range st.outs {
			if o < 0 {
				if k < len(outs) && outs[k] != nil {
					_ = outs[k].Drop()
				}
				continue
			}
			if k >= len(outs) || outs[k] == nil {
				return nil, fmt.Errorf("%s: output %d not computed", st.ref, k)
			}
			vals[o], owned[o] = outs[k], !st.alias || mine
		}
		for _, d := range st.dead {
			t := vals[d]
			if t == nil {
				continue
			}
			// An output nobody reads is dropped; an input read for the last
			// time too, unless the step returned it (worked in place).
			if p.last[d] < 0 || !slices.Contains(outs, t) {
				_ = t.Drop()
			}
			vals[d] = nil
		}
	}
	res = vals[out]
	if res == nil {
		return nil, fmt.Errorf("value %q is not computed in this part of the network", p.names[out])
	}
	vals[out] = nil
	return res, nil
}

// step runs one step. At a site the weight is clamped when the model restricts
// it, and the output goes through the hook and the output clamp.
func (r *pass) step(st *step, in []*ts.Tensor, own bool) ([]*ts.Tensor, error) {
	if st.site < 0 {
		return st.run(r, in, own)
	}
	s := &r.m.sites[st.site]
	w, done, err := r.m.weightFor(s.Name, in[1])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.Name, err)
	}
	x := in[0]
	in[1] = w
	outs, err := st.run(r, in, false)
	done()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.Name, err)
	}
	y, err := r.site(s, x, outs[0])
	if err != nil {
		return nil, err
	}
	outs[0] = y
	return outs, nil
}

// site calls the hook at s and returns the output to continue with, clamped
// when the model restricts the site's range: the hook sees the raw output, and
// what it returns (a fault, a delta) goes through the clamp like the golden
// output would. It consumes out.
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
