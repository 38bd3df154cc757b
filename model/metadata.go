package model

import (
	"encoding/json"
	"fmt"
	"math"
)

// Timing is how long making a checkpoint took: the only figures in model.json
// that change from run to run.
type Timing struct {
	TrainSeconds float64 `json:"train_seconds"`
}

// UnmarshalJSON reads model.json, including the top-level train_seconds of
// checkpoints written before the timing object (moved into Timing).
func (meta *Metadata) UnmarshalJSON(b []byte) error {
	type plain Metadata // without this method
	var v struct {
		plain
		LegacyTrainSeconds *float64 `json:"train_seconds"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*meta = Metadata(v.plain)
	if v.LegacyTrainSeconds != nil && meta.Timing == (Timing{}) {
		meta.Timing.TrainSeconds = *v.LegacyTrainSeconds
	}
	return nil
}

// ParseMetadata decodes and checks model.json from b; name (the file) labels
// errors. It accepts only what [Metadata.Validate] accepts.
func ParseMetadata(b []byte, name string) (Metadata, error) {
	var meta Metadata
	if err := json.Unmarshal(b, &meta); err != nil {
		return meta, fmt.Errorf("model: %s: corrupt metadata: %w", name, err)
	}
	if err := meta.Validate(); err != nil {
		return meta, fmt.Errorf("model: %s: %w", name, err)
	}
	return meta, nil
}

// Validate checks metadata on its own, before any weight is read: the kind and
// schema version, the spec, the architecture named twice alike, one finite
// normalisation (std > 0) per input channel or none, counts that are not
// negative, an accuracy in [0,1], named tensors with unique names and
// non-negative dimensions, file sums (if any) of the checkpoint's files only
// (model.ot, model.npz, model.onnx), as many labels as classes (or none), and
// clamp sections holding finite ranges. Whether the tensors and clamp sites match
// the architecture, and the files their sums, is checked by [Load].
func (meta *Metadata) Validate() error {
	if meta.Kind != MetadataKind {
		return fmt.Errorf("kind %q, want %q", meta.Kind, MetadataKind)
	}
	if meta.SchemaVersion != MetadataSchema {
		return fmt.Errorf("schema_version %d, this faultline reads %d", meta.SchemaVersion, MetadataSchema)
	}
	if err := meta.Spec.Validate(); err != nil {
		return err
	}
	if meta.Arch != meta.Spec.Arch {
		return fmt.Errorf("arch %q but spec.arch %q", meta.Arch, meta.Spec.Arch)
	}
	n := meta.Normalization
	if len(n.Mean) != len(n.Std) || (len(n.Mean) != 0 && int64(len(n.Mean)) != meta.Spec.InChannels) {
		return fmt.Errorf("normalization: %d means and %d stds for %d input channels", len(n.Mean), len(n.Std), meta.Spec.InChannels)
	}
	for c := range n.Mean {
		m, s := float64(n.Mean[c]), float64(n.Std[c])
		if math.IsNaN(m) || math.IsInf(m, 0) || !(s > 0) || math.IsInf(s, 0) {
			return fmt.Errorf("normalization: channel %d: mean %v, std %v (want finite, std > 0)", c, m, s)
		}
	}
	switch {
	case meta.Epochs < 0 || meta.Steps < 0:
		return fmt.Errorf("epochs %d, steps %d: negative", meta.Epochs, meta.Steps)
	case !(meta.TestAccuracy >= 0 && meta.TestAccuracy <= 1):
		return fmt.Errorf("test_accuracy %v outside [0,1]", meta.TestAccuracy)
	case !(meta.Timing.TrainSeconds >= 0):
		return fmt.Errorf("timing.train_seconds %v is negative", meta.Timing.TrainSeconds)
	}
	seen := make(map[string]bool, len(meta.Params))
	for i, p := range meta.Params {
		if p.Name == "" || seen[p.Name] {
			return fmt.Errorf("params[%d]: name %q empty or repeated", i, p.Name)
		}
		seen[p.Name] = true
		for _, d := range p.Shape {
			if d < 0 {
				return fmt.Errorf("params[%d] %s: shape %v has a negative dimension", i, p.Name, p.Shape)
			}
		}
	}
	for name, sum := range meta.Files {
		if name != WeightsFile && name != NumpyFile && name != ONNXFile {
			return fmt.Errorf("files: %q is not a checkpoint file (%s, %s, %s)", name, WeightsFile, NumpyFile, ONNXFile)
		}
		if sum.Size < 0 || !isSHA256(sum.SHA256) {
			return fmt.Errorf("files: %s: size %d, sha256 %q (want a size of at least 0 and 64 lowercase hex digits)", name, sum.Size, sum.SHA256)
		}
	}
	if len(meta.Labels) > 0 && int64(len(meta.Labels)) != meta.Spec.Classes {
		return fmt.Errorf("labels: %d class names for %d classes", len(meta.Labels), meta.Spec.Classes)
	}
	if o := meta.ONNX; o != nil && (o.SHA256 != "" && !isSHA256(o.SHA256) || o.Opset < 0) {
		return fmt.Errorf("onnx: sha256 %q, opset %d (want 64 lowercase hex digits, an opset of at least 0)", o.SHA256, o.Opset)
	}
	for _, key := range []string{ClampsKey, WeightClampsKey} {
		c, err := clampsFromMeta(*meta, key)
		if err != nil {
			return err
		}
		for site, b := range c {
			if !finite(b.Min) || !finite(b.Max) || b.Min > b.Max {
				return fmt.Errorf("section %q: %s: bounds [%g, %g] are not a finite range", key, site, b.Min, b.Max)
			}
		}
	}
	return nil
}

// isSHA256 reports whether s is a SHA-256 in lowercase hex.
func isSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
