package model

import (
	"math"
	"testing"

	"github.com/faultline/faultline/internal/torch"
	"github.com/sugarme/gotch"
)

// Running the stages in two parts, through a saved intermediate tensor, gives the
// logits of the whole forward pass bit for bit, for every split point; every site
// lies in exactly one stage.
func TestStagesSplitForward(t *testing.T) {
	for i, arch := range Architectures() {
		t.Run(arch, func(t *testing.T) {
			spec := fashion(arch)
			torch.ManualSeed(int64(40 + i))
			m, err := New(spec, gotch.CPU)
			if err != nil {
				t.Fatal(err)
			}
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
			do(t, func() error {
				return torch.NoGrad(func() error {
					in, err := torch.FromFloat32(x, shape, gotch.CPU)
					if err != nil {
						return err
					}
					defer in.Drop()
					leads := 0
					for k := 0; k <= m.NumStages(); k++ {
						mid, err := m.RunStages(in, 0, k, false, nil)
						if err != nil {
							return err
						}
						if sz, _ := mid.Size(); k < m.NumStages() && !equalShape(sz[1:], m.StageInShape(k)) {
							t.Errorf("stage %d input %v, StageInShape %v", k, sz, m.StageInShape(k))
						}
						if lead := m.Lead(k); lead != "" {
							// Starting right after the lead layer gives the same logits.
							y, err := m.RunLayer(lead, mid)
							if err != nil {
								mid.Drop()
								return err
							}
							out, err := m.RunAfterLead(k, y, m.NumStages(), false, nil)
							y.Drop()
							if err != nil {
								mid.Drop()
								return err
							}
							got, err := torch.Float32s(out)
							out.Drop()
							if err != nil {
								mid.Drop()
								return err
							}
							leads++
							for j := range got {
								if math.Float32bits(got[j]) != math.Float32bits(want[j]) {
									t.Errorf("after lead %s of stage %d: logit %d = %v, want %v", lead, k, j, got[j], want[j])
									break
								}
							}
						}
						out, err := m.RunStages(mid, k, m.NumStages(), false, nil)
						mid.Drop()
						if err != nil {
							return err
						}
						got, err := torch.Float32s(out)
						out.Drop()
						if err != nil {
							return err
						}
						for j := range got {
							if math.Float32bits(got[j]) != math.Float32bits(want[j]) {
								t.Fatalf("split at stage %d: logit %d = %v, want %v", k, j, got[j], want[j])
							}
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
		})
	}
}
