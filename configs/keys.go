package configs

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
)

// EnvPrefix starts the name of every environment variable that sets a config key.
const EnvPrefix = "FAULTLINE_"

// TestEnv lists the FAULTLINE_* environment variables that are not config keys:
// switches of the test suite, benchmarks and debugging (make test sets some of
// them for every command it runs). The config loader ignores them; any other
// FAULTLINE_* variable that names no key is an error.
var TestEnv = []string{
	"FAULTLINE_ARTIFACTS",
	"FAULTLINE_BENCH_CHECKPOINTS",
	"FAULTLINE_CRASH_N",
	"FAULTLINE_DEBUG",
	"FAULTLINE_GORGONNX_ALL",
	"FAULTLINE_ONNX_CORPUS",
	"FAULTLINE_ONNX_CORPUS_IMAGES",
	"FAULTLINE_REGEN_ZOO_GOLDEN",
	"FAULTLINE_REQUIRE_ONNX",
	"FAULTLINE_REQUIRE_TORCH",
	"FAULTLINE_SOAK",
}

// leaf is one settable key of Config: a non-struct field inside a section.
type leaf struct {
	key   string       // dotted key, e.g. "train.epochs"
	env   string       // environment variable, e.g. "FAULTLINE_TRAIN_EPOCHS"
	typ   reflect.Type // Go type of the field
	index []int        // field index path from Config
}

// schema is what reflection learns from Config once.
type schema struct {
	leaves   []leaf           // in declaration order
	byKey    map[string]*leaf // dotted key -> leaf
	byEnv    map[string]*leaf // environment variable -> leaf
	sections map[string]bool  // dotted keys that hold other keys
	names    []string         // sections and leaves, for suggestions
	envNames []string         // every env variable name, for suggestions
}

var theSchema = sync.OnceValue(func() *schema {
	s := &schema{
		byKey:    map[string]*leaf{},
		byEnv:    map[string]*leaf{},
		sections: map[string]bool{},
	}
	s.walk(reflect.TypeFor[Config](), "", nil)
	for i := range s.leaves {
		l := &s.leaves[i]
		if other, dup := s.byEnv[l.env]; dup {
			panic(fmt.Sprintf("configs: keys %q and %q share environment variable %s", other.key, l.key, l.env))
		}
		s.byKey[l.key] = l
		s.byEnv[l.env] = l
		s.names = append(s.names, l.key)
		s.envNames = append(s.envNames, l.env)
	}
	return s
})

// walk records the sections and leaves of struct type t under prefix.
func (s *schema) walk(t reflect.Type, prefix string, index []int) {
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
		if !f.IsExported() || name == "" || name == "-" {
			panic(fmt.Sprintf("configs: field %s.%s needs a mapstructure tag", t.Name(), f.Name))
		}
		key := name
		if prefix != "" {
			key = prefix + "." + name
		}
		idx := append(slices.Clone(index), i)
		if f.Type.Kind() == reflect.Struct {
			s.sections[key] = true
			s.names = append(s.names, key)
			s.walk(f.Type, key, idx)
			continue
		}
		s.leaves = append(s.leaves, leaf{
			key:   key,
			env:   EnvVar(key),
			typ:   f.Type,
			index: idx,
		})
	}
}

// Keys returns every valid dotted key ("model.arch", ..., "runtime.device") in the
// order the fields are declared, which is also the order of [Config.YAML].
func Keys() []string {
	s := theSchema()
	keys := make([]string, len(s.leaves))
	for i, l := range s.leaves {
		keys[i] = l.key
	}
	return keys
}

// EnvVar returns the environment variable that sets key: "train.batch_size" is
// FAULTLINE_TRAIN_BATCH_SIZE. It does not check that key exists.
func EnvVar(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// flatten returns the value of every key of c.
func flatten(c Config) map[string]any {
	rv := reflect.ValueOf(c)
	out := map[string]any{}
	for _, l := range theSchema().leaves {
		out[l.key] = rv.FieldByIndex(l.index).Interface()
	}
	return out
}

// assign sets the keys in vals on c; each value must already have its key's type.
func assign(c *Config, vals map[string]any) {
	rv := reflect.ValueOf(c).Elem()
	for key, val := range vals {
		rv.FieldByIndex(theSchema().byKey[key].index).Set(reflect.ValueOf(val))
	}
}

// nest turns dotted keys into nested maps, the shape viper merges.
func nest(flat map[string]any) map[string]any {
	out := map[string]any{}
	for key, val := range flat {
		parts := strings.Split(key, ".")
		m := out
		for _, p := range parts[:len(parts)-1] {
			sub, ok := m[p].(map[string]any)
			if !ok {
				sub = map[string]any{}
				m[p] = sub
			}
			m = sub
		}
		m[parts[len(parts)-1]] = val
	}
	return out
}

// didYouMean returns ` (did you mean "x"?)` for the candidate closest to name, or ""
// if none is close. A candidate whose last dotted part matches name's last part is
// also considered, so "epochs" or "model.epochs" suggests "train.epochs".
func didYouMean(name string, candidates []string) string {
	best, bestScore := "", -1
	for _, c := range candidates {
		score := editDistance(name, c)
		if d := editDistance(lastPart(name), lastPart(c)) + 1; d < score {
			score = d
		}
		if bestScore < 0 || score < bestScore {
			best, bestScore = c, score
		}
	}
	limit := 2
	if len(name) >= 12 {
		limit = 3
	}
	if bestScore < 0 || bestScore > limit {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// lastPart returns the part of a dotted key (or env name) after the last separator.
func lastPart(s string) string {
	if i := strings.LastIndexByte(s, '.'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// editDistance is the optimal-string-alignment distance between a and b:
// insertions, deletions, substitutions and adjacent transpositions cost 1.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}
