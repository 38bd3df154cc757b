package configs

import (
	"bytes"
	"fmt"

	"go.yaml.in/yaml/v3"
)

// YAML renders c as a YAML document with every key, in the order of Keys. Loading
// the result as a file gives back c.
func (c Config) YAML() ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return nil, fmt.Errorf("configs: encode yaml: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("configs: encode yaml: %w", err)
	}
	return buf.Bytes(), nil
}
