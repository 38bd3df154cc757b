// Package testckpt builds the small LeNet-5 checkpoints that tests of several
// packages share: one trained briefly on the synthetic data set, and one freshly
// initialised. It is for tests only.
package testckpt

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/faultline/faultline/configs"
	"github.com/faultline/faultline/model"
	"github.com/faultline/faultline/train"
	"github.com/sugarme/gotch"
)

// Trained trains the lenet5-fashion preset for one epoch (batch 64, one thread,
// seed 3) on the registry's synthetic data set, on its first trainLimit training
// images (0: all), and returns the checkpoint directory.
func Trained(t testing.TB, trainLimit int) string {
	t.Helper()
	c, err := configs.Preset("lenet5-fashion")
	if err != nil {
		t.Fatal(err)
	}
	c.Data.Dataset = "synthetic"
	c.Data.TrainLimit = trainLimit
	c.Train.Epochs, c.Train.BatchSize, c.Runtime.Threads, c.Runtime.Seed = 1, 64, 1, 3
	dir := filepath.Join(t.TempDir(), "ckpt")
	if _, err := train.Run(context.Background(), train.Options{Config: c, Device: gotch.CPU, Out: dir}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Untrained saves a freshly initialised LeNet-5 for the synthetic data set
// (normalisation mean 0.5, std 0.25) and returns the checkpoint directory.
func Untrained(t testing.TB) string {
	t.Helper()
	m, err := model.New(model.Spec{Arch: "lenet5", InChannels: 1, Height: 28, Width: 28, Classes: 10, WidthMult: 1}, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "ckpt")
	meta := model.Metadata{Dataset: "synthetic", Normalization: model.Normalization{Mean: []float32{0.5}, Std: []float32{0.25}}}
	if err := m.Save(dir, meta); err != nil {
		t.Fatal(err)
	}
	return dir
}
