package fault

import (
	"context"
	"errors"
)

// Agreement compares reference and batched outcomes of the same faults.
type Agreement struct {
	Faults int64 `json:"faults"`
	// Differ counts faults whose outcome differs in any of SDC, Masked, DUE,
	// Top5 and Inactive; the other fields count each of them on its own.
	Differ   int64 `json:"differ"`
	SDC      int64 `json:"sdc"`
	Masked   int64 `json:"masked"`
	DUE      int64 `json:"due"`
	Top5     int64 `json:"top5"`
	Inactive int64 `json:"inactive,omitempty"`
	// Critical faults (SDC or DUE on their image) in each mode.
	ReferenceCritical int64 `json:"reference_critical"`
	BatchedCritical   int64 `json:"batched_critical"`
	// Examples are the first differing faults (at most 5), with both outcomes.
	Examples []AgreementDiff `json:"examples,omitempty"`
}

// AgreementDiff is one fault whose outcomes differ.
type AgreementDiff struct {
	Fault     Fault   `json:"fault"` // with the reference outcome
	Reference Outcome `json:"reference"`
	Batched   Outcome `json:"batched"`
}

// agree runs the faults in both modes and compares their outcomes.
func agree(ctx context.Context, inj *Injector, ev *EvalSet, faults []Fault, block int) (*Agreement, error) {
	ref := append([]Fault(nil), faults...)
	bat := faults
	if _, err := runTimed(ctx, inj, ev, ref, "reference", block); err != nil {
		return nil, err
	}
	if _, err := runTimed(ctx, inj, ev, bat, "batched", block); err != nil {
		return nil, err
	}
	a := &Agreement{Faults: int64(len(faults))}
	for i := range ref {
		r, b := ref[i].Outcome, bat[i].Outcome
		if r == nil || b == nil {
			return nil, errors.New("agreement: a fault has no outcome")
		}
		a.ReferenceCritical += b2i(r.Critical() > 0)
		a.BatchedCritical += b2i(b.Critical() > 0)
		d := []bool{r.SDC != b.SDC, r.Masked != b.Masked, r.DUE != b.DUE, r.Top5 != b.Top5, r.Inactive != b.Inactive}
		a.SDC += b2i(d[0])
		a.Masked += b2i(d[1])
		a.DUE += b2i(d[2])
		a.Top5 += b2i(d[3])
		a.Inactive += b2i(d[4])
		if d[0] || d[1] || d[2] || d[3] || d[4] {
			a.Differ++
			if len(a.Examples) < 5 {
				a.Examples = append(a.Examples, AgreementDiff{Fault: ref[i], Reference: *r, Batched: *b})
			}
		}
	}
	return a, nil
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
