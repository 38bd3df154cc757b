package graph

import (
	"fmt"
	"slices"
)

// reshape infers a Reshape of a computed value and, when its target is a shape
// vector holding the batch size, replaces the target by a constant (-1 for the
// batch).
func (f *folder) reshape(n *Node) error {
	name := n.Inputs[1]
	target := f.consts[name]
	sym := false
	if target == nil {
		if target = f.syms[name]; target == nil {
			return nil
		}
		sym = true
	}
	vals, err := target.Int64s()
	if err != nil {
		return err
	}
	allowZero, err := n.AttrInt("allowzero", 0)
	if err != nil {
		return err
	}
	x := f.infos[n.Inputs[0]]
	out, err := reshapeDims(x, vals, allowZero != 0)
	if err != nil {
		return err
	}
	if !sym {
		return nil
	}
	resolved := make([]int64, len(out))
	batches := 0
	for i, d := range out {
		switch d {
		case dimUnknown:
			return nil // left to run time
		case dimBatch:
			resolved[i] = -1
			batches++
		default:
			resolved[i] = d
		}
	}
	if batches > 1 {
		return nil
	}
	t, err := FromInt64s("", []int64{int64(len(resolved))}, resolved)
	if err != nil {
		return err
	}
	fresh := f.fresh(name)
	f.consts[fresh] = t
	f.infos[fresh] = ranked(Int64, t.Shape)
	f.newInits = append(f.newInits, fresh)
	n.Inputs[1] = fresh
	return nil
}

// reshapeDims returns the shape of x reshaped to target, whose entries may be
// batchMark.
func reshapeDims(x info, target []int64, allowZero bool) ([]int64, error) {
	out := make([]int64, len(target))
	infer := -1
	var known []int64
	for i, v := range target {
		switch {
		case v == batchMark:
			out[i] = dimBatch
		case v == 0 && !allowZero:
			out[i] = dimUnknown
			if x.ranked {
				if i >= len(x.shape) {
					return nil, fmt.Errorf("target %v copies dimension %d of a rank-%d input", target, i, len(x.shape))
				}
				out[i] = x.shape[i]
			}
		case v == -1:
			if infer >= 0 {
				return nil, fmt.Errorf("target %v has two -1", target)
			}
			infer = i
			continue
		case v < 0 || v > maxElems:
			return nil, fmt.Errorf("target %v", target)
		default:
			out[i] = v
		}
		known = append(known, out[i])
	}
	if infer < 0 {
		return out, nil
	}
	out[infer] = dimUnknown
	if !x.ranked {
		return out, nil
	}
	// The -1 dimension is total(x) / product(known): count batch factors and
	// static products on both sides.
	bx, px, okx := factor(x.shape)
	bo, po, oko := factor(known)
	switch {
	case !okx || !oko || po == 0:
	case bx == bo:
		if px%po != 0 {
			return nil, fmt.Errorf("cannot reshape %v to %v", dimString(x.shape), target)
		}
		out[infer] = px / po
	case bx == bo+1 && px == po:
		out[infer] = dimBatch
	}
	return out, nil
}

// factor splits a product of dimensions into a power of the batch size and a
// static product; ok is false when a dimension is unknown.
func factor(dims []int64) (batches int, p int64, ok bool) {
	p = 1
	for _, d := range dims {
		switch {
		case d == dimBatch:
			batches++
		case d < 0:
			return 0, 0, false
		case d != 0 && p > maxElems/d:
			return 0, 0, false
		default:
			p *= d
		}
	}
	return batches, p, true
}

// dimString formats an inferred shape with N for the batch and ? for unknown.
func dimString(shape []int64) string {
	s := "["
	for i, d := range shape {
		if i > 0 {
			s += " "
		}
		switch d {
		case dimBatch:
			s += "N"
		case dimUnknown:
			s += "?"
		default:
			s += fmt.Sprint(d)
		}
	}
	return s + "]"
}

