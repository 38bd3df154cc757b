package configs

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// decodeYAML reads a YAML document into typed values keyed by dotted key. Unknown
// keys, duplicate keys and values of the wrong type are errors naming the file
// (name), the line and the key; all of them are returned, joined.
func decodeYAML(name string, data []byte) (map[string]any, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("configs: %s: %w", name, err)
	}
	d := &yamlDecoder{name: name, schema: theSchema(), values: map[string]any{}}
	if len(doc.Content) > 0 {
		d.mapping(doc.Content[0], "")
	}
	return d.values, errors.Join(d.errs...)
}

// yamlDecoder walks the node tree of one YAML document.
type yamlDecoder struct {
	name   string
	schema *schema
	values map[string]any
	errs   []error
}

func (d *yamlDecoder) errorf(n *yaml.Node, format string, args ...any) {
	d.errs = append(d.errs, fmt.Errorf("configs: %s:%d: "+format, append([]any{d.name, n.Line}, args...)...))
}

// mapping decodes the keys of section prefix ("" for the top level) from n.
func (d *yamlDecoder) mapping(n *yaml.Node, prefix string) {
	n = resolveAlias(n)
	if isNull(n) {
		return // an empty section ("train:" with everything commented out)
	}
	if n.Kind != yaml.MappingNode {
		what := "the document"
		if prefix != "" {
			what = strconv.Quote(prefix)
		}
		d.errorf(n, "%s must be a mapping of keys, got %s", what, nodeKind(n))
		return
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], n.Content[i+1]
		name := strings.ToLower(kn.Value)
		key := name
		if prefix != "" {
			key = prefix + "." + name
		}
		if line, dup := seen[name]; dup {
			d.errorf(kn, "duplicate key %q (first set on line %d)", key, line)
			continue
		}
		seen[name] = kn.Line
		switch l := d.schema.byKey[key]; {
		case d.schema.sections[key]:
			d.mapping(vn, key)
		case l != nil:
			d.leaf(vn, l)
		default:
			d.errorf(kn, "unknown key %q%s", key, didYouMean(key, d.schema.names))
		}
	}
}

// leaf decodes the value of one key from n.
func (d *yamlDecoder) leaf(n *yaml.Node, l *leaf) {
	n = resolveAlias(n)
	if n.Kind == yaml.MappingNode {
		d.errorf(n, "%s: expected a value, got a mapping", l.key)
		return
	}
	var raw any
	if err := n.Decode(&raw); err != nil {
		d.errorf(n, "%s: %v", l.key, err)
		return
	}
	val, err := coerce(raw, l.typ)
	if err != nil {
		d.errorf(n, "%s: %v", l.key, err)
		return
	}
	d.values[l.key] = val
}

func resolveAlias(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	default:
		return "the value " + strconv.Quote(n.Value)
	}
}

// coerce converts raw (a value decoded from YAML, or a string from the environment
// or a flag, or a []string from a slice flag) to type t. Strings are parsed for
// numbers and booleans, and split at commas for lists; numbers never become strings,
// and a fractional number never becomes an integer.
func coerce(raw any, t reflect.Type) (any, error) {
	out := reflect.New(t).Elem()
	if !coerceInto(raw, out) {
		return nil, fmt.Errorf("cannot use %s as %s", describe(raw), typeName(t))
	}
	return out.Interface(), nil
}

func coerceInto(raw any, out reflect.Value) bool {
	if s, ok := raw.(string); ok && out.Kind() != reflect.String {
		raw = strings.TrimSpace(s)
	}
	switch out.Kind() {
	case reflect.String:
		s, ok := raw.(string)
		out.SetString(s)
		return ok
	case reflect.Bool:
		switch r := raw.(type) {
		case bool:
			out.SetBool(r)
			return true
		case string:
			b, err := strconv.ParseBool(r)
			out.SetBool(b)
			return err == nil
		}
		return false
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := toInt(raw)
		if !ok || out.OverflowInt(n) {
			return false
		}
		out.SetInt(n)
		return true
	case reflect.Float32, reflect.Float64:
		f, ok := toFloat(raw)
		if !ok || out.OverflowFloat(f) {
			return false
		}
		out.SetFloat(f)
		return true
	case reflect.Slice:
		var items []any
		switch r := raw.(type) {
		case nil:
		case []any:
			items = r
		case []string:
			for _, s := range r {
				items = append(items, s)
			}
		case string:
			r = strings.TrimSuffix(strings.TrimPrefix(r, "["), "]")
			if strings.TrimSpace(r) != "" {
				for _, s := range strings.Split(r, ",") {
					items = append(items, s)
				}
			}
		default:
			items = []any{raw} // a single value is a one-element list
		}
		// Always non-nil: an explicit empty list must override a preset's list.
		s := reflect.MakeSlice(out.Type(), len(items), len(items))
		for i, it := range items {
			if !coerceInto(it, s.Index(i)) {
				return false
			}
		}
		out.Set(s)
		return true
	}
	panic(fmt.Sprintf("configs: unsupported config field type %s", out.Type()))
}

func toInt(raw any) (int64, bool) {
	switch r := raw.(type) {
	case int:
		return int64(r), true
	case int64:
		return r, true
	case uint64:
		return int64(r), r <= math.MaxInt64
	case float64:
		return int64(r), r == math.Trunc(r) && math.Abs(r) < 1<<63
	case string:
		n, err := strconv.ParseInt(r, 10, 64)
		return n, err == nil
	}
	return 0, false
}

func toFloat(raw any) (float64, bool) {
	switch r := raw.(type) {
	case int:
		return float64(r), true
	case int64:
		return float64(r), true
	case uint64:
		return float64(r), true
	case float64:
		return r, true
	case string:
		f, err := strconv.ParseFloat(r, 64)
		return f, err == nil
	}
	return 0, false
}

// describe renders a raw value for an error message.
func describe(raw any) string {
	switch r := raw.(type) {
	case nil:
		return "an empty value"
	case string:
		return strconv.Quote(r)
	case []any, map[string]any:
		return fmt.Sprintf("%v", r)
	case []string:
		return strconv.Quote(strings.Join(r, ","))
	}
	return fmt.Sprint(raw)
}

// typeName names a field type for an error message.
func typeName(t reflect.Type) string {
	if t.Kind() == reflect.Slice {
		return "a list of " + noun(t.Elem()) + "s"
	}
	switch n := noun(t); n {
	case "integer":
		return "an integer"
	case "boolean":
		return "a boolean (true or false)"
	default:
		return "a " + n
	}
}

func noun(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	}
	return t.String()
}
