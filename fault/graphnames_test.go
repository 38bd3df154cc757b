package fault

import (
	"path/filepath"
	"testing"

	"github.com/faultline/faultline/datasets"
	"github.com/faultline/faultline/model"
	"github.com/faultline/faultline/model/onnx"
	"github.com/sugarme/gotch"
)

// Weight faults reach the parameters of an imported graph whose exporter named
// them otherwise than "<layer>.weight" (BatchNorm folded into the convs:
// "onnx::Conv_..."): the reference and batched engines and Apply all corrupt
// the layer's own weight or bias, and agree.
func TestWeightFaultsOnImportedNames(t *testing.T) {
	g, err := onnx.ReadFile(filepath.Join("..", "model", "testdata", "onnx", "smallnet-opset13-eval.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.FromGraph(g, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	te, err := datasets.Load("synthetic", "", datasets.Test)
	if err != nil {
		t.Fatal(err)
	}
	var ref, bat []*Fault
	renamed := 0
	for _, s := range m.Sites() {
		if s.Weight() != s.Name+".weight" {
			renamed++
		}
		params := []string{"weight"}
		if s.HasBias {
			params = append(params, "bias")
		}
		for _, p := range params {
			for _, list := range []*[]*Fault{&ref, &bat} {
				*list = append(*list, &Fault{ID: int64(len(*list)), Target: Weight, Layer: s.Name, Param: p, Index: []int64{0}, Kind: BitFlip, Bits: []int{30}})
			}
		}
	}
	if renamed == 0 {
		t.Fatal("the fixture has no site with a renamed weight")
	}
	do(t, func() error {
		inj, err := NewInjector(m)
		if err != nil {
			return err
		}
		e, err := inj.LoadEvalSet(te, datasets.Stats{}, 20)
		if err != nil {
			return err
		}
		defer e.Drop()
		if err := inj.RunReference(e, ref); err != nil {
			return err
		}
		if err := inj.RunBatched(e, bat); err != nil {
			return err
		}
		restore, err := inj.Apply(ref[0])
		if err != nil {
			return err
		}
		return restore()
	})
	for i := range ref {
		r, b := ref[i].Outcome, bat[i].Outcome
		if r == nil || b == nil || r.SDC != b.SDC || r.DUE != b.DUE || r.Masked != b.Masked || r.Images != b.Images {
			t.Errorf("fault %+v: reference %+v, batched %+v", *ref[i], r, b)
		}
	}
}
