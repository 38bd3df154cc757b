// Package journal keeps the progress of a long run in a JSON-lines file, so that
// a run that was killed (or stopped, or ran out of disk) resumes where it
// stopped instead of starting over. The first line is a header describing the
// run: a rerun resumes only when its header is byte for byte the same. Every
// later line is one record, appended and synced to disk as work finishes; a
// last line cut short by a kill is dropped when the journal is opened again.
package journal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/faultline/faultline/internal/atomicfile"
)

// Source heads a journal header: the kind of journal and what the run reads,
// the model (by name and content) and the data set. Embedded first in a
// command's header, its fields lead the header line.
type Source struct {
	Kind          string `json:"kind"`
	SchemaVersion int    `json:"schema_version"`
	// Checkpoint names the model: its checkpoint directory, or a label for a
	// model in memory (fault.Loaded.Checkpoint).
	Checkpoint string `json:"checkpoint"`
	// CheckpointSHA256 identifies what the model computes
	// (fault.Loaded.Identity): a checkpoint's model.ContentSHA256, or
	// fault.ModelSHA256 of a model in memory. A rerun on another model has
	// another header, and does not resume.
	CheckpointSHA256 string `json:"checkpoint_sha256"`
	Dataset          string `json:"dataset"`
}

// NewSource describes a run of journal kind (schema version 1) on the model
// named checkpoint whose identity is sum, and on the data set.
func NewSource(kind, checkpoint, sum, dataset string) Source {
	return Source{Kind: kind, SchemaVersion: 1, Checkpoint: checkpoint, CheckpointSHA256: sum, Dataset: dataset}
}

// Journal is an open journal: its recorded lines and the file to append to.
type Journal struct {
	path    string
	out     *os.File
	records [][]byte
	end     int    // offset after the last complete record read
	unlock  func() // releases the lock on the journal's directory
}

// Lock takes an exclusive lock on directory dir for this process, so that two
// runs never write into one output directory at once (the second would
// interleave its records with the first's). The kernel drops the lock when the
// process ends, however it ends. A directory locked by another process is an
// error that says so.
func Lock(dir, what string) (unlock func(), err error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: another run is writing into %s; wait for it to finish or stop it", what, dir)
		}
		return nil, fmt.Errorf("%s: lock %s: %w", what, dir, err)
	}
	return func() { f.Close() }, nil
}

// Open opens the journal at path for a run described by header (a struct that
// marshals to a JSON object). When the file exists, its header must be the same
// (else the error names the first field that differs) and its complete records
// are kept, a cut last line dropped; otherwise a journal with just the header is
// written. what names the command in errors. With replace, a journal of
// another run is not an error but replaced by a new one (for callers that
// restart rather than resume when their arguments change).
func Open(path, what string, header any, replace bool) (*Journal, error) {
	h, err := json.Marshal(header)
	if err != nil {
		return nil, err
	}
	unlock, err := Lock(filepath.Dir(path), what)
	if err != nil {
		return nil, err
	}
	j, err := open(path, what, h, replace)
	if err != nil {
		unlock()
		return nil, err
	}
	j.unlock = unlock
	return j, nil
}

// open is Open once the directory is locked.
func open(path, what string, h []byte, replace bool) (*Journal, error) {
	j := &Journal{path: path}
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	fresh := err != nil // no journal
	if !fresh {
		nl := bytes.IndexByte(data, '\n')
		switch {
		case nl >= 0 && bytes.Equal(data[:nl], h):
			j.keep(data, nl+1)
			if err := j.cut(data); err != nil {
				return nil, fmt.Errorf("%s: %w", what, err)
			}
		case replace:
			fresh = true
		case nl < 0:
			return nil, fmt.Errorf("%s: %s has no complete header line; remove it to start over", what, path)
		default:
			return nil, fmt.Errorf("%s: %s is the journal of another run (%s); rerun with the same arguments to resume, or remove it to start over",
				what, path, diff(data[:nl], h))
		}
	}
	if fresh {
		if err := atomicfile.WriteFile(path, append(h, '\n'), 0o644); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
	}
	if j.out, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return j, nil
}

// keep collects the complete records of data from offset off on, up to a line
// cut short by a kill (or one that is not JSON).
func (j *Journal) keep(data []byte, off int) {
	j.end = off
	for j.end < len(data) {
		n := bytes.IndexByte(data[j.end:], '\n')
		if n < 0 || !json.Valid(data[j.end:j.end+n]) {
			return
		}
		j.records = append(j.records, data[j.end:j.end+n])
		j.end += n + 1
	}
}

// cut drops what follows the complete records from the file, by truncating
// it as a campaign's resume does: the records before stay as they are, and it
// needs no disk space.
func (j *Journal) cut(data []byte) error {
	if j.end == len(data) {
		return nil
	}
	f, err := os.OpenFile(j.path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(int64(j.end)); err != nil {
		return err
	}
	return f.Sync()
}

// diff names the first top-level field of two JSON objects that differs.
func diff(a, b []byte) string {
	var ma, mb map[string]json.RawMessage
	if json.Unmarshal(a, &ma) != nil || json.Unmarshal(b, &mb) != nil {
		return "unreadable header"
	}
	keys := make([]string, 0, len(ma)+len(mb))
	for k := range ma {
		keys = append(keys, k)
	}
	for k := range mb {
		if _, ok := ma[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !bytes.Equal(ma[k], mb[k]) {
			return fmt.Sprintf("%s: %s before, %s now", k, orNone(ma[k]), orNone(mb[k]))
		}
	}
	return "?"
}

func orNone(b []byte) string {
	if b == nil {
		return "none"
	}
	return string(b)
}

// Records returns the records found when the journal was opened, in order.
func (j *Journal) Records() [][]byte { return j.records }

// Path is the journal's file.
func (j *Journal) Path() string { return j.path }

// Append records v (marshalled to one JSON line) and syncs it to disk.
func (j *Journal) Append(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := j.out.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("%s: %w (a rerun resumes from the records before it)", j.path, err)
	}
	if err := j.out.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", j.path, err)
	}
	return nil
}

// Close closes the journal; with remove (the run's results are written) it
// also deletes it.
func (j *Journal) Close(remove bool) error {
	defer j.unlock()
	err := j.out.Close()
	if remove {
		if e := os.Remove(j.path); e != nil && !errors.Is(e, os.ErrNotExist) {
			return e
		}
	}
	return err
}
