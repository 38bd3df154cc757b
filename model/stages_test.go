package model

import (
	"fmt"
	"slices"
	"testing"

	"github.com/faultline/faultline/internal/torch"
	"github.com/sugarme/gotch/ts"
)

// Running the stages in two parts, through a saved intermediate tensor, gives the
// logits of the whole forward pass bit for bit, for every split point; every site
// lies in exactly one stage.
func TestStagesSplitForward(t *testing.T) {
	for i, arch := range Architectures() {
		t.Run(arch, func(t *testing.T) {
			spec := fashion(arch)
			torch.ManualSeed(int64(40 + i))
			m := newModel(t, spec)
			seen := map[int]bool{}
			for _, s := range m.Sites() {
				st, err := m.StageOf(s.Name)
				if err != nil {
					t.Fatal(err)
				}
				seen[st] = true
			}
			if len(seen) != m.NumStages() {
				t.Errorf("%d stages, %d hold sites", m.NumStages(), len(seen))
			}
			if _, err := m.StageOf("nope"); err == nil {
				t.Error("StageOf(nope) gave no error")
			}
			x, shape := randomInput(spec, 3, int64(50+i))
			want := evalLogits(t, m, x, shape)
			withInput(t, x, shape, func(in *ts.Tensor) error {
				leads := 0
				for k := 0; k <= m.NumStages(); k++ {
					mid, err := m.RunStages(in, 0, k, false, nil)
					if err != nil {
						return err
					}
					if sz, _ := mid.Size(); k < m.NumStages() && !slices.Equal(sz[1:], m.StageInShape(k)) {
						t.Errorf("stage %d input %v, StageInShape %v", k, sz, m.StageInShape(k))
					}
					if lead := m.Lead(k); lead != "" {
						// Starting right after the lead layer gives the same logits.
						out, err := afterLead(m, k, mid, nil)
						if err != nil {
							mid.Drop()
							return err
						}
						got, err := takeFloats(out)
						if err != nil {
							mid.Drop()
							return err
						}
						leads++
						sameLogits(t, fmt.Sprintf("after lead %s of stage %d", lead, k), got, want)
					}
					out, err := m.RunStages(mid, k, m.NumStages(), false, nil)
					mid.Drop()
					if err != nil {
						return err
					}
					got, err := takeFloats(out)
					if err != nil {
						return err
					}
					if !sameLogits(t, fmt.Sprintf("split at stage %d", k), got, want) {
						return fmt.Errorf("split at stage %d: the logits differ", k)
					}
				}
				if _, err := m.RunStages(in, 1, m.NumStages(), false, nil); err == nil {
					t.Error("stage 1 accepted the network input")
				}
				if leads == 0 {
					t.Errorf("%s: no stage has a lead layer", arch)
				}
				if _, err := m.RunAfterLead(0, in, m.NumStages(), false, nil); err == nil && m.Lead(0) != "" {
					t.Error("RunAfterLead accepted the network input as a layer output")
				}
				return nil
			})
		})
	}
}
