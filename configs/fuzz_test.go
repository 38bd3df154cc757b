package configs

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzLoadFile feeds arbitrary bytes to Load as the --config file. Load must
// never panic; a configuration it accepts passes Validate, and rendering it as
// YAML and loading that again gives the same configuration.
func FuzzLoadFile(f *testing.F) {
	for _, dir := range []string{"presets", "testdata"} {
		paths, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
		if err != nil || len(paths) == 0 {
			f.Fatalf("no seed files in %s: %v", dir, err)
		}
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	for _, s := range []string{
		"", "null", "[]", "- 1\n", "train: 3\n", "train: {epochs: 1e309}\n",
		"a: &x {b: *x}\n", "train:\n  epochs: &n 3\n  batch_size: *n\n",
		"model:\n  hidden: [1, 2.5]\n", "runtime:\n  seed: 0x10\n", "harden:\n  ber: 1e-5\n",
		"train:\n  lr: .nan\n", "train:\n  lr: !!str 0.1\n", "Train:\n  EPOCHS: 2\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fromBytes := func(b []byte) func(string) ([]byte, error) {
			return func(string) ([]byte, error) { return b, nil }
		}
		cfg, err := load(Source{File: "fuzz.yaml"}, fromBytes(data))
		if err != nil {
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("accepted a configuration that fails validation: %v", err)
		}
		out, err := cfg.YAML()
		if err != nil {
			t.Fatalf("render accepted configuration: %v", err)
		}
		again, err := load(Source{File: "again.yaml"}, fromBytes(out))
		if err != nil {
			t.Fatalf("reloading the rendered configuration: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(normalised(cfg), normalised(again)) {
			t.Fatalf("round trip changed the configuration:\n%+v\n%+v\n%s", cfg, again, out)
		}
	})
}

// normalised treats nil and empty lists alike (YAML cannot tell them apart).
func normalised(c Config) Config {
	if len(c.Model.Hidden) == 0 {
		c.Model.Hidden = nil
	}
	if len(c.Harden.BER) == 0 {
		c.Harden.BER = nil
	}
	return c
}
