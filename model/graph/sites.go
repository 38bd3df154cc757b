package graph

import (
	"fmt"
	"strings"
)

// SiteKind says whether a weight site is a convolution or a linear layer.
type SiteKind string

// The weight site kinds.
const (
	ConvSite   SiteKind = "conv"
	LinearSite SiteKind = "linear"
)

// WeightSite is a layer whose weights are an initializer: a Conv, or a Gemm or
// MatMul with a constant weight. These are the sites faults are injected into.
type WeightSite struct {
	// Name is the layer's PyTorch module name (its state_dict prefix), e.g.
	// "layer2.0.conv1": the weight's name minus ".weight", or for a weight
	// without such a name (BatchNorm folded into it by the exporter, e.g.
	// "onnx::Conv_193") the module path of the node's scope name
	// ("/layer2/layer2.0/conv1/Conv").
	Name string
	Kind SiteKind
	// Node is the node's name and NodeIndex its index in Graph.Nodes.
	Node      string
	NodeIndex int
	Op        string
	// Weight and Bias are the initializers' names (Bias "" when none).
	Weight string
	Bias   string
	// WeightShape is the weight's shape: [out, in/groups, kh, kw] for a conv;
	// for Gemm [out, in] when TransB, else [in, out], as for MatMul.
	WeightShape []int64
	TransB      bool
	// Groups and Geometry describe a conv (Geometry.Pads resolved from auto_pad
	// when the input shape is known).
	Groups   int64
	Geometry ConvGeometry
	// InShape and OutShape are the layer's input and output shapes (-1 for the
	// batch), nil when unknown.
	InShape, OutShape []int64
}

// WeightSites returns the conv and linear layers of g in node order, looking
// through Identity nodes (and a Transpose for Gemm/MatMul) between an
// initializer and the layer. Run it on a folded graph to have the shapes.
func WeightSites(g *Graph) ([]WeightSite, error) {
	inits := g.InitializerMap()
	prod := g.Producers()
	// constant follows Identity (and, if allowed, one Transpose) back to an
	// initializer; transposed says a Transpose was crossed.
	constant := func(name string, transpose bool) (t *Tensor, transposed bool) {
		if t, ok := throughIdentity(g, inits, prod, name); ok {
			return t, false
		}
		if i, ok := prod[name]; ok && transpose && g.Nodes[i].Op == "Transpose" {
			t, ok := throughIdentity(g, inits, prod, g.Nodes[i].Input(0))
			return t, ok
		}
		return nil, false
	}
	var sites []WeightSite
	used := map[string]int{}
	for i := range g.Nodes {
		n := &g.Nodes[i]
		if n.Domain != "" || (n.Op != "Conv" && n.Op != "Gemm" && n.Op != "MatMul") {
			continue
		}
		w, transposed := constant(n.Input(1), n.Op != "Conv")
		if w == nil {
			continue
		}
		s := WeightSite{Node: n.Name, NodeIndex: i, Op: n.Op, Weight: w.Name, WeightShape: w.Shape}
		if b, _ := constant(n.Input(2), false); b != nil && n.Op != "MatMul" {
			s.Bias = b.Name
		}
		if v, ok := g.Value(n.Input(0)); ok {
			s.InShape = v.Shape
		}
		if v, ok := g.Value(n.Outputs[0]); ok {
			s.OutShape = v.Shape
		}
		var err error
		switch n.Op {
		case "Conv":
			s.Kind = ConvSite
			if s.Groups, err = n.AttrInt("group", 1); err != nil {
				return nil, err
			}
			if len(w.Shape) < 3 {
				return nil, fmt.Errorf("%s: weight %q of shape %v", n.Ref(), w.Name, w.Shape)
			}
			if s.Geometry, err = n.Geometry(len(w.Shape)-2, w.Shape[2:]); err != nil {
				return nil, err
			}
			if len(s.InShape) == len(w.Shape) {
				for k := range w.Shape[2:] {
					if d := s.InShape[k+2]; d >= 0 {
						if _, err := s.Geometry.OutSize(k, d); err != nil {
							return nil, fmt.Errorf("%s: %w", n.Ref(), err)
						}
					}
				}
			}
		case "Gemm":
			s.Kind = LinearSite
			gemm, err := n.Gemm()
			if err != nil {
				return nil, err
			}
			s.TransB = gemm.TransB != transposed
		default:
			s.Kind = LinearSite
		}
		s.Name = siteName(n, w.Name)
		if used[s.Name]++; used[s.Name] > 1 {
			s.Name = fmt.Sprintf("%s#%d", s.Name, used[s.Name])
		}
		sites = append(sites, s)
	}
	return sites, nil
}

// GemmAttrs are a Gemm node's attributes, ONNX's defaults filled in: the node
// computes Alpha * A' * B' + Beta * C, where A' is A transposed when TransA and
// B' is B transposed when TransB.
type GemmAttrs struct {
	Alpha, Beta    float32
	TransA, TransB bool
}

// Gemm reads Gemm node n's attributes (alpha and beta default to 1; a transA
// or transB other than 0 transposes). WeightSites, shape inference and the
// executors all read a Gemm through it, so they agree on its layout.
func (n *Node) Gemm() (GemmAttrs, error) {
	var g GemmAttrs
	var err error
	if g.Alpha, err = n.AttrFloat("alpha", 1); err != nil {
		return GemmAttrs{}, err
	}
	if g.Beta, err = n.AttrFloat("beta", 1); err != nil {
		return GemmAttrs{}, err
	}
	ta, err := n.AttrInt("transA", 0)
	if err != nil {
		return GemmAttrs{}, err
	}
	tb, err := n.AttrInt("transB", 0)
	if err != nil {
		return GemmAttrs{}, err
	}
	g.TransA, g.TransB = ta != 0, tb != 0
	return g, nil
}

// throughIdentity returns the initializer name refers to, through Identity nodes.
func throughIdentity(g *Graph, inits map[string]*Tensor, prod map[string]int, name string) (*Tensor, bool) {
	for k := 0; k < 8 && name != ""; k++ {
		if t := inits[name]; t != nil {
			return t, true
		}
		i, ok := prod[name]
		if !ok || g.Nodes[i].Op != "Identity" {
			return nil, false
		}
		name = g.Nodes[i].Input(0)
	}
	return nil, false
}

// siteName derives a layer's module name from its weight's name or its node's.
func siteName(n *Node, weight string) string {
	if m, ok := strings.CutSuffix(weight, ".weight"); ok && m != "" {
		return m
	}
	if p := ModulePath(n.Name); p != "" {
		return p
	}
	if n.Name != "" {
		return n.Name
	}
	return weight
}

// ModulePath returns the PyTorch module path of a node named by torch.onnx's
// scopes, e.g. "layer2.0.conv1" for "/layer2/layer2.0/conv1/Conv" and
// "features.1.conv.0.0" for "/features/features.1/conv/conv.0/conv.0.0/Conv",
// or "" for a name without scopes.
func ModulePath(node string) string {
	segs := strings.Split(node, "/")
	if len(segs) < 3 || segs[0] != "" {
		return ""
	}
	path, last := "", ""
	for _, s := range segs[1 : len(segs)-1] {
		switch {
		case s == "":
			return ""
		case last != "" && strings.HasPrefix(s, last+"."):
			path += s[len(last):]
		case path == "":
			path = s
		default:
			path += "." + s
		}
		last = s
	}
	return path
}
