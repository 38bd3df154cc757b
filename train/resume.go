package train

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/faultline/faultline/configs"
	"github.com/faultline/faultline/internal/atomicfile"
	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model"
	"github.com/sugarme/gotch"
)

// ResumeDir is where a run with Options.Resume keeps its state between
// epochs: beside the checkpoint directory, removed once the checkpoint is
// saved.
func ResumeDir(out string) string { return filepath.Clean(out) + ".resume" }

// ErrResumeMismatch is returned when a run asked to resume finds state left
// by a run with a different configuration.
var ErrResumeMismatch = errors.New("train: resume state is from another configuration")

// resumeState is state.json in the resume directory. The model weights of the
// last finished epoch are the checkpoint Last (a directory name inside the
// resume directory); with keep_best, those of the best epoch are Best.
type resumeState struct {
	Kind      string          `json:"kind"`
	Config    json.RawMessage `json:"config"`
	Epochs    []Epoch         `json:"epochs"`
	Seconds   []float64       `json:"epoch_seconds"`
	GlobalStp int64           `json:"global_step"`
	Last      string          `json:"last"`
	Best      string          `json:"best,omitempty"`
	BestAcc   float64         `json:"best_accuracy"`
	BestEpoch int             `json:"best_epoch"`
}

const resumeKind = "faultline.train-resume"

// resumeConfig is the part of the configuration a resumed run must share with
// the run that left the state: everything but threads and device.
func resumeConfig(c configs.Config) (json.RawMessage, error) {
	c.Runtime.Threads, c.Runtime.Device = 0, ""
	return json.Marshal(c)
}

// loadResume reads the resume state in dir; ok is false when there is none.
func loadResume(dir string, cfg configs.Config) (st resumeState, ok bool, err error) {
	raw, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if errors.Is(err, os.ErrNotExist) {
		return st, false, nil
	}
	if err != nil {
		return st, false, fmt.Errorf("train: resume: %w", err)
	}
	if err := json.Unmarshal(raw, &st); err != nil || st.Kind != resumeKind {
		return st, false, fmt.Errorf("train: resume: %s is not a training resume state (remove %s to start over)", filepath.Join(dir, "state.json"), dir)
	}
	want, err := resumeConfig(cfg)
	if err != nil {
		return st, false, err
	}
	if !bytes.Equal(compactJSON(st.Config), compactJSON(want)) {
		return st, false, fmt.Errorf("%w: %s was left by a run with %s, this run has %s (remove %s to start over)",
			ErrResumeMismatch, dir, firstDiff(st.Config, want), firstDiff(want, st.Config), dir)
	}
	if len(st.Epochs) == 0 || st.Last == "" || len(st.Seconds) != len(st.Epochs) {
		return st, false, fmt.Errorf("train: resume: %s is incomplete (remove %s to start over)", filepath.Join(dir, "state.json"), dir)
	}
	return st, true, nil
}

func compactJSON(raw []byte) []byte {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return raw
	}
	return b.Bytes()
}

// firstDiff names the first configuration key whose value differs between a
// and b, as key=value of a.
func firstDiff(a, b json.RawMessage) string {
	var ma, mb map[string]any
	if json.Unmarshal(a, &ma) != nil || json.Unmarshal(b, &mb) != nil {
		return "a different configuration"
	}
	if d := diffKey("", ma, mb); d != "" {
		return d
	}
	return "a different configuration"
}

func diffKey(prefix string, a, b map[string]any) string {
	keys := make([]string, 0, len(a))
	for k := range a {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		va, vb := a[k], b[k]
		if sa, ok := va.(map[string]any); ok {
			if sb, ok := vb.(map[string]any); ok {
				if d := diffKey(prefix+k+".", sa, sb); d != "" {
					return d
				}
				continue
			}
		}
		ja, _ := json.Marshal(va)
		jb, _ := json.Marshal(vb)
		if !bytes.Equal(ja, jb) {
			return prefix + k + "=" + string(ja)
		}
	}
	return ""
}

// saveResume writes the state after an epoch: the model as a checkpoint
// epoch-N (and, when it is the best so far, kept as the best), then
// state.json atomically, then removes checkpoints no longer referenced. A kill
// at any point leaves the previous state usable. It returns the state written.
func saveResume(dir string, st resumeState, m *model.Model, meta model.Metadata, newBest bool) (resumeState, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return st, fmt.Errorf("train: resume: %w", err)
	}
	n := len(st.Epochs)
	st.Last = fmt.Sprintf("epoch-%d", n)
	meta.Epochs = n
	if err := m.Save(filepath.Join(dir, st.Last), meta); err != nil {
		return st, fmt.Errorf("train: resume: %w", err)
	}
	if newBest {
		st.Best = st.Last
	}
	raw, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return st, err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, "state.json"), append(raw, '\n'), 0o644); err != nil {
		return st, fmt.Errorf("train: resume: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return st, fmt.Errorf("train: resume: %w", err)
	}
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), "epoch-") && e.Name() != st.Last && e.Name() != st.Best {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return st, fmt.Errorf("train: resume: %w", err)
			}
		}
	}
	return st, nil
}

// loadResumeModels loads the last epoch's model and, when the state keeps one,
// a snapshot of the best epoch's weights.
func loadResumeModels(dir string, st resumeState, dev gotch.Device) (*model.Model, *snapshot, error) {
	m, _, err := model.Load(filepath.Join(dir, st.Last), dev)
	if err != nil {
		return nil, nil, fmt.Errorf("train: resume: %w", err)
	}
	if st.Best == "" {
		return m, nil, nil
	}
	b, _, err := model.Load(filepath.Join(dir, st.Best), dev)
	if err != nil {
		return nil, nil, fmt.Errorf("train: resume: %w", err)
	}
	var snap *snapshot
	if err := torch.Do(func() (err error) {
		snap, err = snapshotOf(b)
		return err
	}); err != nil {
		return nil, nil, err
	}
	return m, snap, nil
}
