package fault

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

// stuckFault is a weight fault of kind k on bit b with outcome o.
func stuckFault(id int, layer string, k Kind, bits []int, o Outcome) Fault {
	return Fault{ID: int64(id), Target: Weight, Layer: layer, Param: "weight", Index: []int64{int64(id)}, Kind: k, Bits: bits,
		DType: Float32, Duration: Transient, Outcome: &o}
}

// A campaign's counts and rates with inactive faults: pairs split into masked,
// SDC, DUE and inactive; the headline rates are over the active pairs (and
// active faults), the _all ones over all, each with its own interval.
func TestSummaryRatesOverActiveFaults(t *testing.T) {
	var fs []Fault
	// conv1, bit 30, one image per fault: 40 inactive, 10 SDC, 2 DUE, 48 masked.
	for i := range 100 {
		o := Outcome{Images: 1, Masked: 1}
		switch {
		case i < 40:
			o = Outcome{Images: 1, Inactive: 1}
		case i < 50:
			o = Outcome{Images: 1, SDC: 1, Misclassified: 1}
		case i < 52:
			o = Outcome{Images: 1, DUE: 1, Misclassified: 1, Top5: 1}
		}
		fs = append(fs, stuckFault(i, "conv1", StuckAt1, []int{30}, o))
	}
	h := Header{Images: 1, Faults: 100}
	s := Summarise(h, fs, 0.9, 1, Timing{})
	all := s.SummaryAllFaults
	if all == nil {
		t.Fatal("a stuck-at campaign has no inactive counts")
	}
	if s.Pairs != 100 || s.Masked != 48 || s.SDC != 10 || s.DUE != 2 || all.Inactive != 40 || s.Masked+s.SDC+s.DUE+all.Inactive != s.Pairs {
		t.Errorf("pairs %d = masked %d + sdc %d + due %d + inactive %d?", s.Pairs, s.Masked, s.SDC, s.DUE, all.Inactive)
	}
	if all.ActivePairs != 60 || all.ActiveFaults != 60 || all.InactiveFaults != 40 {
		t.Errorf("active pairs %d, faults %d, inactive faults %d; want 60, 60, 40", all.ActivePairs, all.ActiveFaults, all.InactiveFaults)
	}
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"sdc_rate", s.SDCRate, 10.0 / 60}, {"due_rate", s.DUERate, 2.0 / 60}, {"vf", s.VF, 12.0 / 60},
		{"top5_rate", s.Top5Rate, 2.0 / 60}, {"critical_fault_rate", s.CriticalFaultRate, 12.0 / 60},
		{"sdc_rate_all", all.SDCRateAll, 0.1}, {"due_rate_all", all.DUERateAll, 0.02}, {"vf_all", all.VFAll, 0.12},
		{"top5_rate_all", all.Top5RateAll, 0.02}, {"critical_fault_rate_all", all.CriticalFaultRateAll, 0.12},
		{"faulty_accuracy (over all pairs)", s.FaultyAccuracy, 1 - 12.0/100},
	} {
		if math.Abs(c.got-c.want) > 1e-15 {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	for _, c := range []struct {
		name      string
		got, want [2]float64
	}{
		{"vf_ci95", s.VFCI95, Wilson(12, 60, 0.95)}, {"vf_ci99", s.VFCI99, Wilson(12, 60, 0.99)},
		{"critical_fault_rate_ci95", s.CriticalFaultRateCI, Wilson(12, 60, 0.95)},
		{"vf_all_ci95", all.VFAllCI95, Wilson(12, 100, 0.95)}, {"vf_all_ci99", all.VFAllCI99, Wilson(12, 100, 0.99)},
		{"critical_fault_rate_all_ci95", all.CriticalFaultRateAllCI, Wilson(12, 100, 0.95)},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if len(s.PerLayer) != 1 || len(s.PerBit) != 1 || s.PerBit[0].AllFaults == nil || s.PerBit[0].Inactive != 40 ||
		s.PerBit[0].VF != s.VF || s.PerBit[0].VFAll != all.VFAll || s.PerLayer[0].VFCI95 != s.VFCI95 {
		t.Errorf("breakdowns %+v %+v", s.PerLayer, s.PerBit)
	}

	// The JSON names the figures over all faults apart; a round trip keeps them.
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"inactive", "active_pairs", "inactive_faults", "active_faults", "sdc_rate_all", "due_rate_all", "vf_all",
		"vf_all_ci95", "vf_all_ci99", "top5_rate_all", "critical_fault_rate_all", "critical_fault_rate_all_ci95"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("summary.json lacks %q", k)
		}
	}
	if _, ok := raw["per_bit"].([]any)[0].(map[string]any)["vf_all"]; !ok {
		t.Error("per_bit lacks vf_all")
	}
	var back Summary
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.SummaryAllFaults == nil || *back.SummaryAllFaults != *all || back.PerBit[0].AllFaults == nil || *back.PerBit[0].AllFaults != *s.PerBit[0].AllFaults {
		t.Errorf("round trip lost the figures over all faults: %+v", back.SummaryAllFaults)
	}

	// Bit flips are always active: no inactive figures at all, and the rates
	// over the pairs as before.
	var flips []Fault
	for i := range 100 {
		o := Outcome{Images: 1, Masked: 1}
		if i < 12 {
			o = Outcome{Images: 1, SDC: 1, Misclassified: 1}
		}
		flips = append(flips, stuckFault(i, "conv1", BitFlip, []int{30}, o))
	}
	f := Summarise(h, flips, 0.9, 1, Timing{})
	fb, _ := json.Marshal(f)
	if f.SummaryAllFaults != nil || f.PerBit[0].AllFaults != nil || strings.Contains(string(fb), "inactive") || strings.Contains(string(fb), "_all") {
		t.Errorf("a bit-flip summary carries inactive figures: %s", fb)
	}
	if f.VF != 0.12 || f.VFCI95 != Wilson(12, 100, 0.95) || f.CriticalFaultRate != 0.12 {
		t.Errorf("bit-flip VF %v %v, critical %v", f.VF, f.VFCI95, f.CriticalFaultRate)
	}
}

