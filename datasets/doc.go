// Package datasets reads the labelled image data sets faultline trains and tests on
// (MNIST and Fashion-MNIST in IDX format, gzip or raw; CIFAR-10 binary; a learnable
// synthetic set) into memory as uint8 pixels, validating untrusted files as it goes.
// It also computes per-channel normalisation statistics and serves normalised
// float32 batches in an order that is reproducible from a seed and an epoch number.
package datasets
