package fault

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/faultline/faultline/internal/testckpt"
	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model"
	"github.com/sugarme/gotch"
)

// flipWeight flips bit 3 of the first weight of m's first site (a flip twice
// undoes it).
func flipWeight(t *testing.T, m *model.Model) {
	t.Helper()
	err := torch.Do(func() error {
		inj, err := NewInjector(m)
		if err != nil {
			return err
		}
		f := Fault{Target: Weight, Layer: m.Sites()[0].Name, Param: "weight", Index: []int64{0}, Kind: BitFlip, Bits: []int{3},
			DType: Float32, Duration: Permanent}
		_, err = inj.Apply(&f) // left in place
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestModelSHA256 identifies a model in memory by what it computes: equal for
// two loads of one checkpoint and after a change is undone; different after a
// change of a weight bit, a clamp or a metadata field other than the timing,
// the file sums and the tensor list.
func TestModelSHA256(t *testing.T) {
	ckpt := testckpt.Untrained(t)
	m0, meta0, err := model.Load(ckpt, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := ModelSHA256(m0, meta0)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, m *model.Model, meta *model.Metadata)
		same   bool
	}{
		{"another load", func(*testing.T, *model.Model, *model.Metadata) {}, true},
		{"timing", func(_ *testing.T, _ *model.Model, meta *model.Metadata) { meta.Timing.TrainSeconds = 42 }, true},
		{"file sums", func(_ *testing.T, _ *model.Model, meta *model.Metadata) { meta.Files = nil }, true},
		{"tensor list", func(_ *testing.T, _ *model.Model, meta *model.Metadata) { meta.Params = nil }, true},
		{"flip undone", func(t *testing.T, m *model.Model, _ *model.Metadata) { flipWeight(t, m); flipWeight(t, m) }, true},
		{"weight bit", func(t *testing.T, m *model.Model, _ *model.Metadata) { flipWeight(t, m) }, false},
		{"clamps", func(t *testing.T, m *model.Model, _ *model.Metadata) {
			if err := m.SetClamps(model.Clamps{m.Sites()[0].Name: {Min: -1, Max: 1}}); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"weight clamps", func(t *testing.T, m *model.Model, _ *model.Metadata) {
			err := torch.Do(func() error {
				c, err := m.WeightRanges()
				if err != nil {
					return err
				}
				return m.SetWeightClamps(c)
			})
			if err != nil {
				t.Fatal(err)
			}
		}, false},
		{"metadata", func(_ *testing.T, _ *model.Model, meta *model.Metadata) { meta.TestAccuracy += 0.01 }, false},
		{"normalisation", func(_ *testing.T, _ *model.Model, meta *model.Metadata) {
			meta.Normalization.Std = []float32{0.3}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, meta, err := model.Load(ckpt, gotch.CPU)
			if err != nil {
				t.Fatal(err)
			}
			tc.change(t, m, &meta)
			got, err := ModelSHA256(m, meta)
			if err != nil {
				t.Fatal(err)
			}
			if (got == ref) != tc.same {
				t.Errorf("sum %s, unchanged model's %s: want equal %v", got, ref, tc.same)
			}
		})
	}
	if _, err := ModelSHA256(nil, meta0); err == nil {
		t.Error("ModelSHA256 of no model: no error")
	}
}

// TestLoadedIdentity: a checkpoint as loaded is identified by its content
// SHA-256, a model in memory (ForModel, or a Loaded with ContentSHA256
// cleared) by ModelSHA256.
func TestLoadedIdentity(t *testing.T) {
	ckpt := testckpt.Untrained(t)
	ld, err := LoadCheckpoint(ckpt, "", "", gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	content, err := model.ContentSHA256(ckpt)
	if err != nil {
		t.Fatal(err)
	}
	mem, err := ModelSHA256(ld.Model, ld.Meta)
	if err != nil {
		t.Fatal(err)
	}
	fm, err := ForModel(ld.Model, ld.Meta, "in memory", "", "")
	if err != nil {
		t.Fatal(err)
	}
	cleared := *ld
	cleared.ContentSHA256 = ""
	for _, tc := range []struct {
		name string
		l    *Loaded
		want string
	}{
		{"loaded", ld, content},
		{"ForModel", fm, mem},
		{"cleared", &cleared, mem},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.l.Identity()
			if err != nil || got != tc.want {
				t.Errorf("identity %s, %v; want %s", got, err, tc.want)
			}
		})
	}
	if ld.Checkpoint != ckpt || fm.Checkpoint != "in memory" || fm.Dataset != "synthetic" || fm.Set.Len() != ld.Set.Len() {
		t.Errorf("checkpoint labels %q, %q; ForModel data set %q with %d images", ld.Checkpoint, fm.Checkpoint, fm.Dataset, fm.Set.Len())
	}
}

// TestForModelErrors: no model, an unknown data set and a normalisation that
// does not fit the images are errors that say so.
func TestForModelErrors(t *testing.T) {
	ckpt := testckpt.Untrained(t)
	m, meta, err := model.Load(ckpt, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	three := meta
	three.Normalization = model.Normalization{Mean: []float32{0, 0, 0}, Std: []float32{1, 1, 1}}
	for _, tc := range []struct {
		name    string
		m       *model.Model
		meta    model.Metadata
		dataset string
		want    string
	}{
		{"no model", nil, meta, "", "no model"},
		{"unknown data set", m, meta, "nope", "nope"},
		{"normalisation", m, three, "", "normalization"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ForModel(tc.m, tc.meta, "x", tc.dataset, ""); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

// TestRunBERCurveOnEqualsRunBERCurve: the curve of a model in memory is the
// checkpoint's, byte for byte once the label is the same, and the model's
// weights are left as they were.
func TestRunBERCurveOnEqualsRunBERCurve(t *testing.T) {
	ckpt := testckpt.Trained(t, 200)
	dir := t.TempDir()
	o := BERRunOptions{Checkpoint: ckpt, Device: gotch.CPU, Threads: 1, Images: 50,
		BER: BEROptions{BERs: []float64{1e-4, 1e-3}, Trials: 3, Seed: 2, Confidence: 0.95}}
	o.Out = filepath.Join(dir, "file")
	if _, err := RunBERCurve(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	ld, err := LoadCheckpoint(ckpt, "", "", gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	before, err := ModelSHA256(ld.Model, ld.Meta)
	if err != nil {
		t.Fatal(err)
	}
	mem := *ld
	mem.ContentSHA256 = ""
	om := BERRunOptions{Threads: 1, Images: 50, BER: o.BER, Out: filepath.Join(dir, "memory")}
	if _, err := RunBERCurveOn(context.Background(), &mem, om); err != nil {
		t.Fatal(err)
	}
	read := func(d string) []byte {
		b, err := os.ReadFile(filepath.Join(d, BERFile))
		if err != nil {
			t.Fatal(err)
		}
		var v map[string]any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatal(err)
		}
		delete(v, "timing")
		out, _ := json.Marshal(v)
		return out
	}
	if a, b := read(o.Out), read(om.Out); !bytes.Equal(a, b) {
		t.Errorf("ber.json of the model in memory differs from the checkpoint's:\n%s\n%s", b, a)
	}
	after, err := ModelSHA256(ld.Model, ld.Meta)
	if err != nil || after != before {
		t.Errorf("the BER trials changed the model: %s -> %s (%v)", before, after, err)
	}
	if _, err := RunBERCurveOn(context.Background(), nil, om); err == nil {
		t.Error("RunBERCurveOn without a model: no error")
	}
}
