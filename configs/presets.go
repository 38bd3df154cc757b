package configs

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
)

// DefaultPreset is the preset Default returns and Load starts from when
// Source.Preset is empty.
const DefaultPreset = "lenet5-fashion"

//go:embed presets/*.yaml
var presetFS embed.FS

// Presets returns the names of the embedded presets, sorted.
func Presets() []string {
	entries, err := fs.ReadDir(presetFS, "presets")
	if err != nil {
		panic(fmt.Sprintf("configs: embedded presets: %v", err))
	}
	var names []string
	for _, e := range entries {
		if name, ok := strings.CutSuffix(e.Name(), ".yaml"); ok {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// Preset returns the embedded preset called name (one of Presets). A preset sets
// every key; it is not validated here (Load validates).
func Preset(name string) (Config, error) {
	known := Presets()
	if !slices.Contains(known, name) {
		return Config{}, fmt.Errorf("configs: unknown preset %q (known: %s)", name, strings.Join(known, ", "))
	}
	file := path.Join("presets", name+".yaml")
	data, err := presetFS.ReadFile(file)
	if err != nil {
		return Config{}, fmt.Errorf("configs: %w", err)
	}
	vals, err := decodeYAML(file, data)
	if err != nil {
		return Config{}, err
	}
	var missing []string
	for _, key := range Keys() {
		if _, ok := vals[key]; !ok {
			missing = append(missing, key)
		}
	}
	if len(missing) > 0 {
		return Config{}, fmt.Errorf("configs: %s does not set %s", file, strings.Join(missing, ", "))
	}
	var cfg Config
	assign(&cfg, vals)
	cfg.normalize()
	return cfg, nil
}

// Default returns the default configuration, the DefaultPreset preset.
func Default() Config {
	cfg, err := Preset(DefaultPreset)
	if err != nil {
		panic(err) // the embedded presets are tested
	}
	return cfg
}
