package configs

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// testFlags returns a flag set like the CLI's and its flag -> key map, parsed from
// args.
func testFlags(t *testing.T, args ...string) (*pflag.FlagSet, map[string]string) {
	t.Helper()
	fs := pflag.NewFlagSet("train", pflag.ContinueOnError)
	fs.Int("epochs", 99, "")
	fs.Float64("lr", 99, "")
	fs.IntSlice("hidden", []int{9, 9}, "")
	fs.Bool("keep-best", false, "")
	fs.String("arch", "nope", "")
	fs.Int64("seed", 99, "")
	fs.String("config", "", "not a config key")
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return fs, map[string]string{
		"epochs":    "train.epochs",
		"lr":        "train.lr",
		"hidden":    "model.hidden",
		"keep-best": "train.keep_best",
		"arch":      "model.arch",
		"seed":      "runtime.seed",
	}
}

func TestLoadPrecedence(t *testing.T) {
	const file = "testdata/precedence.yaml"
	// fromFile is the default preset with precedence.yaml applied.
	fromFile := func(c *Config) {
		c.Train.Epochs, c.Train.LR, c.Train.BatchSize, c.Runtime.Seed = 5, 0.01, 64, 7
	}
	tests := []struct {
		name   string
		preset string
		file   string
		env    []string
		args   []string
		want   func(c *Config)
	}{
		{name: "preset only", want: func(c *Config) {}},
		{name: "file", file: file, want: fromFile},
		{name: "empty file section", file: "testdata/empty.yaml", want: func(c *Config) {}},
		{
			name: "env over file", file: file,
			env:  []string{"PATH=/bin", "FAULTLINE_TRAIN_EPOCHS=3", "FAULTLINE_TRAIN_LR=0.02", "HOME=/root"},
			want: func(c *Config) { fromFile(c); c.Train.Epochs, c.Train.LR = 3, 0.02 },
		},
		{
			name: "flag over env over file", file: file,
			env:  []string{"FAULTLINE_TRAIN_EPOCHS=3", "FAULTLINE_TRAIN_LR=0.02", "FAULTLINE_RUNTIME_SEED=8"},
			args: []string{"--epochs=2", "--keep-best"},
			// --lr and --seed are not set, so env keeps train.lr and runtime.seed.
			want: func(c *Config) {
				fromFile(c)
				c.Train.Epochs, c.Train.LR, c.Runtime.Seed, c.Train.KeepBest = 2, 0.02, 8, true
			},
		},
		{
			name: "unset flags leave the preset", args: []string{"--config=x.yaml"},
			want: func(c *Config) {},
		},
		{
			name: "list from env", preset: "mlp-fashion",
			env:  []string{"FAULTLINE_MODEL_HIDDEN=512, 64,32"},
			want: func(c *Config) { *c = mustPreset(t, "mlp-fashion"); c.Model.Hidden = []int{512, 64, 32} },
		},
		{
			name: "list from flag over env", preset: "mlp-fashion",
			env:  []string{"FAULTLINE_MODEL_HIDDEN=512"},
			args: []string{"--hidden=300,100"},
			want: func(c *Config) { *c = mustPreset(t, "mlp-fashion"); c.Model.Hidden = []int{300, 100} },
		},
		{
			name: "every type from env",
			env: []string{
				"FAULTLINE_MODEL_WIDTH=0.5", "FAULTLINE_MODEL_BATCH_NORM=true", "FAULTLINE_DATA_DIR=/data/fm",
				"FAULTLINE_RUNTIME_SEED=-3", "FAULTLINE_DATA_AUGMENT=flip-crop",
			},
			want: func(c *Config) {
				c.Model.Width, c.Model.BatchNorm, c.Data.Dir = 0.5, true, "/data/fm"
				c.Runtime.Seed, c.Data.Augment = -3, AugmentFlipCrop
			},
		},
		{
			name: "empty list from env clears the preset list", preset: "mlp-fashion",
			env:  []string{"FAULTLINE_MODEL_ARCH=lenet5", "FAULTLINE_MODEL_HIDDEN="},
			want: func(c *Config) { *c = mustPreset(t, "mlp-fashion"); c.Model.Arch, c.Model.Hidden = ArchLeNet5, nil },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs, keys := testFlags(t, tt.args...)
			got, err := Load(Source{Preset: tt.preset, File: tt.file, Env: tt.env, Flags: fs, FlagKeys: keys})
			if err != nil {
				t.Fatal(err)
			}
			want := Default()
			tt.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		file string
		env  []string
		args []string
		keys map[string]string // replaces the test flag map when set
		want []string          // substrings of the error
	}{
		{
			name: "unknown key in file", file: "testdata/unknown_key.yaml",
			want: []string{`configs: testdata/unknown_key.yaml:2: unknown key "train.epoch" (did you mean "train.epochs"?)`},
		},
		{
			name: "all unknown keys reported", file: "testdata/unknown_keys.yaml",
			want: []string{
				`unknown_keys.yaml:2: unknown key "modle" (did you mean "model"?)`,
				`unknown_keys.yaml:4: unknown key "epochs" (did you mean "train.epochs"?)`,
				`unknown_keys.yaml:6: unknown key "train.learning_rate_of_doom"`,
			},
		},
		{
			name: "type error in file", file: "testdata/type_error.yaml",
			want: []string{`type_error.yaml:2: train.epochs: cannot use "ten" as an integer`},
		},
		{
			name: "all type errors reported", file: "testdata/type_errors.yaml",
			want: []string{
				`model.width: cannot use "wide" as a number`,
				`model.hidden: cannot use [256 many] as a list of integers`,
				`model.batch_norm: cannot use 3 as a boolean`,
				`train.epochs: cannot use 2.5 as an integer`,
				`runtime.device: cannot use 0 as a string`,
			},
		},
		{
			name: "section given a value", file: "testdata/section_scalar.yaml",
			want: []string{`section_scalar.yaml:1: "train" must be a mapping of keys, got the value "5"`},
		},
		{
			name: "key given a mapping", file: "testdata/leaf_mapping.yaml",
			want: []string{`leaf_mapping.yaml:3: train.lr: expected a value, got a mapping`},
		},
		{
			name: "duplicate key", file: "testdata/duplicate.yaml",
			want: []string{`duplicate.yaml:3: duplicate key "train.epochs" (first set on line 2)`},
		},
		{name: "bad syntax", file: "testdata/bad_syntax.yaml", want: []string{"bad_syntax.yaml", "line"}},
		{name: "missing file", file: "testdata/no_such.yaml", want: []string{"no_such.yaml"}},
		{
			name: "unknown env var",
			env:  []string{"FAULTLINE_TRAIN_EPOCH=3"},
			want: []string{`environment variable FAULTLINE_TRAIN_EPOCH does not name a config key (did you mean "FAULTLINE_TRAIN_EPOCHS"?)`},
		},
		{
			name: "test switches are not config keys",
			env:  []string{"FAULTLINE_REQUIRE_TORCH=1", "FAULTLINE_ONNX_CORPUS=/tmp/c", "FAULTLINE_TRAIN_EPOCH=3"},
			want: []string{`environment variable FAULTLINE_TRAIN_EPOCH does not name a config key`},
		},
		{
			name: "env type error",
			env:  []string{"FAULTLINE_TRAIN_EPOCHS=ten"},
			want: []string{`environment variable FAULTLINE_TRAIN_EPOCHS: train.epochs: cannot use "ten" as an integer`},
		},
		{
			name: "env bool error",
			env:  []string{"FAULTLINE_TRAIN_NESTEROV=yes please"},
			want: []string{`train.nesterov: cannot use "yes please" as a boolean`},
		},
		{
			name: "flag mapped to unknown key",
			keys: map[string]string{"epochs": "train.epoch"},
			want: []string{`flag --epochs maps to unknown key "train.epoch" (did you mean "train.epochs"?)`},
		},
		{
			name: "flag map names a missing flag",
			keys: map[string]string{"batch": "train.batch_size"},
			want: []string{`flag --batch (for train.batch_size) is not defined`},
		},
		{
			name: "errors from every layer together", file: "testdata/unknown_key.yaml",
			env:  []string{"FAULTLINE_NOPE=1"},
			want: []string{`"train.epoch"`, "FAULTLINE_NOPE"},
		},
		{
			name: "validation after loading", file: "testdata/invalid.yaml",
			want: []string{"train.lr: must be > 0, got -0.1", "train.epochs: must be >= 1, got 0"},
		},
		{
			name: "validation of a flag value", args: []string{"--arch=alexnet"},
			want: []string{`model.arch: must be one of mlp, lenet5, vgg11, resnet20, got "alexnet"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs, keys := testFlags(t, tt.args...)
			if tt.keys != nil {
				keys = tt.keys
			}
			_, err := Load(Source{File: tt.file, Env: tt.env, Flags: fs, FlagKeys: keys})
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestFlagTypeError(t *testing.T) {
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	fs.String("epochs", "", "")
	if err := fs.Parse([]string{"--epochs=many"}); err != nil {
		t.Fatal(err)
	}
	_, err := Load(Source{Flags: fs, FlagKeys: map[string]string{"epochs": "train.epochs"}})
	want := `configs: flag --epochs: train.epochs: cannot use "many" as an integer`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error %v, want %q", err, want)
	}
}

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	for _, name := range Presets() {
		t.Run(name, func(t *testing.T) {
			c := mustPreset(t, name)
			c.Data.Dir = "/tmp/data: with a colon"
			c.Train.LR = 1e-5
			data, err := c.YAML()
			if err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(dir, name+".yaml")
			if err := os.WriteFile(file, data, 0o644); err != nil {
				t.Fatal(err)
			}
			// Start from another preset, so the file has to set everything.
			base := "mlp-fashion"
			if name == base {
				base = "vgg11-fashion"
			}
			got, err := Load(Source{Preset: base, File: file})
			if err != nil {
				t.Fatalf("%v\n%s", err, data)
			}
			if !reflect.DeepEqual(got, c) {
				t.Errorf("YAML round trip:\ngot  %+v\nwant %+v\n%s", got, c, data)
			}

			js, err := json.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			var back Config
			if err := json.Unmarshal(js, &back); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back, c) {
				t.Errorf("JSON round trip:\ngot  %+v\nwant %+v\n%s", back, c, js)
			}
		})
	}
}

// TestYAMLGolden pins the layout of YAML() (key order, indentation, number format).
// Run with -update to rewrite testdata/*.golden.yaml.
func TestYAMLGolden(t *testing.T) {
	for _, name := range []string{"lenet5-fashion", "mlp-fashion"} {
		data, err := mustPreset(t, name).YAML()
		if err != nil {
			t.Fatal(err)
		}
		golden := filepath.Join("testdata", name+".golden.yaml")
		if *update {
			if err := os.WriteFile(golden, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatal(err)
		}
		if string(data) != string(want) {
			t.Errorf("%s: YAML() differs from %s:\n%s", name, golden, data)
		}
	}
}

func mustPreset(t *testing.T, name string) Config {
	t.Helper()
	c, err := Preset(name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestEnvIgnoresTestSwitches checks that every test-suite switch in TestEnv is
// ignored by the config loader (make test sets them for every command).
func TestEnvIgnoresTestSwitches(t *testing.T) {
	var env []string
	for _, name := range TestEnv {
		env = append(env, name+"=1")
	}
	vals, err := decodeEnv(env)
	if err != nil || len(vals) != 0 {
		t.Fatalf("decodeEnv(%v) = %v, %v; want no values and no error", env, vals, err)
	}
}
