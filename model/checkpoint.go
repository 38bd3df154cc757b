package model

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/faultline/faultline/internal/atomicfile"
	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model/onnx"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// Checkpoint file names inside a checkpoint directory.
const (
	WeightsFile  = "model.ot"
	NumpyFile    = "model.npz"
	MetadataFile = "model.json"
	// ONNXFile is the model as an ONNX graph with its current weights and its
	// range restriction (Model.ExportGraph). A checkpoint of a graph built by
	// FromGraph (Spec.Arch GraphArch) is rebuilt from it; for the zoo it is a
	// copy for other runtimes (checkpoints written before it lack it).
	ONNXFile = "model.onnx"
)

// MetadataKind and MetadataSchema identify model.json.
const (
	MetadataKind   = "faultline.checkpoint"
	MetadataSchema = 1
)

// Version is faultline's version, recorded in every checkpoint.
const Version = "0.1.0"

// Normalization is the per-channel input normalisation the model was trained with.
type Normalization struct {
	Mean []float32 `json:"mean"`
	Std  []float32 `json:"std"`
}

// ParamInfo describes one saved tensor, so a checkpoint that does not match its
// metadata is caught before any weight is used.
type ParamInfo struct {
	Name      string  `json:"name"`
	Shape     []int64 `json:"shape"`
	Trainable bool    `json:"trainable"`
}

// Software records what produced a checkpoint.
type Software struct {
	Faultline string `json:"faultline"`
	Gotch     string `json:"gotch"`
	Libtorch  string `json:"libtorch"`
	BLAS      string `json:"blas"`
	Threads   int    `json:"threads"`
	Go        string `json:"go"`
}

// Metadata is model.json: everything needed to rebuild, trust and reproduce a
// checkpoint. Accuracies are fractions in [0,1].
type Metadata struct {
	Kind          string          `json:"kind"`
	SchemaVersion int             `json:"schema_version"`
	Arch          string          `json:"arch"`
	Spec          Spec            `json:"spec"`
	Dataset       string          `json:"dataset"`
	Normalization Normalization   `json:"normalization"`
	Epochs        int             `json:"epochs"`
	Steps         int64           `json:"steps"`
	Seed          int64           `json:"seed"`
	TestAccuracy  float64         `json:"test_accuracy"`
	Timing        Timing          `json:"timing"` // the only part that differs between runs
	Source        string          `json:"source"` // "train", "import:<file>", "harden"
	Config        json.RawMessage `json:"config,omitempty"`
	Software      Software        `json:"software"`
	Params        []ParamInfo     `json:"params"`
	// Files holds the size and SHA-256 of model.ot, model.npz and model.onnx
	// as saved, so a checkpoint whose files come from different saves (a save
	// killed half way) is caught on load. Checkpoints of older versions lack
	// it, or model.onnx.
	Files map[string]FileSum `json:"files,omitempty"`
	// ONNX describes the ONNX file a model was imported from (nil for other
	// checkpoints); hardening an imported model keeps it.
	ONNX *ONNXSource `json:"onnx,omitempty"`
	// Labels optionally names the classes, in output order (import --labels).
	Labels []string `json:"labels,omitempty"`
	// Extra holds sections added by later stages (e.g. hardening bounds).
	Extra map[string]json.RawMessage `json:"extra,omitempty"`
}

