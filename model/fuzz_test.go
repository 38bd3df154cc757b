package model

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseMetadata checks the decoding of model.json, which comes with an
// untrusted checkpoint directory: it never panics, what it accepts passes
// Validate, and writing accepted metadata and reading it again changes nothing.
func FuzzParseMetadata(f *testing.F) {
	paths, err := filepath.Glob(filepath.Join("testdata", "*.model.json"))
	if err != nil || len(paths) == 0 {
		f.Fatalf("no seed metadata in testdata: %v", err)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)/3])
	}
	for _, s := range []string{
		"", "null", "{}", `{"kind":"faultline.checkpoint","schema_version":1}`,
		`{"kind":"faultline.checkpoint","schema_version":1,"arch":"mlp","spec":{"arch":"mlp","in_channels":1,"height":2,"width":2,"classes":2,"width_multiplier":1,"hidden":[3]},"normalization":{"mean":[0.5],"std":[0]}}`,
		`{"kind":"faultline.checkpoint","schema_version":1,"arch":"mlp","spec":{"arch":"mlp","in_channels":1,"height":2,"width":2,"classes":2,"width_multiplier":1,"hidden":[3]},"extra":{"clamps":{"fc1":{"min":1,"max":0}}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		meta, err := ParseMetadata(data, "fuzz.json")
		if err != nil {
			return
		}
		if err := meta.Validate(); err != nil {
			t.Fatalf("accepted metadata fails validation: %v", err)
		}
		once, err := json.Marshal(meta)
		if err != nil {
			t.Fatalf("encode accepted metadata: %v", err)
		}
		again, err := ParseMetadata(once, "again.json")
		if err != nil {
			t.Fatalf("rereading what was written: %v\n%s", err, once)
		}
		if twice, _ := json.Marshal(again); !bytes.Equal(once, twice) {
			t.Fatalf("round trip changed the metadata:\n%s\n%s", once, twice)
		}
	})
}
