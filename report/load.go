package report

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Input is one JSON file found under the input directories.
type Input struct {
	Path          string `json:"path"`
	Kind          string `json:"kind,omitempty"`
	SchemaVersion int    `json:"schema_version,omitempty"`
	// Used is true when the file feeds a section of the report; Note says why
	// it does not, or where it is shown.
	Used bool   `json:"used"`
	Note string `json:"note,omitempty"`
}

// Doc is one decoded result file.
type Doc[T any] struct {
	Path string
	Data T
}

// Set is every result read from the input directories, by kind, each list in
// the order the files were found (directories in the order given, files in
// lexical order).
type Set struct {
	Inputs      []*Input
	VFs         []Doc[VF]
	BERs        []Doc[BERCurve]
	Campaigns   []Doc[Campaign]
	Importances []Doc[Importance]
	Rankings    []Doc[Ranking]
	Hardens     []Doc[Harden]
	Checkpoints []Doc[Checkpoint]
	byPath      map[string]*Input
}

// Load walks each directory recursively and reads every *.json file in it
// (hidden files and directories are skipped). A file whose kind is unknown, or
// that has no kind, is listed in Inputs with a note and otherwise ignored; a
// file of a known kind with an unsupported schema_version, or one that is not
// valid JSON, is an error naming the file.
func Load(dirs []string) (*Set, error) {
	if len(dirs) == 0 {
		return nil, errors.New("report: no input directory")
	}
	s := &Set{byPath: map[string]*Input{}}
	seen := map[string]bool{}
	for _, dir := range dirs {
		st, err := os.Stat(dir)
		if err != nil {
			return nil, fmt.Errorf("report: input %w", err)
		}
		if !st.IsDir() {
			return nil, fmt.Errorf("report: input %s is not a directory", dir)
		}
		err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return fmt.Errorf("report: walk %s: %w", path, err)
			}
			if path != dir && strings.HasPrefix(d.Name(), ".") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if d.IsDir() || !strings.EqualFold(filepath.Ext(path), ".json") {
				return nil
			}
			abs, err := filepath.Abs(path)
			if err != nil {
				return fmt.Errorf("report: %s: %w", path, err)
			}
			if seen[abs] {
				return nil
			}
			seen[abs] = true
			return s.read(path)
		})
		if err != nil {
			return nil, err
		}
	}
	return s, nil
}

// inputOnlyKinds are faultline files that hold no result to draw (a campaign's
// header: its result is the summary.json beside it), with the note the Inputs
// table gives them. They are not reported as unknown.
var inputOnlyKinds = map[string]string{
	"faultline.fault_campaign_header": "campaign header: its results are in the summary.json beside it",
}

// read decodes one file and files it under its kind.
func (s *Set) read(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("report: read %w", err)
	}
	return s.add(path, data)
}

// add decodes the content of one file and files it under its kind.
func (s *Set) add(path string, data []byte) error {
	if s.byPath == nil {
		s.byPath = map[string]*Input{}
	}
	in := &Input{Path: path}
	s.Inputs = append(s.Inputs, in)
	s.byPath[path] = in
	if !json.Valid(data) {
		var v any
		err := json.Unmarshal(data, &v)
		return fmt.Errorf("report: %s: not valid JSON: %w", path, err)
	}
	var h header
	if err := json.Unmarshal(data, &h); err != nil || h.Kind == "" {
		in.Note = "skipped: not a faultline result (no kind)"
		return nil
	}
	in.Kind = h.Kind
	if note, ok := inputOnlyKinds[h.Kind]; ok {
		in.Note = note
		return nil
	}
	versions, known := knownKinds[h.Kind]
	if !known {
		in.Note = "skipped: unknown kind " + h.Kind
		return nil
	}
	if h.SchemaVersion == nil {
		return fmt.Errorf("report: %s: kind %s without schema_version", path, h.Kind)
	}
	in.SchemaVersion = *h.SchemaVersion
	if !slices.Contains(versions, *h.SchemaVersion) {
		return fmt.Errorf("report: %s: kind %s schema_version %d is not supported (this report reads schema_version %s)",
			path, h.Kind, *h.SchemaVersion, joinInts(versions))
	}
	switch h.Kind {
	case KindVF:
		return decode(path, data, &s.VFs)
	case KindBER:
		return decode(path, data, &s.BERs)
	case KindCampaign:
		return decode(path, data, &s.Campaigns)
	case KindImportance:
		return decode(path, data, &s.Importances)
	case KindRanking:
		return decode(path, data, &s.Rankings)
	case KindHarden:
		return decode(path, data, &s.Hardens)
	case KindCheckpoint:
		return decode(path, data, &s.Checkpoints)
	}
	return nil
}

func decode[T any](path string, data []byte, to *[]Doc[T]) error {
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		return fmt.Errorf("report: %s: decode: %w", path, err)
	}
	*to = append(*to, Doc[T]{Path: path, Data: v})
	return nil
}

// use marks a file as feeding the report (note says where, when not empty).
func (s *Set) use(path, note string) {
	if in := s.byPath[path]; in != nil {
		in.Used = true
		if note != "" && in.Note == "" {
			in.Note = note
		}
	}
}

// note records why a file of a known kind is not shown.
func (s *Set) note(path, note string) {
	if in := s.byPath[path]; in != nil && in.Note == "" {
		in.Note = note
	}
}

func joinInts(xs []int) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprint(x)
	}
	return strings.Join(parts, ", ")
}

// under reports whether path lies inside dir, and returns its first path
// element below dir.
func under(dir, path string) (string, bool) {
	rel, err := filepath.Rel(dir, path)
	if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
		return "", false
	}
	first, _, _ := strings.Cut(filepath.ToSlash(rel), "/")
	return first, true
}
