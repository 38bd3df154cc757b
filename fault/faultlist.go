package fault

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
)

// ReadFaults reads a fault list (JSONL), with outcomes when present. Every line
// must be a valid fault; errors name the file and line.
func ReadFaults(path string) ([]Fault, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("fault: %w", err)
	}
	defer f.Close()
	return ParseFaults(f, path)
}

// ParseFaults reads a fault list (JSONL) from r; name (a file name) labels errors,
// which also give the line. Blank lines are skipped; every other line must be one
// valid fault (see [Fault.Validate]) with nothing after it, and its outcome, when
// present, must be consistent (see [Outcome.Validate]).
func ParseFaults(r io.Reader, name string) ([]Fault, error) {
	var out []Fault
	err := EachFault(r, name, func(f *Fault) error {
		out = append(out, *f)
		return nil
	})
	return out, err
}

// EachFault streams a fault list (JSONL) from r, calling fn with each fault in
// file order, so that lists too large to hold in memory can be summarised. The
// fault is reused after fn returns. Parsing is as [ParseFaults]; an error from
// fn stops the walk and is returned as is.
func EachFault(r io.Reader, name string, fn func(*Fault) error) error {
	fr := newFaultReader(r, name)
	for {
		if err := fr.next(); err != nil {
			return err
		}
		if !fr.ok {
			return nil
		}
		if err := fn(&fr.cur); err != nil {
			return err
		}
	}
}

// faultReader reads a fault list one fault at a time (cur, while ok).
type faultReader struct {
	sc   *bufio.Scanner
	name string
	line int
	cur  Fault
	ok   bool
}

func newFaultReader(r io.Reader, name string) *faultReader {
	fr := &faultReader{sc: bufio.NewScanner(r), name: name}
	fr.sc.Buffer(make([]byte, 64<<10), 16<<20)
	return fr
}

// next reads the next fault, checked as ParseFaults checks it; ok turns false
// at the end.
func (r *faultReader) next() error {
	for r.sc.Scan() {
		r.line++
		b := bytes.TrimSpace(r.sc.Bytes())
		if len(b) == 0 {
			continue
		}
		x, err := parseFault(b)
		if err != nil {
			return fmt.Errorf("fault: %s line %d: %w", r.name, r.line, err)
		}
		r.cur, r.ok = x, true
		return nil
	}
	r.ok = false
	if err := r.sc.Err(); err != nil {
		return fmt.Errorf("fault: %s line %d: %w", r.name, r.line+1, err)
	}
	return nil
}

// parseFault decodes and checks one line of a fault list.
func parseFault(b []byte) (Fault, error) {
	var x Fault
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&x); err != nil {
		return x, err
	}
	if dec.More() {
		return x, fmt.Errorf("more than one JSON value on the line")
	}
	if err := x.Validate(); err != nil {
		return x, err
	}
	if x.Outcome != nil {
		if err := x.Outcome.Validate(); err != nil {
			return x, fmt.Errorf("outcome: %w", err)
		}
	}
	return x, nil
}

// Validate checks that an outcome's counts are consistent: none negative, every
// image masked, SDC, DUE or inactive, and the top-5 and misclassified counts
// within the images (top-5 within the active ones).
func (o *Outcome) Validate() error {
	if o.Images < 0 || o.Masked < 0 || o.SDC < 0 || o.DUE < 0 || o.Inactive < 0 || o.Top5 < 0 || o.Misclassified < 0 {
		return fmt.Errorf("negative count in %+v", *o)
	}
	if sum := o.Masked + o.SDC + o.DUE + o.Inactive; sum != o.Images || sum < 0 {
		return fmt.Errorf("masked %d + sdc %d + due %d + inactive %d is not images %d", o.Masked, o.SDC, o.DUE, o.Inactive, o.Images)
	}
	if o.Top5 > o.Images-o.Inactive || o.Misclassified > o.Images {
		return fmt.Errorf("top5 %d exceeds the %d active images or misclassified %d the %d images", o.Top5, o.Images-o.Inactive, o.Misclassified, o.Images)
	}
	return nil
}

// ParseHeader decodes and checks a campaign header (campaign.json); name labels
// errors. Unknown fields are errors, so a header from a newer faultline is not
// silently misread.
func ParseHeader(b []byte, name string) (Header, error) {
	var h Header
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return h, fmt.Errorf("fault: %s: %w", name, err)
	}
	if dec.More() {
		return h, fmt.Errorf("fault: %s: more than one JSON value", name)
	}
	if err := h.Validate(); err != nil {
		return h, fmt.Errorf("fault: %s: %w", name, err)
	}
	return h, nil
}

// Validate checks a campaign header on its own.
func (h *Header) Validate() error {
	switch {
	case h.Kind != HeaderKind:
		return fmt.Errorf("kind %q, want %q", h.Kind, HeaderKind)
	case h.SchemaVersion != 1:
		return fmt.Errorf("schema_version %d, this faultline reads 1", h.SchemaVersion)
	case h.Mode != "reference" && h.Mode != "batched":
		return fmt.Errorf("mode %q: want reference or batched", h.Mode)
	case h.Faults < 0:
		return fmt.Errorf("faults %d is negative", h.Faults)
	case h.Images < 1:
		return fmt.Errorf("images %d: want at least 1", h.Images)
	case h.ImagesPerFault < 0 || h.ImagesPerFault > h.Images:
		return fmt.Errorf("images_per_fault %d outside 0..%d", h.ImagesPerFault, h.Images)
	case h.Block < 1:
		return fmt.Errorf("block %d: want at least 1", h.Block)
	case h.BatchSize < 0:
		return fmt.Errorf("batch_size %d is negative", h.BatchSize)
	case h.Shards < 1 || h.Shard < 0 || h.Shard >= h.Shards:
		return fmt.Errorf("shard %d of %d", h.Shard, h.Shards)
	case !(h.GoldenAccuracy >= 0 && h.GoldenAccuracy <= 1):
		return fmt.Errorf("golden_accuracy %v outside [0,1]", h.GoldenAccuracy)
	}
	return nil
}