// FileSum is one checkpoint file's size in bytes and SHA-256 (hex).
type FileSum struct {
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// CurrentSoftware describes this build and machine.
func CurrentSoftware() Software {
	return Software{Faultline: Version, Gotch: "v0.8.0 (" + gotch.FaultlineAdapted + ")", Libtorch: torch.LibtorchVersion(),
		BLAS: torch.BLAS(), Threads: torch.Threads(), Go: runtime.Version()}
}

// paramInfos lists the model's tensors for the metadata.
func (m *Model) paramInfos() ([]ParamInfo, error) {
	out := make([]ParamInfo, 0, len(m.params))
	for _, p := range m.params {
		shape, err := torch.Shape(p.Tensor)
		if err != nil {
			return nil, err
		}
		out = append(out, ParamInfo{Name: p.Name, Shape: shape, Trainable: p.Trainable})
	}
	return out, nil
}

// Save writes the checkpoint into dir (created if needed): model.ot, model.npz,
// model.onnx (Model.ExportGraph: the graph with the current weights and the
// clamps as Clip nodes) and model.json, each atomically (temp file + rename).
// model.json, holding the sizes and SHA-256 sums of the other three files, is
// written last: a process killed
// while saving over an older checkpoint can leave the old model.json beside new
// weights, and [Load] reports such a torn checkpoint instead of using it (a
// rerun of the save replaces it). A save that fails before model.ot is replaced
// (e.g. a full disk) leaves the previous checkpoint as it was. meta.Arch, Spec,
// Params, Files, Software, Kind and SchemaVersion are filled in from the model.
// A model built by FromGraph is saved the same way; Load rebuilds it from
// model.onnx.
func (m *Model) Save(dir string, meta Metadata) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("model: save: %w", err)
	}
	return torch.Do(func() error {
		infos, err := m.paramInfos()
		if err != nil {
			return err
		}
		meta.Kind, meta.SchemaVersion = MetadataKind, MetadataSchema
		meta.Arch, meta.Spec, meta.Params = m.spec.Arch, m.spec, infos
		meta.Software = CurrentSoftware()
		// The model's range restriction travels with it.
		for _, sec := range []struct {
			key string
			c   Clamps
		}{{ClampsKey, m.Clamps()}, {WeightClampsKey, m.WeightClamps()}} {
			if sec.c == nil {
				continue
			}
			raw, err := json.Marshal(sec.c)
			if err != nil {
				return fmt.Errorf("model: save: %s: %w", sec.key, err)
			}
			extra := map[string]json.RawMessage{}
			for k, v := range meta.Extra {
				extra[k] = v
			}
			extra[sec.key] = raw
			meta.Extra = extra
		}
		named := make([]ts.NamedTensor, len(m.params))
		for i, p := range m.params {
			named[i] = ts.NamedTensor{Name: p.Name, Tensor: p.Tensor}
		}
		if err := writeWeights(named, filepath.Join(dir, WeightsFile)); err != nil {
			return err
		}
		if err := m.SaveNPZ(filepath.Join(dir, NumpyFile), meta.Steps); err != nil {
			return err
		}
		g, err := m.ExportGraph()
		if err != nil {
			return fmt.Errorf("model: save: %w", err)
		}
		if err := onnx.WriteFile(filepath.Join(dir, ONNXFile), g); err != nil {
			return fmt.Errorf("model: save: %w", err)
		}
		meta.Files = map[string]FileSum{}
		for _, name := range []string{WeightsFile, NumpyFile, ONNXFile} {
			sum, err := sumFile(filepath.Join(dir, name))
			if err != nil {
				return fmt.Errorf("model: save: %w", err)
			}
			meta.Files[name] = sum
		}
		b, err := json.MarshalIndent(meta, "", "  ")
		if err != nil {
			return fmt.Errorf("model: metadata: %w", err)
		}
		return atomicfile.WriteFile(filepath.Join(dir, MetadataFile), append(b, '\n'), 0o644)
	})
}

// ReadMetadata reads and checks dir/model.json.
func ReadMetadata(dir string) (Metadata, error) {
	var meta Metadata
	p := filepath.Join(dir, MetadataFile)
	b, err := os.ReadFile(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			if _, serr := os.Stat(dir); serr != nil {
				return meta, fmt.Errorf("model: checkpoint %s: %w", dir, serr)
			}
			return meta, fmt.Errorf("model: checkpoint %s: no %s (not a faultline checkpoint, or an interrupted save)", dir, MetadataFile)
		}
		return meta, fmt.Errorf("model: %w", err)
	}
	return ParseMetadata(b, p)
}

