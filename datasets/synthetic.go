package datasets

import (
	"fmt"
	"math/rand/v2"
)

// SyntheticConfig describes a synthetic data set. Zero fields take defaults:
// 6000 images of 1x28x28 (Fashion-MNIST's shape), 10 classes, the train split.
type SyntheticConfig struct {
	N, C, H, W int   // images, channels, height, width
	Classes    int   // 1..256
	Seed       int64 // the class prototypes and the samples are a function of Seed
	// Split selects the sample stream: the train and test splits of one Seed share
	// their class prototypes but hold different samples. Empty means Train.
	Split Split
}

// syntheticDefaults fills the zero fields of a SyntheticConfig; with Seed 1 it is
// what Load("synthetic", ...) serves for the train split.
var syntheticDefaults = SyntheticConfig{N: 6000, C: 1, H: 28, W: 28, Classes: 10, Seed: 1}

// syntheticNoise is the standard deviation, in pixel levels, of the noise added to
// a class prototype.
const syntheticNoise = 48

// withDefaults fills the zero shape fields from syntheticDefaults.
func (c SyntheticConfig) withDefaults() SyntheticConfig {
	d := syntheticDefaults
	for _, f := range []struct{ v, def *int }{{&c.N, &d.N}, {&c.C, &d.C}, {&c.H, &d.H}, {&c.W, &d.W}, {&c.Classes, &d.Classes}} {
		if *f.v == 0 {
			*f.v = *f.def
		}
	}
	if c.Split == "" {
		c.Split = Train
	}
	return c
}

// Validate checks the configuration after defaults are applied.
func (c SyntheticConfig) Validate() error {
	c = c.withDefaults()
	switch {
	case c.N < 0 || c.C < 0 || c.H < 0 || c.W < 0:
		return fmt.Errorf("datasets: synthetic: negative shape N=%d C=%d H=%d W=%d", c.N, c.C, c.H, c.W)
	case c.Classes < 0 || c.Classes > 256:
		return fmt.Errorf("datasets: synthetic: %d classes (want 1..256)", c.Classes)
	case c.Split != Train && c.Split != Test:
		return fmt.Errorf("datasets: synthetic: unknown split %q (want %q or %q)", c.Split, Train, Test)
	case uint64(c.C)*uint64(c.H)*uint64(c.W) > MaxBytes ||
		uint64(c.N)*uint64(c.C)*uint64(c.H)*uint64(c.W) > MaxBytes:
		return fmt.Errorf("datasets: synthetic: %dx%dx%dx%d is more than %d bytes", c.N, c.C, c.H, c.W, MaxBytes)
	}
	return nil
}

// Synthetic returns a deterministic, learnable data set: each class has a random
// prototype image and every sample is its class prototype plus Gaussian noise
// (standard deviation 48 of 255 levels), so even a linear model separates the classes.
// Labels cycle through the classes (image i has class i % Classes). The same config
// always gives the same bytes. Synthetic panics when cfg.Validate fails: the config
// is written by a programmer, not read from a file.
func Synthetic(cfg SyntheticConfig) *Set {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	cfg = cfg.withDefaults()
	sz := cfg.C * cfg.H * cfg.W

	protoRNG := rand.New(rand.NewPCG(uint64(cfg.Seed), 0))
	protos := make([]uint8, cfg.Classes*sz)
	for i := range protos {
		protos[i] = uint8(protoRNG.IntN(256))
	}

	stream := uint64(1)
	if cfg.Split == Test {
		stream = 2
	}
	rng := rand.New(rand.NewPCG(uint64(cfg.Seed), stream))
	s := &Set{Name: "synthetic", Split: cfg.Split, N: cfg.N, C: cfg.C, H: cfg.H, W: cfg.W,
		Classes: cfg.Classes, Pixels: make([]uint8, cfg.N*sz), Labels: make([]uint8, cfg.N)}
	for i := range cfg.N {
		k := i % cfg.Classes
		s.Labels[i] = uint8(k)
		proto := protos[k*sz : (k+1)*sz]
		img := s.Pixels[i*sz : (i+1)*sz]
		for j, p := range proto {
			v := float64(p) + syntheticNoise*rng.NormFloat64()
			img[j] = uint8(min(max(v+0.5, 0), 255))
		}
	}
	return s
}
