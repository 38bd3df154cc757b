// Package graph is faultline's network representation: a DAG of typed operations
// over named tensors, with the weights as initializers (pure Go).
//
// A Graph mirrors an ONNX graph: Nodes are ONNX operations (op types of the
// default domain unless Node.Domain says otherwise) in topological order, reading
// and writing named values; the weights are Initializers; Inputs and Outputs are
// the graph's interface. Package model/onnx reads and writes Graphs as ONNX files.
//
// The pipeline on an imported model is:
//
//	g, err := onnx.ReadFile("net.onnx")
//	g, err = graph.Fold(g, []int64{1, 28, 28}) // constants folded, shapes inferred
//	err = graph.Check(g)                       // only supported ops, static shapes
//	sites, err := graph.WeightSites(g)         // the conv and linear layers
//	err = onnx.WriteFile("hardened.onnx", g)
//
// Shapes use -1 for a dynamic dimension; after Fold only the batch dimension (the
// first dimension of the input and of every value computed from it) is dynamic.
package graph
