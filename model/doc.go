// Package model is faultline's model zoo (MLP, LeNet-5, VGG-11, ResNet-20) on libtorch
// through gotch, with the contract every other package relies on: each conv and
// linear layer is a named fault site, and the forward pass takes a hook called at
// every site with the layer's input and output (nil hook = the golden model).
//
// A model is a graph of ONNX operations (package model/graph) executed on
// libtorch: New builds a zoo architecture as such a graph, FromGraph takes any
// graph (e.g. an ONNX file read by package model/onnx). Each node is compiled
// once into an operation on tensors; the sites are the Conv, Gemm and MatMul
// nodes with constant weights, and the forward pass is cut into stages where the
// graph is a chain, so that it can start at any stage from a saved input.
//
// Parameters carry PyTorch state_dict names, and checkpoints are written as a gotch
// .ot file, a NumPy .npz with those names, and JSON metadata.
package model
