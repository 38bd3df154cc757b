package fault

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"

	"github.com/faultline/faultline/datasets"
	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model"
	"github.com/sugarme/gotch"
)

// Loaded is a model in memory with what evaluating it takes: its metadata, the
// test split of its data set and its input normalisation. The library steps
// that measure a model (RunBERCurveOn, eval.RunVFOn, importance.RunOn) take
// one, so that they chain in memory, a model and an evaluation set in and
// results out; their checkpoint-reading forms (RunBERCurve, eval.RunVF,
// importance.Run) are LoadCheckpoint followed by them. LoadCheckpoint makes a
// Loaded from a checkpoint directory, ForModel from a model built or changed in
// memory.
type Loaded struct {
	Model   *model.Model
	Meta    model.Metadata
	Dataset string // the data set's name: the one asked for, or the checkpoint's
	Set     *datasets.Set
	Stats   datasets.Stats // the checkpoint's input normalisation
	// Checkpoint names the model in results (their "checkpoint" fields) and in
	// journal headers: the directory LoadCheckpoint read it from, or the
	// caller's label for a model in memory.
	Checkpoint string
	// ContentSHA256 is model.ContentSHA256 of the Checkpoint directory, which
	// LoadCheckpoint sets while the model is as it loaded it. It is empty for a
	// model in memory, whose Identity is then ModelSHA256: clear it before
	// changing a loaded model's weights or clamps.
	ContentSHA256 string
}

// LoadCheckpoint loads a checkpoint, the test split of dataset (the checkpoint's
// own when empty) and the checkpoint's input normalisation, checked against it.
func LoadCheckpoint(ckpt, dataset, dataDir string, dev gotch.Device) (*Loaded, error) {
	m, meta, err := model.Load(ckpt, dev)
	if err != nil {
		return nil, err
	}
	l, err := ForModel(m, meta, ckpt, dataset, dataDir)
	if err != nil {
		return nil, err
	}
	if l.ContentSHA256, err = model.ContentSHA256(ckpt); err != nil {
		return nil, fmt.Errorf("fault: %s: %w", ckpt, err)
	}
	return l, nil
}

// ForModel pairs model m, in memory, and its metadata with the test split of
// dataset (meta.Dataset when empty) read from dataDir (the data set's default
// directory when empty) and with meta's input normalisation, checked against
// the split. checkpoint labels the model (Loaded.Checkpoint); the result's
// Identity is ModelSHA256 of m and meta.
func ForModel(m *model.Model, meta model.Metadata, checkpoint, dataset, dataDir string) (*Loaded, error) {
	if m == nil {
		return nil, fmt.Errorf("fault: %s: no model", checkpoint)
	}
	if dataset == "" {
		dataset = meta.Dataset
	}
	set, err := datasets.Load(dataset, dataDir, datasets.Test)
	if err != nil {
		return nil, err
	}
	stats := datasets.Stats{Mean: meta.Normalization.Mean, Std: meta.Normalization.Std}
	// No normalisation (an import with --normalization none) feeds pixel/255.
	if len(stats.Mean) > 0 || len(stats.Std) > 0 {
		if err := stats.Validate(set.C); err != nil {
			return nil, fmt.Errorf("fault: %s: normalization: %w", checkpoint, err)
		}
	}
	return &Loaded{Model: m, Meta: meta, Dataset: dataset, Set: set, Stats: stats, Checkpoint: checkpoint}, nil
}

// Identity identifies what l's model computes, for the journals of resumable
// runs, which refuse to resume on another model: ContentSHA256 when set (a
// checkpoint as loaded), else ModelSHA256 of the model and metadata in memory.
// The two are different hashes of the same model: a journal written on a
// checkpoint does not resume on the same model in memory, nor the reverse.
func (l *Loaded) Identity() (string, error) {
	if l.ContentSHA256 != "" {
		return l.ContentSHA256, nil
	}
	return ModelSHA256(l.Model, l.Meta)
}

// modelSHA256Tag heads what ModelSHA256 hashes, so that its sums never equal
// another scheme's.
const modelSHA256Tag = "faultline.model_sha256 1\n"

// ModelSHA256 identifies what model m in memory computes with its metadata, as
// model.ContentSHA256 does for a checkpoint on disk: the SHA-256 of a tag, the
// metadata as JSON without its timing, its file sums and its tensor list (which
// describe a save, not the model), the model's spec, then every tensor of
// m.Params() in order (name, trainability, shape, and its values as
// little-endian float32), then the output clamps and the weight clamps as JSON.
// Two models with equal weights, clamps and metadata have the same sum
// whatever their history; changing any weight bit, bound or metadata field
// changes it. It runs on the torch thread (it calls torch.Do).
func ModelSHA256(m *model.Model, meta model.Metadata) (string, error) {
	if m == nil {
		return "", fmt.Errorf("fault: model sha256: no model")
	}
	meta.Timing, meta.Files, meta.Params = model.Timing{}, nil, nil
	h := sha256.New()
	h.Write([]byte(modelSHA256Tag))
	for _, v := range []any{meta, m.Spec()} {
		b, err := json.Marshal(v)
		if err != nil {
			return "", fmt.Errorf("fault: model sha256: %w", err)
		}
		h.Write(b)
		h.Write([]byte{'\n'})
	}
	err := torch.Do(func() error {
		var buf []byte
		for _, p := range m.Params() {
			shape, err := torch.Shape(p.Tensor)
			if err != nil {
				return fmt.Errorf("%s: %w", p.Name, err)
			}
			v, err := torch.Float32s(p.Tensor)
			if err != nil {
				return fmt.Errorf("%s: %w", p.Name, err)
			}
			fmt.Fprintf(h, "%s %t %v %d\n", p.Name, p.Trainable, shape, len(v))
			buf = buf[:0]
			for _, x := range v {
				buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(x))
			}
			h.Write(buf)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("fault: model sha256: %w", err)
	}
	for _, c := range []model.Clamps{m.Clamps(), m.WeightClamps()} {
		b, err := json.Marshal(c)
		if err != nil {
			return "", fmt.Errorf("fault: model sha256: clamps: %w", err)
		}
		h.Write(b)
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// EvalSet prepares the loaded model for injection with batchSize samples per
// forward pass and loads the first images test images (all when <= 0) as its
// evaluation set. It must run on the torch thread; the caller drops the set.
func (l *Loaded) EvalSet(images, batchSize int) (*Injector, *EvalSet, error) {
	inj, err := NewInjector(l.Model)
	if err != nil {
		return nil, nil, err
	}
	inj.BatchSize = batchSize
	ev, err := inj.LoadEvalSet(l.Set, l.Stats, images)
	if err != nil {
		return nil, nil, err
	}
	return inj, ev, nil
}
