package eval

import (
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/faultline/faultline/eval/deepvigor"
	"github.com/faultline/faultline/fault"
	"github.com/faultline/faultline/internal/journal"
	"github.com/faultline/faultline/internal/torch"
)

// JournalFile, in the output directory, records every analysed channel and every
// validated unit as it finishes, so that an interrupted `eval vf` (killed, out
// of time) resumes where it stopped: a rerun with the same arguments, on the
// same model (by fault.Loaded.Identity: a checkpoint's content SHA-256, or
// fault.ModelSHA256 of a model in memory), takes the recorded channels and units over instead of computing them again, and writes
// what an uninterrupted run writes. It is removed once vf.json is written.
const JournalFile = "journal.jsonl"

// vfJournalHeader is the journal's first line: what the recorded results depend
// on. A rerun resumes only when its header is the same.
type vfJournalHeader struct {
	journal.Source
	Images           int                    `json:"images"`
	Device           string                 `json:"device"`
	Threads          int                    `json:"threads"`
	Target           string                 `json:"target"`
	Ratio            float64                `json:"sampling_ratio"`
	Precision        float64                `json:"lvf_precision,omitempty"`
	Semantics        deepvigor.Semantics    `json:"semantics"`
	TailCheck        bool                   `json:"tail_check"`
	Seed             int64                  `json:"seed"`
	Layers           []string               `json:"layers"`
	PerOctave        int                    `json:"thresholds_per_octave"`
	WeightErrors     deepvigor.WeightErrors `json:"weight_errors"`
	Validate         float64                `json:"validate"`
	ValidateNeurons  int                    `json:"validate_neurons"`
	ValidateOperands int                    `json:"validate_operands"`
	BatchSize        int                    `json:"batch_size"`
}

// vfRecord is one line after the header: an analysed channel or a validated unit.
type vfRecord struct {
	Phase   string                   `json:"phase"` // analysis or validation
	Layer   string                   `json:"layer,omitempty"`
	Channel *deepvigor.ChannelResult `json:"channel,omitempty"`
	Unit    *Unit                    `json:"unit,omitempty"`
}

// channelKey is a channel analysed at some positions (fmt.Sprint of them): a
// layer drawn again under Precision may hold a channel at other positions.
type channelKey struct {
	layer     string
	channel   int
	positions string
}

type unitKey struct {
	target, layer     string
	channel, position int
}

// vfJournal is an open journal: the records of an earlier run, by key, and the
// file to record this run's in. It is the analysis's deepvigor.ChannelLog.
type vfJournal struct {
	j        *journal.Journal
	channels map[channelKey]deepvigor.ChannelResult
	units    map[unitKey]Unit
}

// openVFJournal opens o.Out's journal for this run; a journal of a run with
// other arguments is an error naming the first that differs.
func openVFJournal(o *VFOptions, ld *fault.Loaded, threads int, tail bool) (*vfJournal, error) {
	id, err := ld.Identity()
	if err != nil {
		return nil, err
	}
	src := journal.NewSource("faultline.vf_journal", ld.Checkpoint, id, ld.Dataset)
	h := vfJournalHeader{Source: src, Images: o.Images, Device: torch.DeviceName(ld.Model.Device()), Threads: threads, Target: o.Target, Ratio: o.Ratio, Precision: o.Precision,
		Semantics: o.Semantics, TailCheck: tail, Seed: o.Seed, Layers: o.Layers, PerOctave: o.PerOctave, WeightErrors: o.WeightErrors,
		Validate: o.Validate, ValidateNeurons: o.ValidateNeurons, ValidateOperands: o.ValidateOperands, BatchSize: o.BatchSize}
	j, err := journal.Open(filepath.Join(o.Out, JournalFile), "eval", h, o.ReplaceJournal)
	if err != nil {
		return nil, err
	}
	jn := &vfJournal{j: j, channels: map[channelKey]deepvigor.ChannelResult{}, units: map[unitKey]Unit{}}
	for _, line := range j.Records() {
		var r vfRecord
		if err := json.Unmarshal(line, &r); err != nil {
			break
		}
		switch {
		case r.Phase == "analysis" && r.Channel != nil:
			jn.channels[channelKey{r.Layer, r.Channel.Channel, fmt.Sprint(r.Channel.Positions)}] = *r.Channel
		case r.Phase == "validation" && r.Unit != nil:
			jn.units[keyOf(*r.Unit)] = *r.Unit
		}
	}
	return jn, nil
}

func keyOf(u Unit) unitKey {
	pos := -1
	if u.Position != nil {
		pos = *u.Position
	}
	return unitKey{u.Target, u.Layer, u.Channel, pos}
}

// Lookup returns a recorded channel analysed at these positions.
func (jn *vfJournal) Lookup(layer string, channel int, positions []int) (deepvigor.ChannelResult, bool) {
	r, ok := jn.channels[channelKey{layer, channel, fmt.Sprint(positions)}]
	return r, ok
}

// Record appends an analysed channel.
func (jn *vfJournal) Record(layer string, r deepvigor.ChannelResult) error {
	if err := jn.j.Append(vfRecord{Phase: "analysis", Layer: layer, Channel: &r}); err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	return nil
}

// unit returns a recorded validation unit with the given fault count.
func (jn *vfJournal) unit(u Unit) (Unit, bool) {
	r, ok := jn.units[keyOf(u)]
	return r, ok && r.Faults == u.Faults
}

// recordUnit appends a validated unit.
func (jn *vfJournal) recordUnit(u Unit) error {
	if err := jn.j.Append(vfRecord{Phase: "validation", Unit: &u}); err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	return nil
}

// recorded counts the journal's channels and units from an earlier run.
func (jn *vfJournal) recorded() (channels, units int) { return len(jn.channels), len(jn.units) }
