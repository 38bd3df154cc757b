package importance

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/faultline/faultline/fault"
	"github.com/faultline/faultline/internal/atomicfile"
	"github.com/faultline/faultline/model"
)

// JournalFile, in the output directory, records the outcome of every block of
// injections as it finishes, so that an interrupted run (killed, out of time,
// out of disk) resumes where it stopped: a rerun with the same arguments replays
// the recorded blocks instead of injecting them again, and its results equal an
// uninterrupted run's. It is removed once the results are written.
const JournalFile = "journal.jsonl"

// journalKind identifies the journal's first line.
const journalKind = "faultline.importance_journal"

// journalHeader is the journal's first line: what the recorded outcomes depend
// on. A rerun resumes only when its header is the same.
type journalHeader struct {
	Kind          string  `json:"kind"`
	SchemaVersion int     `json:"schema_version"`
	Checkpoint    string  `json:"checkpoint"`
	ModelSHA256   string  `json:"model_json_sha256"` // of model.json, which holds the weights' sums
	Dataset       string  `json:"dataset"`
	ImagesSHA256  string  `json:"images_sha256"`
	Images        int     `json:"images"`
	Device        string  `json:"device"`
	Threads       int     `json:"threads"`
	Target        Target  `json:"target"`
	Mode          Mode    `json:"mode"`
	Budget        int     `json:"budget"`
	Tau           float64 `json:"tau"`
	Alpha         float64 `json:"alpha"`
	Score         Score   `json:"score"`
	ScoreFloor    float64 `json:"score_floor"`
	Cap           float64 `json:"cap"`
	SensBatches   int     `json:"sens_batches"`
	SensBatchSize int     `json:"sens_batch_size"`
	Seed          int64   `json:"seed"`
	BatchSize     int     `json:"batch_size"`
	Block         int     `json:"block"`
	Stratify      bool    `json:"stratify"`
	Allocation    string  `json:"allocation"`
}

// journalBlock is one line after the header: a block of injections of one
// phase, the fault keys in the order they ran and their outcomes.
type journalBlock struct {
	Phase    string          `json:"phase"`
	Keys     []int64         `json:"keys"`
	Outcomes []fault.Outcome `json:"outcomes"`
}

// journal replays the blocks an earlier run recorded, in order, then appends
// the blocks this run injects.
type journal struct {
	path   string
	out    *os.File
	blocks []journalBlock
	next   int // the next recorded block to replay
}

// newJournalHeader describes a run for its journal.
func newJournalHeader(o *Options, threads int, dataset, imagesHash string, images int) (journalHeader, error) {
	b, err := os.ReadFile(filepath.Join(o.Checkpoint, model.MetadataFile))
	if err != nil {
		return journalHeader{}, fmt.Errorf("importance: %w", err)
	}
	sum := sha256.Sum256(b)
	return journalHeader{Kind: journalKind, SchemaVersion: 1, Checkpoint: o.Checkpoint, ModelSHA256: hex.EncodeToString(sum[:]),
		Dataset: dataset, ImagesSHA256: imagesHash, Images: images, Device: fmt.Sprint(o.Device), Threads: threads,
		Target: o.Target, Mode: o.Mode, Budget: o.Budget, Tau: o.Tau, Alpha: o.Alpha, Score: o.Score,
		ScoreFloor: o.ScoreFloor, Cap: o.Cap, SensBatches: o.SensBatches, SensBatchSize: o.SensBatchSize,
		Seed: o.Seed, BatchSize: o.BatchSize, Block: blockSize(*o, images), Stratify: o.Stratify, Allocation: string(o.Allocation)}, nil
}

// openJournal opens dir's journal for h: it reads the blocks recorded by an
// earlier run with the same header (dropping a last line cut short by a kill)
// and appends from there; without a journal it starts one. A journal of a run
// with other arguments is an error naming the first field that differs.
func openJournal(dir string, h journalHeader) (*journal, error) {
	j := &journal{path: filepath.Join(dir, JournalFile)}
	data, err := os.ReadFile(j.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		line, err := json.Marshal(h)
		if err != nil {
			return nil, err
		}
		if err := atomicfile.WriteFile(j.path, append(line, '\n'), 0o644); err != nil {
			return nil, fmt.Errorf("importance: %w", err)
		}
	case err != nil:
		return nil, fmt.Errorf("importance: %w", err)
	default:
		keep, err := j.read(data, h)
		if err != nil {
			return nil, err
		}
		if keep != len(data) {
			if err := atomicfile.WriteFile(j.path, data[:keep], 0o644); err != nil {
				return nil, fmt.Errorf("importance: %w", err)
			}
		}
	}
	if j.out, err = os.OpenFile(j.path, os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
		return nil, fmt.Errorf("importance: %w", err)
	}
	return j, nil
}

