package graph

import (
	"fmt"
	"maps"
	"slices"
)

// Diff lists the differences between graphs a and b (at most 20), or nil when
// they are equal: every field, node, attribute and tensor byte is compared.
func Diff(a, b *Graph) []string {
	var d []string
	add := func(format string, args ...any) {
		if len(d) < 20 {
			d = append(d, fmt.Sprintf(format, args...))
		}
	}
	if a.Name != b.Name || a.Doc != b.Doc || a.Opset != b.Opset || a.IRVersion != b.IRVersion ||
		a.Producer != b.Producer || a.ProducerVersion != b.ProducerVersion {
		add("header: %q %q opset %d ir %d %q %q vs %q %q opset %d ir %d %q %q",
			a.Name, a.Doc, a.Opset, a.IRVersion, a.Producer, a.ProducerVersion,
			b.Name, b.Doc, b.Opset, b.IRVersion, b.Producer, b.ProducerVersion)
	}
	if !maps.Equal(a.DomainOpsets, b.DomainOpsets) {
		add("domain opsets %v vs %v", a.DomainOpsets, b.DomainOpsets)
	}
	if !maps.Equal(a.Metadata, b.Metadata) {
		add("metadata %v vs %v", a.Metadata, b.Metadata)
	}
	for _, l := range []struct {
		what string
		a, b []Value
	}{{"input", a.Inputs, b.Inputs}, {"output", a.Outputs, b.Outputs}, {"value_info", a.ValueInfo, b.ValueInfo}} {
		if len(l.a) != len(l.b) {
			add("%d vs %d %ss", len(l.a), len(l.b), l.what)
			continue
		}
		for i := range l.a {
			if !l.a[i].Equal(l.b[i]) {
				add("%s %d: %+v vs %+v", l.what, i, l.a[i], l.b[i])
			}
		}
	}
	if len(a.Nodes) != len(b.Nodes) {
		add("%d vs %d nodes", len(a.Nodes), len(b.Nodes))
	} else {
		for i := range a.Nodes {
			x, y := &a.Nodes[i], &b.Nodes[i]
			if x.Name != y.Name || x.Op != y.Op || x.Domain != y.Domain ||
				!slices.Equal(x.Inputs, y.Inputs) || !slices.Equal(x.Outputs, y.Outputs) {
				add("node %d: %s %v->%v vs %s %v->%v", i, x.Ref(), x.Inputs, x.Outputs, y.Ref(), y.Inputs, y.Outputs)
			}
			if !maps.EqualFunc(x.Attrs, y.Attrs, Attr.Equal) {
				add("node %d (%s): attributes %+v vs %+v", i, x.Ref(), x.Attrs, y.Attrs)
			}
		}
	}
	if len(a.Initializers) != len(b.Initializers) {
		add("%d vs %d initializers", len(a.Initializers), len(b.Initializers))
	} else {
		for i := range a.Initializers {
			if !a.Initializers[i].Equal(b.Initializers[i]) {
				add("initializer %d: %q %v %v vs %q %v %v", i, a.Initializers[i].Name, a.Initializers[i].DType,
					a.Initializers[i].Shape, b.Initializers[i].Name, b.Initializers[i].DType, b.Initializers[i].Shape)
			}
		}
	}
	return d
}

// Equal reports whether v and w have the same name, type, shape and dimension
// names (nil and all-empty DimNames are equal).
func (v Value) Equal(w Value) bool {
	named := func(names []string) []string {
		if !slices.ContainsFunc(names, func(s string) bool { return s != "" }) {
			return nil
		}
		return names
	}
	return v.Name == w.Name && v.DType == w.DType && (v.Shape == nil) == (w.Shape == nil) &&
		slices.Equal(v.Shape, w.Shape) && slices.Equal(named(v.DimNames), named(w.DimNames))
}
