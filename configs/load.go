package configs

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// Source says where a configuration comes from. Each layer overrides the ones
// before it: Preset < File < Env < Flags. The zero Source loads the default preset.
type Source struct {
	// Preset names the embedded preset the configuration starts from; "" means
	// DefaultPreset.
	Preset string
	// File is a YAML file overriding the preset; "" means none. Every key in it
	// must be a valid key (see Keys).
	File string
	// Env is the environment in os.Environ form ("NAME=value"); nil means none.
	// Variables starting with EnvPrefix must name a key (see EnvVar); others are
	// ignored.
	Env []string
	// Flags holds parsed command-line flags; only flags named in FlagKeys and
	// explicitly set on the command line (Changed) override.
	Flags *pflag.FlagSet
	// FlagKeys maps a flag name to the key it sets, e.g. "epochs" -> "train.epochs".
	FlagKeys map[string]string
}

// Load builds the configuration described by src and validates it.
//
// Problems with the file, environment or flags (unknown keys, wrong types) are
// returned together, each naming where it came from. If those layers are fine but
// the result fails [Config.Validate], Load returns the loaded Config along with the
// validation error.
func Load(src Source) (Config, error) {
	return load(src, os.ReadFile)
}

// load is Load with the file read by readFile (the fuzz test passes bytes).
func load(src Source, readFile func(string) ([]byte, error)) (Config, error) {
	name := src.Preset
	if name == "" {
		name = DefaultPreset
	}
	base, err := Preset(name)
	if err != nil {
		return Config{}, err
	}

	// Each load has its own viper; the preset is its defaults layer, the file and
	// then the environment are merged into its config layer, and set flags are
	// overrides.
	v := viper.New()
	for key, val := range flatten(base) {
		v.SetDefault(key, val)
	}

	var errs []error
	if src.File != "" {
		vals, err := decodeFile(src.File, readFile)
		errs = append(errs, err)
		errs = append(errs, v.MergeConfigMap(nest(vals)))
	}
	vals, err := decodeEnv(src.Env)
	errs = append(errs, err)
	errs = append(errs, v.MergeConfigMap(nest(vals)))
	vals, err = decodeFlags(src.Flags, src.FlagKeys)
	errs = append(errs, err)
	for key, val := range vals {
		v.Set(key, val)
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, err
	}

	var cfg Config
	if err := v.UnmarshalExact(&cfg); err != nil {
		return Config{}, fmt.Errorf("configs: %w", err)
	}
	cfg.normalize()
	return cfg, cfg.Validate()
}

// decodeFile reads a YAML config file with readFile and decodes it.
func decodeFile(path string, readFile func(string) ([]byte, error)) (map[string]any, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, fmt.Errorf("configs: %w", err)
	}
	return decodeYAML(path, data)
}

// decodeEnv picks the FAULTLINE_* variables out of env and decodes their values.
func decodeEnv(env []string) (map[string]any, error) {
	s := theSchema()
	vals := map[string]any{}
	var errs []error
	for _, kv := range env {
		name, raw, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, EnvPrefix) || slices.Contains(TestEnv, name) {
			continue
		}
		l, ok := s.byEnv[name]
		if !ok {
			errs = append(errs, fmt.Errorf("configs: environment variable %s does not name a config key%s",
				name, didYouMean(name, s.envNames)))
			continue
		}
		val, err := coerce(raw, l.typ)
		if err != nil {
			errs = append(errs, fmt.Errorf("configs: environment variable %s: %s: %w", name, l.key, err))
			continue
		}
		vals[l.key] = val
	}
	return vals, errors.Join(errs...)
}

// decodeFlags decodes the flags of fs named in flagKeys that were set explicitly.
func decodeFlags(fs *pflag.FlagSet, flagKeys map[string]string) (map[string]any, error) {
	vals := map[string]any{}
	if fs == nil {
		return vals, nil
	}
	s := theSchema()
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(flagKeys)) {
		key := flagKeys[name]
		l, ok := s.byKey[key]
		if !ok {
			errs = append(errs, fmt.Errorf("configs: flag --%s maps to unknown key %q%s", name, key, didYouMean(key, s.names)))
			continue
		}
		f := fs.Lookup(name)
		if f == nil {
			errs = append(errs, fmt.Errorf("configs: flag --%s (for %s) is not defined", name, key))
			continue
		}
		if !f.Changed {
			continue
		}
		var raw any = f.Value.String()
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			raw = sv.GetSlice()
		}
		val, err := coerce(raw, l.typ)
		if err != nil {
			errs = append(errs, fmt.Errorf("configs: flag --%s: %s: %w", name, key, err))
			continue
		}
		vals[key] = val
	}
	return vals, errors.Join(errs...)
}