// finish assembles the folded graph: dead nodes removed, the constants the
// remaining nodes read materialised as initializers, types and shapes recorded.
func (f *folder) finish(g *Graph, in Value) (*Graph, error) {
	live := make(map[string]bool)
	for _, v := range g.Outputs {
		live[v.Name] = true
	}
	keep := make([]bool, len(f.kept))
	for i := len(f.kept) - 1; i >= 0; i-- {
		n := &f.kept[i]
		for _, o := range n.Outputs {
			keep[i] = keep[i] || (o != "" && live[o])
		}
		if keep[i] {
			for _, name := range n.Inputs {
				live[name] = true
			}
		}
	}
	h := &Graph{
		Name: g.Name, Doc: g.Doc, Opset: g.Opset, IRVersion: g.IRVersion,
		Producer: g.Producer, ProducerVersion: g.ProducerVersion,
		DomainOpsets: g.DomainOpsets, Metadata: g.Metadata,
	}
	h = h.Clone()
	for i, n := range f.kept {
		if keep[i] {
			h.Nodes = append(h.Nodes, n)
		}
	}
	orig := make(map[string]bool)
	for _, t := range g.Initializers {
		if live[t.Name] {
			h.Initializers = append(h.Initializers, t)
			orig[t.Name] = true
		}
	}
	for _, name := range f.newInits {
		if live[name] && !orig[name] {
			// A copy: results of Identity, Reshape, ... share their input's data,
			// and each initializer must be its own (a fault injected into one
			// layer's bias must not reach another's).
			h.Initializers = append(h.Initializers, f.consts[name].Clone(name))
			orig[name] = true
		}
	}
	in.Shape, in.DimNames = f.value(in.Name).Shape, f.value(in.Name).DimNames
	h.Inputs = []Value{in.clone()}
	for _, v := range g.Outputs {
		w, err := f.output(v)
		if err != nil {
			return nil, err
		}
		h.Outputs = append(h.Outputs, w)
	}
	for _, n := range h.Nodes {
		for _, o := range n.Outputs {
			if o == "" || f.outputs[o] {
				continue
			}
			if v := f.value(o); v.DType != Undefined || v.Shape != nil {
				h.ValueInfo = append(h.ValueInfo, v)
			}
		}
	}
	if err := h.Validate(); err != nil {
		return nil, fmt.Errorf("fold: result: %w", err)
	}
	return h, nil
}

// value describes an inferred value: batch and unknown dimensions become -1,
// the batch named after the input's.
func (f *folder) value(name string) Value {
	i := f.infos[name]
	v := Value{Name: name, DType: i.dt}
	if !i.ranked {
		return v
	}
	v.Shape = make([]int64, len(i.shape))
	for k, d := range i.shape {
		v.Shape[k] = d
		if d < 0 {
			if v.DimNames == nil {
				v.DimNames = make([]string, len(i.shape))
			}
			v.Shape[k] = -1
			if d == dimBatch {
				v.DimNames[k] = f.batchName
			}
		}
	}
	return v
}

// output returns a graph output with its inferred shape, checked against the
// declared one.
func (f *folder) output(decl Value) (Value, error) {
	v := f.value(decl.Name)
	if v.Shape == nil {
		return decl.clone(), nil
	}
	if decl.DType != Undefined {
		v.DType = decl.DType
	}
	if decl.Shape != nil {
		bad := len(decl.Shape) != len(v.Shape)
		for i := 0; !bad && i < len(v.Shape); i++ {
			bad = decl.Shape[i] >= 0 && v.Shape[i] >= 0 && decl.Shape[i] != v.Shape[i]
		}
		if bad {
			return Value{}, fmt.Errorf("fold: output %q is declared %v, computed %s",
				decl.Name, decl.Shape, dimString(f.infos[decl.Name].shape))
		}
		for i, d := range decl.Shape {
			if d >= 0 && v.Shape[i] < 0 { // declared static, inferred dynamic
				v.Shape[i] = d
				if v.DimNames != nil {
					v.DimNames[i] = ""
				}
			}
		}
		if slices.Equal(decl.Shape, v.Shape) && decl.DimNames != nil {
			v.DimNames = slices.Clone(decl.DimNames)
		}
	}
	return v, nil
}
