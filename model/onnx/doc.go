// Package onnx reads and writes ONNX model files as graph.Graph.
//
// The protobuf wire format is decoded and encoded here, by hand, for the part of
// onnx.proto a CNN uses: ModelProto (ir_version, opset_import, producer,
// metadata_props, graph), GraphProto (nodes, initializers, inputs, outputs,
// value_info, name, doc_string), NodeProto, AttributeProto, TensorProto (raw_data
// and the typed data fields, little-endian) and ValueInfoProto with tensor
// types and shapes (dim_value, dim_param). Other fields are skipped; attributes
// of kinds package graph does not model (sub-graphs, tensor lists, ...) are
// carried through as their encoded bytes. Tensors stored outside the file
// (external data) are refused.
//
// Decoding never trusts its input: every length is checked against the bytes
// that remain, allocations are bounded by the input's size, and errors name
// the file, the element (node, attribute, tensor) and the field.
package onnx