// Load rebuilds the model saved in dir on dev and loads its weights, checking every
// name and shape against the architecture and the metadata. A zoo model is
// built from its Spec; a graph model (Spec.Arch GraphArch: an import) from the
// graph in model.onnx, without the Clip nodes that hold its clamps there
// (the clamps are in model.json), with the weights of model.ot.
func Load(dir string, dev gotch.Device) (*Model, Metadata, error) {
	meta, err := ReadMetadata(dir)
	if err != nil {
		return nil, meta, err
	}
	ot := filepath.Join(dir, WeightsFile)
	if _, err := os.Stat(ot); err != nil {
		return nil, meta, fmt.Errorf("model: checkpoint %s: %w", dir, err)
	}
	if err := VerifyFiles(dir, meta); err != nil {
		return nil, meta, err
	}
	var m *Model
	if meta.Arch == GraphArch {
		if _, ok := meta.Files[ONNXFile]; !ok {
			return nil, meta, fmt.Errorf("model: checkpoint %s: a %s checkpoint needs %s and its sum in %s", dir, GraphArch, ONNXFile, MetadataFile)
		}
		g, err := onnx.ReadFile(filepath.Join(dir, ONNXFile))
		if err != nil {
			return nil, meta, fmt.Errorf("model: checkpoint %s: %w", dir, err)
		}
		if m, err = FromGraph(stripClamps(g), dev); err != nil {
			return nil, meta, fmt.Errorf("model: checkpoint %s: %s: %w", dir, ONNXFile, err)
		}
		if s := m.Spec(); s.InChannels != meta.Spec.InChannels || s.Height != meta.Spec.Height || s.Width != meta.Spec.Width || s.Classes != meta.Spec.Classes {
			return nil, meta, fmt.Errorf("model: checkpoint %s: %s takes %dx%dx%d inputs to %d classes, %s says %dx%dx%d to %d", dir, ONNXFile,
				s.InChannels, s.Height, s.Width, s.Classes, MetadataFile, meta.Spec.InChannels, meta.Spec.Height, meta.Spec.Width, meta.Spec.Classes)
		}
	} else if m, err = New(meta.Spec, dev); err != nil {
		return nil, meta, err
	}
	err = torch.Do(func() error {
		infos, err := m.paramInfos()
		if err != nil {
			return err
		}
		if err := sameParams(infos, meta.Params); err != nil {
			return fmt.Errorf("model: %s does not match its architecture %s: %w", filepath.Join(dir, MetadataFile), meta.Arch, err)
		}
		named, err := ts.LoadMultiWithDevice(ot, dev)
		if err != nil {
			return fmt.Errorf("model: read %s (truncated or not a gotch .ot file?): %w", ot, firstLine(err))
		}
		tensors := make(map[string]*ts.Tensor, len(named))
		for _, nt := range named {
			tensors[nt.Name] = nt.Tensor
		}
		defer func() {
			for _, t := range tensors {
				_ = t.Drop()
			}
		}()
		if err := m.assign(tensors, ot); err != nil {
			return err
		}
		c, err := clampsFromMeta(meta, ClampsKey)
		if err == nil {
			err = m.SetClamps(c)
		}
		if err == nil {
			if c, err = clampsFromMeta(meta, WeightClampsKey); err == nil {
				err = m.SetWeightClamps(c)
			}
		}
		if err != nil {
			return fmt.Errorf("model: %s: %w", filepath.Join(dir, MetadataFile), err)
		}
		return nil
	})
	if err != nil {
		return nil, meta, err
	}
	return m, meta, nil
}

// VerifyFiles checks that the weight files in dir are the ones meta (read from
// dir/model.json) was saved with: same size and SHA-256. A mismatch means the
// files come from different saves, such as a save killed half way over an older
// checkpoint; rerunning the command that wrote dir replaces them. Metadata
// without file sums (older checkpoints) passes.
func VerifyFiles(dir string, meta Metadata) error {
	names := make([]string, 0, len(meta.Files))
	for name := range meta.Files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		want := meta.Files[name]
		p := filepath.Join(dir, name)
		got, err := sumFile(p)
		if err != nil {
			return fmt.Errorf("model: checkpoint %s: %w", dir, err)
		}
		if got != want {
			return fmt.Errorf("model: checkpoint %s is torn: %s (%d bytes, sha256 %.12s) is not the file %s was saved with (%d bytes, sha256 %.12s); an interrupted save? rerun the command that wrote it",
				dir, p, got.Size, got.SHA256, MetadataFile, want.Size, want.SHA256)
		}
	}
	return nil
}

