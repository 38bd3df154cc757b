// Package model is faultline's model zoo (MLP, LeNet-5, VGG-11, ResNet-20) on libtorch
// through gotch, with the contract every other package relies on: each conv and
// linear layer is a named fault site, and the forward pass takes a hook called at
// every site with the layer's input and output (nil hook = the golden model).
//
// Parameters carry PyTorch state_dict names, and checkpoints are written as a gotch
// .ot file, a NumPy .npz with those names, and JSON metadata.
package model
