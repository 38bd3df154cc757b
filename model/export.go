package model

import (
	"fmt"
	"slices"
	"strings"

	"github.com/faultline/faultline/model/graph"
)

// clampPrefix starts the names of the Clip nodes, and of their bound
// initializers, that ExportGraph adds for output clamps, so that Load can take
// them out again (a checkpoint's clamps are read from model.json).
const clampPrefix = "faultline.clamp/"

// ExportGraph returns the graph a checkpoint writes as model.onnx: Model.Graph
// (the executed graph with the current weights) with the model's range
// restriction written into it, so that any ONNX runtime computes what
// faultline's forward pass computes. After every site with an output clamp
// (SetClamps) comes a Clip node named "faultline.clamp/<site>", whose min and
// max are scalar float initializers ("faultline.clamp/<site>/min", ".../max")
// holding the bounds; the site's node now writes "<output>.raw" and the Clip
// writes the site's old output, so every consumer, and a graph output, reads
// the clamped value under its old name. The weights of sites with a weight
// clamp (SetWeightClamps) are written clamped to their bounds, as the forward
// pass reads them (the bounds contain the current weights, so this normally
// changes nothing). The opset, and the graph's input and output names, are
// those of Model.Graph.
func (m *Model) ExportGraph() (*graph.Graph, error) {
	g, err := m.Graph()
	if err != nil {
		return nil, err
	}
	if len(m.wclamp) > 0 {
		idx := map[string]int{}
		for i, t := range g.Initializers {
			idx[t.Name] = i
		}
		for _, s := range m.sites {
			c, ok := m.wclamp[s.Name]
			if !ok {
				continue
			}
			i, ok := idx[s.Weight()]
			if !ok {
				return nil, fmt.Errorf("model: export: weight %q of %s is no initializer", s.Weight(), s.Name)
			}
			t := g.Initializers[i]
			v, err := t.Float32s()
			if err != nil {
				return nil, fmt.Errorf("model: export: %s: %w", t.Name, err)
			}
			for k, x := range v {
				v[k] = min(max(x, c.b.Min), c.b.Max)
			}
			if g.Initializers[i], err = graph.FromFloat32s(t.Name, t.Shape, v); err != nil {
				return nil, fmt.Errorf("model: export: %s: %w", t.Name, err)
			}
		}
	}
	if len(m.clamps) == 0 {
		return g, nil
	}
	taken := map[string]bool{}
	for _, n := range g.Nodes {
		for _, v := range n.Outputs {
			taken[v] = true
		}
	}
	for _, v := range g.Inputs {
		taken[v.Name] = true
	}
	for _, t := range g.Initializers {
		taken[t.Name] = true
	}
	after := map[int]graph.Node{} // the Clip to insert after each clamped site's node
	for _, s := range m.sites {
		c, ok := m.clamps[s.Name]
		if !ok {
			continue
		}
		i := m.prog.steps[m.siteStep[s.Index]].node
		n := &g.Nodes[i]
		if len(n.Outputs) == 0 {
			return nil, fmt.Errorf("model: export: %s has no output", n.Ref())
		}
		out := n.Outputs[0]
		raw := out + ".raw"
		for k := 2; taken[raw]; k++ {
			raw = fmt.Sprintf("%s.raw%d", out, k)
		}
		taken[raw] = true
		lo, hi := clampPrefix+s.Name+"/min", clampPrefix+s.Name+"/max"
		for _, b := range []struct {
			name string
			v    float32
		}{{lo, c.b.Min}, {hi, c.b.Max}} {
			if taken[b.name] {
				return nil, fmt.Errorf("model: export: the graph already has a value %q", b.name)
			}
			t, err := graph.FromFloat32s(b.name, []int64{}, []float32{b.v})
			if err != nil {
				return nil, fmt.Errorf("model: export: %s: %w", b.name, err)
			}
			g.Initializers = append(g.Initializers, t)
		}
		n.Outputs = slices.Clone(n.Outputs)
		n.Outputs[0] = raw
		if v, ok := g.Value(out); ok {
			v.Name = raw
			g.ValueInfo = append(g.ValueInfo, v)
		}
		after[i] = graph.Node{Name: clampPrefix + s.Name, Op: "Clip", Inputs: []string{raw, lo, hi}, Outputs: []string{out}}
	}
	nodes := make([]graph.Node, 0, len(g.Nodes)+len(after))
	for i, n := range g.Nodes {
		nodes = append(nodes, n)
		if c, ok := after[i]; ok {
			nodes = append(nodes, c)
		}
	}
	g.Nodes = nodes
	if err := g.Validate(); err != nil {
		return nil, fmt.Errorf("model: export: %w", err)
	}
	return g, nil
}