// ContentSHA256 identifies what a checkpoint computes: the SHA-256 of its
// metadata without the timing (the metadata holds the weight files' sums, the
// architecture and extras such as clamp bounds), and of model.ot itself when the
// metadata holds no sums (checkpoints written before them). Two saves of the
// same training run (same seed) have the same content SHA-256 though their
// model.json differ in timing. Resumable commands record it to refuse resuming
// on another checkpoint.
func ContentSHA256(dir string) (string, error) {
	meta, err := ReadMetadata(dir)
	if err != nil {
		return "", err
	}
	meta.Timing = Timing{}
	b, err := json.Marshal(meta)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	h.Write(b)
	if len(meta.Files) == 0 {
		s, err := sumFile(filepath.Join(dir, WeightsFile))
		if err != nil {
			return "", fmt.Errorf("model: %w", err)
		}
		h.Write([]byte(s.SHA256))
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// sumFile returns the size and SHA-256 of the file at p.
func sumFile(p string) (FileSum, error) {
	f, err := os.Open(p)
	if err != nil {
		return FileSum{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return FileSum{}, fmt.Errorf("read %s: %w", p, err)
	}
	return FileSum{Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// assign copies named tensors into the model's parameters. Every parameter must be
// present with its exact shape; extra names are an error too (a wrong checkpoint).
func (m *Model) assign(tensors map[string]*ts.Tensor, source string) error {
	var missing, extra []string
	for _, p := range m.params {
		if _, ok := tensors[p.Name]; !ok {
			missing = append(missing, p.Name)
		}
	}
	for name := range tensors {
		if _, ok := m.byName[name]; !ok && !strings.HasSuffix(name, ".num_batches_tracked") {
			extra = append(extra, name)
		}
	}
	if len(missing) > 0 || len(extra) > 0 {
		return fmt.Errorf("model: %s: tensors do not match %s: missing %v, unexpected %v", source, m.spec.Arch, missing, extra)
	}
	return torch.NoGrad(func() error {
		for _, p := range m.params {
			src := tensors[p.Name]
			want, _ := torch.Shape(p.Tensor)
			got, err := torch.Shape(src)
			if err != nil {
				return err
			}
			// A scalar may come as a one-element vector (LoadNPZ reads 0-d
			// arrays so).
			scalar := len(want) == 0 && slices.Equal(got, []int64{1})
			if !slices.Equal(want, got) && !scalar {
				return fmt.Errorf("model: %s: %s has shape %v, %s needs %v", source, p.Name, got, m.spec.Arch, want)
			}
			f, err := src.Totype(gotch.Float, false)
			if err == nil && scalar {
				f, err = f.Squeeze(true)
			}
			if err != nil {
				return fmt.Errorf("model: %s: %s: %w", source, p.Name, err)
			}
			err = p.Tensor.CopyFrom(f)
			_ = f.Drop()
			if err != nil {
				return fmt.Errorf("model: %s: copy %s: %w", source, p.Name, err)
			}
		}
		return nil
	})
}

func sameParams(model, meta []ParamInfo) error {
	if len(model) != len(meta) {
		return fmt.Errorf("%d tensors in metadata, the architecture has %d", len(meta), len(model))
	}
	for i := range model {
		if model[i].Name != meta[i].Name || !slices.Equal(model[i].Shape, meta[i].Shape) {
			return fmt.Errorf("tensor %d: metadata says %s %v, architecture has %s %v", i, meta[i].Name, meta[i].Shape, model[i].Name, model[i].Shape)
		}
	}
	return nil
}

// firstLine keeps the first line of libtorch's long multi-line errors.
func firstLine(err error) error {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i > 0 {
		s = s[:i]
	}
	return errors.New(strings.TrimSpace(s))
}
