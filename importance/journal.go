package importance

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"

	"github.com/faultline/faultline/fault"
	"github.com/faultline/faultline/internal/journal"
	"github.com/faultline/faultline/internal/torch"
)

// JournalFile, in the output directory, records the outcome of every block of
// injections as it finishes, so that an interrupted run (killed, out of time,
// out of disk) resumes where it stopped: a rerun with the same arguments, on
// the same model (by fault.Loaded.Identity: a checkpoint's content SHA-256, or
// fault.ModelSHA256 of a model in memory), replays
// the recorded blocks instead of injecting them again, and its results equal an
// uninterrupted run's. It is removed once the results are written.
const JournalFile = "journal.jsonl"

// journalKind identifies the journal's first line.
const journalKind = "faultline.importance_journal"

// journalHeader is the journal's first line: what the recorded outcomes depend
// on. A rerun resumes only when its header is the same.
type journalHeader struct {
	journal.Source
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

// replayLog replays the blocks an earlier run recorded, in order, then appends
// the blocks this run injects.
type replayLog struct {
	j      *journal.Journal
	blocks []journalBlock
	next   int // the next recorded block to replay
}

// newJournalHeader describes a run for its journal.
func newJournalHeader(o *Options, ld *fault.Loaded, threads int, imagesHash string, images int) (journalHeader, error) {
	id, err := ld.Identity()
	if err != nil {
		return journalHeader{}, err
	}
	src := journal.NewSource(journalKind, ld.Checkpoint, id, ld.Dataset)
	return journalHeader{Source: src, ImagesSHA256: imagesHash, Images: images, Device: torch.DeviceName(ld.Model.Device()), Threads: threads,
		Target: o.Target, Mode: o.Mode, Budget: o.Budget, Tau: o.Tau, Alpha: o.Alpha, Score: o.Score,
		ScoreFloor: o.ScoreFloor, Cap: o.Cap, SensBatches: o.SensBatches, SensBatchSize: o.SensBatchSize,
		Seed: o.Seed, BatchSize: o.BatchSize, Block: blockSize(*o, images), Stratify: o.Stratify, Allocation: string(o.Allocation)}, nil
}

// openJournal opens dir's journal for h (see [journal.Open]). Recorded blocks
// are kept up to the first that does not parse or whose outcomes are not
// consistent.
func openJournal(dir string, h journalHeader, replace bool) (*replayLog, error) {
	j, err := journal.Open(filepath.Join(dir, JournalFile), "importance", h, replace)
	if err != nil {
		return nil, err
	}
	jn := &replayLog{j: j}
	for _, rec := range j.Records() {
		var b journalBlock
		if err := json.Unmarshal(rec, &b); err != nil || len(b.Keys) == 0 || len(b.Keys) != len(b.Outcomes) || !validOutcomes(b.Outcomes) {
			break
		}
		jn.blocks = append(jn.blocks, b)
	}
	return jn, nil
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

// replay returns the outcomes of the next recorded block when it is the block
// of phase and keys; ok is false when every recorded block has been replayed.
// A recorded block that is not this one means the run is not repeating the
// recorded one, which the header should have ruled out: an error.
func (jn *replayLog) replay(phase string, keys []int64) ([]fault.Outcome, bool, error) {
	if jn.next >= len(jn.blocks) {
		return nil, false, nil
	}
	b := jn.blocks[jn.next]
	if b.Phase != phase || !slices.Equal(b.Keys, keys) {
		return nil, false, fmt.Errorf("importance: %s: recorded block %d (%s, %d faults) is not the block this run draws (%s, %d faults); remove the journal to start over",
			jn.j.Path(), jn.next+1, b.Phase, len(b.Keys), phase, len(keys))
	}
	jn.next++
	return b.Outcomes, true, nil
}

// record appends a block and syncs it to disk. (Should a recorded block ever
// fail its checks on reading, replay stops there and the blocks after it are
// injected again: work is lost, results are not wrong.)
func (jn *replayLog) record(phase string, keys []int64, outcomes []fault.Outcome) error {
	if err := jn.j.Append(journalBlock{Phase: phase, Keys: keys, Outcomes: outcomes}); err != nil {
		return fmt.Errorf("importance: %w", err)
	}
	return nil
}

// recorded is the number of injections the journal holds from an earlier run.
func (jn *replayLog) recorded() int64 {
	var n int64
	for _, b := range jn.blocks {
		n += int64(len(b.Keys))
	}
	return n
}

// close closes the journal; remove also deletes it (the results are written).
func (jn *replayLog) close(remove bool) error { return jn.j.Close(remove) }
