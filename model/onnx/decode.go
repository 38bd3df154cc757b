package onnx

import (
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/faultline/faultline/model/graph"
)

// maxModelBytes is protobuf's limit on a message, and so on an ONNX file
// without external data.
const maxModelBytes = 2 << 30

// Decode reads an ONNX model from r; name (usually the file name) prefixes errors.
func Decode(r io.Reader, name string) (*graph.Graph, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxModelBytes+1))
	if err != nil {
		return nil, fmt.Errorf("onnx: read %s: %w", name, err)
	}
	if len(b) > maxModelBytes {
		return nil, fmt.Errorf("onnx: read %s: larger than protobuf's 2 GiB limit", name)
	}
	g, err := decodeModel(b)
	if err != nil {
		return nil, fmt.Errorf("onnx: read %s: %w", name, err)
	}
	return g, nil
}

// ModelProto field numbers.
const (
	modelIRVersion       = 1
	modelProducerName    = 2
	modelProducerVersion = 3
	modelGraph           = 7
	modelOpsetImport     = 8
	modelMetadataProps   = 14
)

func decodeModel(b []byte) (*graph.Graph, error) {
	g := &graph.Graph{}
	var graphBytes []byte
	haveGraph := false
	err := parse(b, func(f field) error {
		var err error
		switch f.num {
		case modelIRVersion:
			g.IRVersion, err = f.int("ir_version")
		case modelProducerName:
			g.Producer, err = f.str("producer_name")
		case modelProducerVersion:
			g.ProducerVersion, err = f.str("producer_version")
		case modelGraph:
			if err = f.want(wireBytes, "graph"); err == nil && haveGraph {
				err = errors.New("more than one graph")
			}
			graphBytes, haveGraph = f.data, true
		case modelOpsetImport:
			err = decodeOpset(g, f)
		case modelMetadataProps:
			var k, v string
			if k, v, err = decodeStringPair(f, "metadata_props"); err == nil {
				if g.Metadata == nil {
					g.Metadata = map[string]string{}
				}
				g.Metadata[k] = v
			}
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	if !haveGraph {
		return nil, errors.New("model: no graph (not an ONNX model?)")
	}
	if err := decodeGraph(g, graphBytes); err != nil {
		return nil, fmt.Errorf("graph: %w", err)
	}
	return g, nil
}

func decodeOpset(g *graph.Graph, f field) error {
	if err := f.want(wireBytes, "opset_import"); err != nil {
		return err
	}
	var domain string
	var version int64
	err := parse(f.data, func(f field) error {
		var err error
		switch f.num {
		case 1:
			domain, err = f.str("domain")
		case 2:
			version, err = f.int("version")
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("opset_import: %w", err)
	}
	if version < 0 || version > math.MaxInt32 {
		return fmt.Errorf("opset_import: domain %q: version %d", domain, version)
	}
	if domain == "" || domain == "ai.onnx" {
		g.Opset = int(version)
		return nil
	}
	if g.DomainOpsets == nil {
		g.DomainOpsets = map[string]int{}
	}
	g.DomainOpsets[domain] = int(version)
	return nil
}

// decodeStringPair decodes a StringStringEntryProto.
func decodeStringPair(f field, what string) (k, v string, err error) {
	if err = f.want(wireBytes, what); err != nil {
		return
	}
	err = parse(f.data, func(f field) error {
		var err error
		switch f.num {
		case 1:
			k, err = f.str("key")
		case 2:
			v, err = f.str("value")
		}
		return err
	})
	if err != nil {
		err = fmt.Errorf("%s: %w", what, err)
	}
	return
}

// GraphProto field numbers.
const (
	graphNode               = 1
	graphName               = 2
	graphInitializer        = 5
	graphDocString          = 10
	graphInput              = 11
	graphOutput             = 12
	graphValueInfo          = 13
	graphSparseInitializers = 15
)

func decodeGraph(g *graph.Graph, b []byte) error {
	return parse(b, func(f field) error {
		var err error
		switch f.num {
		case graphNode:
			if err = f.want(wireBytes, "node"); err != nil {
				return err
			}
			var n graph.Node
			if n, err = decodeNode(f.data, len(g.Nodes)); err == nil {
				g.Nodes = append(g.Nodes, n)
			}
		case graphName:
			g.Name, err = f.str("name")
		case graphDocString:
			g.Doc, err = f.str("doc_string")
		case graphInitializer:
			if err = f.want(wireBytes, "initializer"); err != nil {
				return err
			}
			var t *graph.Tensor
			if t, err = decodeTensor(f.data); err != nil {
				return fmt.Errorf("initializer %d: %w", len(g.Initializers), err)
			}
			g.Initializers = append(g.Initializers, t)
		case graphSparseInitializers:
			return errors.New("sparse initializers not supported")
		case graphInput, graphOutput, graphValueInfo:
			what := map[int]string{graphInput: "input", graphOutput: "output", graphValueInfo: "value_info"}[f.num]
			if err = f.want(wireBytes, what); err != nil {
				return err
			}
			var v graph.Value
			if v, err = decodeValue(f.data); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			switch f.num {
			case graphInput:
				g.Inputs = append(g.Inputs, v)
			case graphOutput:
				g.Outputs = append(g.Outputs, v)
			default:
				g.ValueInfo = append(g.ValueInfo, v)
			}
		}
		return err
	})
}

// ValueInfoProto, TypeProto and TensorShapeProto field numbers.
const (
	valueName      = 1
	valueType      = 2
	typeTensor     = 1
	tensorTypeElem = 1
	tensorTypeDims = 2
	shapeDim       = 1
	dimValue       = 1
	dimParam       = 2
)

func decodeValue(b []byte) (graph.Value, error) {
	var v graph.Value
	var typ []byte
	err := parse(b, func(f field) error {
		var err error
		switch f.num {
		case valueName:
			v.Name, err = f.str("name")
		case valueType:
			err = f.want(wireBytes, "type")
			typ = f.data
		}
		return err
	})
	if err == nil && typ != nil {
		err = parse(typ, func(f field) error {
			if f.num != typeTensor {
				return nil // sequence, map, optional, sparse: left untyped
			}
			if err := f.want(wireBytes, "tensor_type"); err != nil {
				return err
			}
			return decodeTensorType(&v, f.data)
		})
	}
	if err != nil {
		return v, fmt.Errorf("%q: %w", v.Name, err)
	}
	return v, nil
}

func decodeTensorType(v *graph.Value, b []byte) error {
	return parse(b, func(f field) error {
		switch f.num {
		case tensorTypeElem:
			e, err := f.int("elem_type")
			if err != nil {
				return err
			}
			if e < 0 || e > math.MaxInt32 {
				return fmt.Errorf("elem_type %d", e)
			}
			v.DType = graph.DType(e)
		case tensorTypeDims:
			if err := f.want(wireBytes, "shape"); err != nil {
				return err
			}
			v.Shape, v.DimNames = []int64{}, nil
			var names []string
			named := false
			err := parse(f.data, func(f field) error {
				if f.num != shapeDim {
					return nil
				}
				if err := f.want(wireBytes, "dim"); err != nil {
					return err
				}
				d, name := int64(-1), ""
				err := parse(f.data, func(f field) error {
					var err error
					switch f.num {
					case dimValue:
						if d, err = f.int("dim_value"); err == nil && d < 0 {
							err = fmt.Errorf("dim_value %d", d)
						}
					case dimParam:
						name, err = f.str("dim_param")
					}
					return err
				})
				if err != nil {
					return fmt.Errorf("dimension %d: %w", len(v.Shape), err)
				}
				if d >= 0 {
					name = ""
				}
				named = named || name != ""
				v.Shape, names = append(v.Shape, d), append(names, name)
				return nil
			})
			if err != nil {
				return fmt.Errorf("shape: %w", err)
			}
			if named {
				v.DimNames = names
			}
		}
		return nil
	})
}