// With several images per fault the interval over the active pairs is the
// cluster-robust one over the active faults, each weighted by its active
// images; with every pair inactive nothing is known: rates 0, intervals [0, 1].
func TestSummaryIntervalOverActiveFaults(t *testing.T) {
	// 10 faults on 4 images: 4 inactive on all, 2 active on 2 images (both
	// SDC), 4 active on all 4 images (1 SDC each).
	var fs []Fault
	for i := range 10 {
		var o Outcome
		switch {
		case i < 4:
			o = Outcome{Images: 4, Inactive: 4}
		case i < 6:
			o = Outcome{Images: 4, Inactive: 2, SDC: 2}
		default:
			o = Outcome{Images: 4, SDC: 1, Masked: 3}
		}
		fs = append(fs, stuckFault(i, "fc1", StuckAt0, []int{3, 5}, o))
	}
	s := Summarise(Header{Images: 4, Faults: 10}, fs, 1, 4, Timing{})
	// Active: 6 faults, 2*2 + 4*4 = 20 pairs, 8 critical: r = 0.4.
	r := 0.4
	cc, cm, mm := 2*4.0+4*1.0, 2*(2*2.0)+4*(1*4.0), 2*4.0+4*16.0
	n, mean := 6.0, 20.0/6
	v := (cc - 2*r*cm + r*r*mm) / (n * (n - 1) * mean * mean)
	want := wilson(r, math.Min(20, r*(1-r)/v), 0.95)
	if s.VF != r || s.SummaryAllFaults.ActivePairs != 20 || s.SummaryAllFaults.ActiveFaults != 6 || s.SummaryAllFaults.InactiveFaults != 4 {
		t.Fatalf("vf %v over %+v", s.VF, *s.SummaryAllFaults)
	}
	if math.Abs(s.VFCI95[0]-want[0]) > 1e-12 || math.Abs(s.VFCI95[1]-want[1]) > 1e-12 {
		t.Errorf("vf_ci95 %v, want %v", s.VFCI95, want)
	}
	// Over all: 10 faults, 40 pairs, r = 0.2, every fault with m = 4 images
	// (c = 0 for the inactive ones).
	ra := 0.2
	cmA, mmA := 2*(2*4.0)+4*(1*4.0), 10*16.0
	va := (cc - 2*ra*cmA + ra*ra*mmA) / (10 * 9 * 4 * 4)
	wantAll := wilson(ra, math.Min(40, ra*(1-ra)/va), 0.95)
	if got := s.SummaryAllFaults.VFAllCI95; math.Abs(got[0]-wantAll[0]) > 1e-12 || math.Abs(got[1]-wantAll[1]) > 1e-12 {
		t.Errorf("vf_all_ci95 %v, want %v", got, wantAll)
	}
	if s.SummaryAllFaults.VFAll != ra || s.VFCI95[1]-s.VFCI95[0] <= s.SummaryAllFaults.VFAllCI95[1]-s.SummaryAllFaults.VFAllCI95[0] {
		t.Errorf("the interval over 20 active pairs %v is not wider than over 40 pairs %v", s.VFCI95, s.SummaryAllFaults.VFAllCI95)
	}

	none := Summarise(Header{Images: 4, Faults: 1}, fs[:4], 1, 4, Timing{})
	if none.VF != 0 || none.VFCI95 != [2]float64{0, 1} || none.CriticalFaultRateCI != [2]float64{0, 1} ||
		none.SummaryAllFaults.Inactive != 16 || none.SummaryAllFaults.VFAllCI95[1] == 0 {
		t.Errorf("all inactive: vf %v %v, critical %v, %+v", none.VF, none.VFCI95, none.CriticalFaultRateCI, *none.SummaryAllFaults)
	}
}