// stripClamps undoes what ExportGraph adds for output clamps: each Clip node
// named "faultline.clamp/..." goes, with its bound initializers, and the node
// writing its input writes its output again. g is not modified.
func stripClamps(g *graph.Graph) *graph.Graph {
	var clips []graph.Node
	for _, n := range g.Nodes {
		if n.Op == "Clip" && n.Domain == "" && strings.HasPrefix(n.Name, clampPrefix) && len(n.Inputs) == 3 && len(n.Outputs) == 1 {
			clips = append(clips, n)
		}
	}
	if len(clips) == 0 {
		return g
	}
	h := g.Clone()
	rename := map[string]string{} // raw value -> clamped name
	drop := map[string]bool{}     // initializers and value infos to drop
	for _, c := range clips {
		rename[c.Inputs[0]] = c.Outputs[0]
		drop[c.Inputs[0]], drop[c.Inputs[1]], drop[c.Inputs[2]] = true, true, true
	}
	nodes := h.Nodes[:0:0]
	for _, n := range h.Nodes {
		if n.Op == "Clip" && strings.HasPrefix(n.Name, clampPrefix) && len(n.Inputs) == 3 && len(n.Outputs) == 1 && rename[n.Inputs[0]] == n.Outputs[0] {
			continue
		}
		for k, v := range n.Outputs {
			if to, ok := rename[v]; ok {
				n.Outputs = slices.Clone(n.Outputs)
				n.Outputs[k] = to
			}
		}
		nodes = append(nodes, n)
	}
	h.Nodes = nodes
	h.Initializers = slices.DeleteFunc(h.Initializers, func(t *graph.Tensor) bool { return drop[t.Name] })
	h.ValueInfo = slices.DeleteFunc(h.ValueInfo, func(v graph.Value) bool { return drop[v.Name] })
	return h
}

// ONNXSource describes the ONNX file an imported checkpoint was read from
// (Metadata.ONNX).
type ONNXSource struct {
	// File is the path given to the import, SHA256 the file's SHA-256 (hex).
	File   string `json:"file"`
	SHA256 string `json:"sha256"`
	// Opset is the file's default-domain opset; Producer and ProducerVersion
	// name the tool that wrote it (e.g. "pytorch", "1.13.0").
	Opset           int    `json:"opset"`
	Producer        string `json:"producer"`
	ProducerVersion string `json:"producer_version"`
	// Input and InputShape are the graph's data input and its shape as the
	// file declares it (-1 for a dynamic dimension); Output is the graph's
	// output.
	Input      string  `json:"input"`
	InputShape []int64 `json:"input_shape"`
	Output     string  `json:"output"`
}

// DescribeONNX returns what an import records about the ONNX file at path,
// from which g was read (before folding): its SHA-256, opset, producer, and
// input and output names.
func DescribeONNX(path string, g *graph.Graph) (*ONNXSource, error) {
	sum, err := sumFile(path)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	src := &ONNXSource{File: path, SHA256: sum.SHA256, Opset: g.Opset,
		Producer: g.Producer, ProducerVersion: g.ProducerVersion}
	in := g.DataInputs()
	if len(in) != 1 {
		return nil, fmt.Errorf("model: %s: %d data inputs, want 1", path, len(in))
	}
	src.Input, src.InputShape = in[0].Name, slices.Clone(in[0].Shape)
	if len(g.Outputs) != 1 {
		return nil, fmt.Errorf("model: %s: %d outputs, want 1", path, len(g.Outputs))
	}
	src.Output = g.Outputs[0].Name
	return src, nil
}