// read parses a journal's data: the header must equal h; the blocks after it
// are kept up to the first line that is cut short or does not parse (a kill
// during a write), whose offset it returns.
func (j *journal) read(data []byte, h journalHeader) (int, error) {
	nl := bytes.IndexByte(data, '\n')
	if nl < 0 {
		return 0, fmt.Errorf("importance: %s: no complete header line; remove it to start over", j.path)
	}
	var prev journalHeader
	dec := json.NewDecoder(bytes.NewReader(data[:nl]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&prev); err != nil || prev.Kind != journalKind {
		return 0, fmt.Errorf("importance: %s: not an importance journal (%v); remove it or use another --out", j.path, err)
	}
	if prev != h {
		return 0, fmt.Errorf("importance: %s is the journal of another run (%s); rerun with the same arguments to resume, or remove it to start over",
			j.path, diffHeader(prev, h))
	}
	keep := nl + 1
	sc := bufio.NewScanner(bytes.NewReader(data[keep:]))
	sc.Buffer(make([]byte, 1<<20), 256<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if keep+len(line) >= len(data) { // no newline after it: cut short
			break
		}
		var b journalBlock
		if err := json.Unmarshal(line, &b); err != nil || len(b.Keys) == 0 || len(b.Keys) != len(b.Outcomes) || !validOutcomes(b.Outcomes) {
			break
		}
		j.blocks = append(j.blocks, b)
		keep += len(line) + 1
	}
	return keep, nil
}

// validOutcomes reports whether every outcome's counts are consistent.
func validOutcomes(os []fault.Outcome) bool {
	for i := range os {
		if os[i].Validate() != nil || os[i].Images == 0 {
			return false
		}
	}
	return true
}

// diffHeader names the first field that differs between two headers.
func diffHeader(a, b journalHeader) string {
	var ma, mb map[string]any
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	_ = json.Unmarshal(x, &ma)
	_ = json.Unmarshal(y, &mb)
	keys := make([]string, 0, len(ma))
	for k := range ma {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if fmt.Sprint(ma[k]) != fmt.Sprint(mb[k]) {
			return fmt.Sprintf("%s: %v before, %v now", k, ma[k], mb[k])
		}
	}
	return "?"
}

// replay returns the outcomes of the next recorded block when it is the block
// of phase and keys; ok is false when every recorded block has been replayed.
// A recorded block that is not this one means the run is not repeating the
// recorded one, which the header should have ruled out: an error.
func (j *journal) replay(phase string, keys []int64) ([]fault.Outcome, bool, error) {
	if j.next >= len(j.blocks) {
		return nil, false, nil
	}
	b := j.blocks[j.next]
	if b.Phase != phase || !slices.Equal(b.Keys, keys) {
		return nil, false, fmt.Errorf("importance: %s: recorded block %d (%s, %d faults) is not the block this run draws (%s, %d faults); remove the journal to start over",
			j.path, j.next+1, b.Phase, len(b.Keys), phase, len(keys))
	}
	j.next++
	return b.Outcomes, true, nil
}

// record appends a block and syncs it to disk.
func (j *journal) record(phase string, keys []int64, outcomes []fault.Outcome) error {
	line, err := json.Marshal(journalBlock{Phase: phase, Keys: keys, Outcomes: outcomes})
	if err != nil {
		return err
	}
	if _, err := j.out.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("importance: %s: %w (a rerun resumes from the blocks before it)", j.path, err)
	}
	if err := j.out.Sync(); err != nil {
		return fmt.Errorf("importance: sync %s: %w", j.path, err)
	}
	return nil
}

// recorded is the number of injections the journal holds from an earlier run.
func (j *journal) recorded() int64 {
	var n int64
	for _, b := range j.blocks {
		n += int64(len(b.Keys))
	}
	return n
}

// close closes the journal; remove also deletes it (the results are written).
func (j *journal) close(remove bool) error {
	err := j.out.Close()
	if remove {
		if e := os.Remove(j.path); e != nil && !errors.Is(e, os.ErrNotExist) {
			return e
		}
	}
	return err
}
