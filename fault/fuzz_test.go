package fault

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// The fuzz targets check that the parsers of fault lists (JSONL, as `inject
// --faults-file` replays them and campaigns resume and merge them) and of campaign
// headers never panic, that what they accept passes validation, and that it
// survives being written and read again unchanged.

func faultSeeds(t testing.TB) [][]byte {
	b, err := os.ReadFile(filepath.Join("testdata", "faults.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	seeds := [][]byte{b, nil, []byte("\n\n"), []byte("{}"), []byte(`{"id":1} {"id":2}`)}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if len(line) > 0 {
			seeds = append(seeds, line, line[:len(line)/2])
		}
	}
	return seeds
}

// encodeFaults writes faults as JSONL, the way a campaign does.
func encodeFaults(t *testing.T, fs []Fault) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for i := range fs {
		if err := enc.Encode(&fs[i]); err != nil {
			t.Fatalf("encode fault %d: %v", i, err)
		}
	}
	return buf.Bytes()
}

func FuzzParseFaults(f *testing.F) {
	for _, s := range faultSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fs, err := ParseFaults(bytes.NewReader(data), "fuzz.jsonl")
		if err != nil {
			return
		}
		if lines := bytes.Count(data, []byte("\n")) + 1; len(fs) > lines {
			t.Fatalf("%d faults from %d lines", len(fs), lines)
		}
		for i := range fs {
			x := fs[i]
			if err := x.Validate(); err != nil {
				t.Fatalf("accepted fault %d fails validation: %v", i, err)
			}
			if x.Outcome != nil {
				if err := x.Outcome.Validate(); err != nil {
					t.Fatalf("accepted outcome %d fails validation: %v", i, err)
				}
			}
		}
		once := encodeFaults(t, fs)
		again, err := ParseFaults(bytes.NewReader(once), "again.jsonl")
		if err != nil {
			t.Fatalf("rereading what was written: %v\n%s", err, once)
		}
		if twice := encodeFaults(t, again); !bytes.Equal(once, twice) {
			t.Fatalf("round trip changed the list:\n%s\n%s", once, twice)
		}
	})
}

func FuzzParseHeader(f *testing.F) {
	b, err := os.ReadFile(filepath.Join("testdata", "campaign.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add(b[:len(b)/2])
	f.Add([]byte(`{"kind":"faultline.fault_campaign_header","schema_version":1,"mode":"reference","faults":3,"images":2,"block":1,"shards":2,"shard":1,"golden_accuracy":1}`))
	f.Add([]byte(`{"kind":"faultline.fault_campaign_header","schema_version":1,"mode":"batched","images":1,"block":1,"shards":1,"shard":1}`))
	f.Add([]byte("null"))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ParseHeader(data, "fuzz.json")
		if err != nil {
			return
		}
		if err := h.Validate(); err != nil {
			t.Fatalf("accepted header fails validation: %v", err)
		}
		once, err := json.Marshal(h)
		if err != nil {
			t.Fatal(err)
		}
		h2, err := ParseHeader(once, "again.json")
		if err != nil {
			t.Fatalf("rereading what was written: %v\n%s", err, once)
		}
		if twice, _ := json.Marshal(h2); !bytes.Equal(once, twice) {
			t.Fatalf("round trip changed the header:\n%s\n%s", once, twice)
		}
	})
}
