package importance

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/faultline/faultline/datasets"
	"github.com/faultline/faultline/fault"
	"github.com/faultline/faultline/internal/atomicfile"
	"github.com/faultline/faultline/internal/torch"
	"github.com/faultline/faultline/model"
	"github.com/sugarme/gotch"
)

// Mode is how faults are drawn.
type Mode string

// Modes.
const (
	// SearchMode draws without replacement, to find distinct critical faults.
	SearchMode Mode = "search"
	// EstimateMode draws with replacement, for unbiased VF estimates.
	EstimateMode Mode = "estimate"
)

// ParseMode checks a mode name.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case SearchMode, EstimateMode:
		return m, nil
	}
	return "", fmt.Errorf("importance: unknown mode %q (want search or estimate)", s)
}

// Output files and kinds.
const (
	SummaryFile   = "summary.json"
	SummaryKind   = "faultline.importance"
	SummarySchema = 1
	CriticalFile  = "critical.jsonl" // critical faults, replayable by the engine
	DrawsFile     = "draws.jsonl"    // every drawn fault with q, p and its outcome
	RankingJSON   = "ranking.json"
	RankingCSV    = "ranking.csv"
	RankingKind   = "faultline.ranking"
)

// Options configure Run and RunOn.
type Options struct {
	// Checkpoint, Dataset (default: the checkpoint's) and Device say what Run
	// loads, DataDir where it finds the data set; RunOn takes the model and
	// data loaded.
	Checkpoint string
	Dataset    string
	DataDir    string
	Device     gotch.Device
	Threads    int
	Target     Target
	Mode       Mode
	// Budget is the number of injections for importance sampling, and as many
	// again for the uniform comparison.
	Budget int
	// Tau: a fault is critical when it lowers the evaluation set's accuracy by
	// at least Tau relative to the golden accuracy.
	Tau float64
	// Images is the evaluation set: the first Images test images taken class by
	// class in equal shares.
	Images int
	Alpha  float64 // uniform share of the proposal, in [0, 1]
	Score  Score
	// ScoreFloor adds ScoreFloor times its layer's mean score to every element's
	// score (see floored); >= 0.
	ScoreFloor float64
	Cap        float64 // bit effect cap (default DefaultCap)
	// SensBatches of SensBatchSize training images give the sensitivities.
	SensBatches, SensBatchSize int
	M                          int // critical faults to find (default 50)
	Seed                       int64
	BatchSize                  int // samples per batched forward (default 1024)
	// Stratify (estimate mode) draws by layer x bit class with q restricted to
	// each stratum, allocated by Allocation (see stratifiedDraws).
	Stratify   bool
	Allocation Allocation
	// CompareRanking, when set, is another run's ranking.json: the summary
	// then gives Kendall's tau between the two rankings' scores.
	CompareRanking string
	Out            string
	// OnProgress reports injections done of total, per phase.
	OnProgress func(phase string, done, total int64)
	// OnReplay, when set, is told of the injections of a phase replayed from the
	// journal, before the OnProgress that counts them (so progress rates can
	// leave them out).
	OnReplay func(phase string, injections int64)
	// block overrides the injections per block (default 2^18 / images), the
	// unit of progress and of the journal; for tests.
	block int
	// onBlock, when set, hears of every block, replayed or injected; for tests.
	onBlock func(phase string, replayed bool)
	// ReplaceJournal starts a new journal over one of a run with other
	// arguments instead of refusing to (for callers that restart, like harden).
	ReplaceJournal bool
	// OnResume, when set, is told how many injections an interrupted run into
	// Out recorded in its journal (JournalFile); they are replayed, not rerun.
	OnResume func(injections int64)
}

func (o *Options) defaults() error {
	if o.Budget <= 0 {
		return fmt.Errorf("importance: budget %d: want at least 1 injection", o.Budget)
	}
	if !(o.Alpha >= 0 && o.Alpha <= 1) {
		return fmt.Errorf("importance: alpha %g outside [0, 1]", o.Alpha)
	}
	if !(o.Tau > 0 && o.Tau <= 1) {
		return fmt.Errorf("importance: tau %g outside (0, 1]", o.Tau)
	}
	if _, err := ParseTarget(string(o.Target)); err != nil {
		return err
	}
	if _, err := ParseMode(string(o.Mode)); err != nil {
		return err
	}
	if o.Score == "" {
		o.Score = Fisher
	}
	if _, err := ParseScore(string(o.Score)); err != nil {
		return err
	}
	if !(o.ScoreFloor >= 0) {
		return fmt.Errorf("importance: score floor %g: want >= 0", o.ScoreFloor)
	}
	switch o.Allocation {
	case "":
		o.Allocation = ProposalAllocation
	case ProposalAllocation, Neyman:
	default:
		return fmt.Errorf("importance: unknown allocation %q (want proposal or neyman)", o.Allocation)
	}
	if o.Stratify && o.Mode != EstimateMode {
		return fmt.Errorf("importance: stratification needs estimate mode (draws with replacement)")
	}
	if o.Images <= 0 {
		return fmt.Errorf("importance: images %d: want at least 1", o.Images)
	}
	if o.Cap <= 0 {
		o.Cap = DefaultCap
	}
	if o.SensBatches <= 0 {
		o.SensBatches = 4
	}
	if o.SensBatchSize <= 0 {
		o.SensBatchSize = 128
	}
	if o.M <= 0 {
		o.M = 50
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 1024
	}
	if o.Out == "" {
		return fmt.Errorf("importance: no output directory")
	}
	return nil
}

// Allocation is how a stratified run shares its budget among the strata.
type Allocation string

// Allocations.
const (
	ProposalAllocation Allocation = "proposal" // in proportion to q's mass (default)
	Neyman             Allocation = "neyman"   // pilot, then share_h * sd_h
)

// Summary is summary.json.
type Summary struct {
	Kind           string     `json:"kind"`
	SchemaVersion  int        `json:"schema_version"`
	Checkpoint     string     `json:"checkpoint"`
	Arch           string     `json:"arch"`
	Dataset        string     `json:"dataset"`
	Target         Target     `json:"target"`
	Mode           Mode       `json:"mode"`
	Budget         int        `json:"budget"`
	Tau            float64    `json:"tau"`
	Alpha          float64    `json:"alpha"`
	Score          Score      `json:"score"`
	Stratified     bool       `json:"stratified"`
	Allocation     Allocation `json:"allocation,omitempty"`
	ScoreFloor     float64    `json:"score_floor"`
	Cap            float64    `json:"cap"`
	Seed           int64      `json:"seed"`
	Images         int        `json:"images"`
	ImagesSHA256   string     `json:"images_sha256"`
	GoldenAccuracy float64    `json:"golden_accuracy"`
	SensImages     int        `json:"sensitivity_images"`
	FaultSpace     int64      `json:"fault_space"` // single-bit faults in the space
	// PrecisionAtK is the share of critical faults among the first k drawn,
	// per sampler ("is", "uniform") and k.
	PrecisionAtK map[string]map[string]float64 `json:"precision_at_k"`
	// InjectionsToM is the number of injections each sampler needed to find M
	// distinct critical faults (absent: not within the budget).
	M             int             `json:"m"`
	InjectionsToM map[string]*int `json:"injections_to_m_critical"`
	// VF estimates: the share of (fault, image) pairs whose prediction changes
	// (SDC or DUE), over the uniform single-bit fault space.
	VFIS          float64    `json:"vf_is"`
	VFISCI        [2]float64 `json:"vf_is_ci95"`
	VFUniform     float64    `json:"vf_uniform"`
	VFUniformCI   [2]float64 `json:"vf_uniform_ci95"`
	ESS           float64    `json:"ess"`
	VarianceRatio *float64   `json:"variance_ratio,omitempty"` // uniform / IS, per injection
	// Estimates holds the full estimates (VF and critical-fault rate), and per
	// layer and bit class.
	Estimates  map[string]Estimates `json:"estimates"`
	Protection []ProtectionPoint    `json:"protection"`
	// Stability compares the ranking with CompareRanking's.
	Stability *Stability `json:"ranking_stability,omitempty"`
	// SplitHalf is the ranking's stability within the run: Kendall's tau-b
	// between the rankings of the even and the odd IS draws. It reads how
	// stable a ranking of half the budget is (two runs of the whole budget
	// agree at least as well), without a second run.
	SplitHalf *SplitHalf `json:"ranking_split_half,omitempty"`
	// Note says how to read the estimates in search mode.
	Note     string         `json:"note,omitempty"`
	Software model.Software `json:"software"`
	Timing   Timing         `json:"timing"`
}

// Stability is Kendall's tau-b between this run's unit scores and another
// run's, over the units both scored.
type Stability struct {
	Other      string  `json:"other"`
	Units      int     `json:"units"`
	KendallTau float64 `json:"kendall_tau"`
}

// SplitHalf is Kendall's tau-b between the unit scores of two halves of a
// run's importance-sampled draws (even and odd draws), over every unit.
type SplitHalf struct {
	Draws      int     `json:"draws_per_half"`
	Units      int     `json:"units"`
	KendallTau float64 `json:"kendall_tau"`
}

// splitHalf ranks the even and the odd draws apart and compares the scores.
func splitHalf(sp *space, ds []draw) *SplitHalf {
	if len(ds) < 4 {
		return nil
	}
	var even, odd []draw
	for i, d := range ds {
		if i%2 == 0 {
			even = append(even, d)
		} else {
			odd = append(odd, d)
		}
	}
	a, b := rankDraws(sp, even), rankDraws(sp, odd)
	sa, sb := make([]float64, len(a)), make([]float64, len(b))
	for _, u := range a {
		sa[u.key] = *u.Score
	}
	for _, u := range b {
		sb[u.key] = *u.Score
	}
	return &SplitHalf{Draws: len(odd), Units: len(a), KendallTau: KendallTau(sa, sb)}
}

// Estimates are one sampler's estimates.
type Estimates struct {
	VF       Estimate            `json:"vf"`
	Critical Estimate            `json:"critical_rate"`
	Layers   map[string]Estimate `json:"layers_vf"`
	BitClass map[string]Estimate `json:"bit_classes_vf"`
}

// Timing is wall time per phase, in seconds.
type Timing struct {
	Sensitivity float64 `json:"sensitivity_seconds"`
	Injection   float64 `json:"injection_seconds"`
	Total       float64 `json:"total_seconds"`
}

// draw is one drawn fault with its outcome.
type draw struct {
	key      int64
	q, p     float64 // q(f) and p(f) over the whole space
	w        float64 // the estimator's weight: p/q, or p_h/q_h within a stratum
	stratum  int     // index into the run's strata, -1 without stratification
	pilot    bool    // a stratified pilot draw: sets the allocation, not the estimate
	y        float64 // share of images whose prediction changed
	critical bool
	f        fault.Fault
}

// Result is what RunOn finds, as written to the output directory.
type Result struct {
	Summary *Summary // summary.json
	// Critical is critical.jsonl: the distinct critical faults, importance-
	// sampled ones first, numbered from 0, with their outcomes.
	Critical []fault.Fault
	// Ranking is ranking.json's units, most critical first.
	Ranking []Unit
}

// Run loads o.Checkpoint, the test split and the training split of its data
// set (fault.LoadCheckpoint) and runs RunOn on them; it returns the summary.
func Run(ctx context.Context, o Options) (*Summary, error) {
	start := time.Now()
	threads, err := o.prepare()
	if err != nil {
		return nil, err
	}
	var res *Result
	err = torch.Do(func() error {
		ld, err := fault.LoadCheckpoint(o.Checkpoint, o.Dataset, o.DataDir, o.Device)
		if err != nil {
			return err
		}
		if err := checkImages(ld, o.Images); err != nil {
			return err
		}
		train, err := datasets.Load(ld.Dataset, o.DataDir, datasets.Train)
		if err != nil {
			return err
		}
		res, err = runOn(ctx, ld, train, o, threads, start)
		return err
	})
	if err != nil {
		return nil, err
	}
	return res.Summary, nil
}

// RunOn runs importance sampling and the uniform comparison on model l, in
// memory, with the first o.Images images of l's test split (class by class)
// as the evaluation set and train as the training split the sensitivities are
// measured on, and writes the results to o.Out, where its journal
// (JournalFile) keys on l.Checkpoint and l.Identity(). o.Checkpoint,
// o.Dataset, o.DataDir and o.Device are not read: l and train hold the model
// and its data. The model's parameters are left as they were.
func RunOn(ctx context.Context, l *fault.Loaded, train *datasets.Set, o Options) (*Result, error) {
	start := time.Now()
	if l == nil || l.Model == nil {
		return nil, fmt.Errorf("importance: no model")
	}
	if train == nil {
		return nil, fmt.Errorf("importance: %s: no training split for the sensitivities", l.Checkpoint)
	}
	threads, err := o.prepare()
	if err != nil {
		return nil, err
	}
	var res *Result
	err = torch.Do(func() error {
		if err := checkImages(l, o.Images); err != nil {
			return err
		}
		res, err = runOn(ctx, l, train, o, threads, start)
		return err
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// prepare checks o and fills in its defaults, readies o.Out and sets the
// thread count, which it returns.
func (o *Options) prepare() (int, error) {
	if err := o.defaults(); err != nil {
		return 0, err
	}
	if err := atomicfile.CheckDir(o.Out); err != nil {
		return 0, fmt.Errorf("importance: %w", err)
	}
	return torch.SetThreads(o.Threads)
}

// checkImages checks that l's test split holds the evaluation set.
func checkImages(l *fault.Loaded, images int) error {
	if images > l.Set.Len() {
		return fmt.Errorf("importance: --images %d: the %s test split has only %d images", images, l.Dataset, l.Set.Len())
	}
	return nil
}

// runOn is RunOn once o is prepared, on the torch thread.
func runOn(ctx context.Context, ld *fault.Loaded, train *datasets.Set, o Options, threads int, start time.Time) (*Result, error) {
	var res *Result
	var jn *replayLog
	err := func() error {
		sp, err := newSpace(ld.Model, o.Target)
		if err != nil {
			return err
		}
		inj, err := fault.NewInjector(ld.Model)
		if err != nil {
			return err
		}
		inj.BatchSize = o.BatchSize
		evSet, hash := StratifiedHead(ld.Set, o.Images)
		ev, err := inj.LoadEvalSet(evSet, ld.Stats, 0)
		if err != nil {
			return err
		}
		defer ev.Drop()
		sens, err := sensitivity(ld.Model, sp, train, ld.Stats, o.SensBatches, o.SensBatchSize, o.Cap)
		if err != nil {
			return err
		}
		tSens := time.Since(start)
		q, err := newProposal(sp, o.Alpha, floored(sp, sens.score(o.Score), o.ScoreFloor), sens.beta())
		if err != nil {
			return err
		}
		rng := rand.New(rand.NewPCG(uint64(o.Seed), 0x15d1))
		var isKeys []int64
		if !o.Stratify {
			if isKeys, err = drawKeys(o.Budget, o.Mode == SearchMode, sp.faults(), func() int64 { return q.draw(rng) }); err != nil {
				return err
			}
		}
		urng := rand.New(rand.NewPCG(uint64(o.Seed), 0x0f1f))
		uKeys, err := drawKeys(o.Budget, o.Mode == SearchMode, sp.faults(), func() int64 { return urng.Int64N(sp.faults()) })
		if err != nil {
			return err
		}
		jh, err := newJournalHeader(&o, ld, threads, hash, ev.Len())
		if err != nil {
			return err
		}
		if jn, err = openJournal(o.Out, jh, o.ReplaceJournal); err != nil {
			return err
		}
		if n := jn.recorded(); n > 0 && o.OnResume != nil {
			o.OnResume(n)
		}
		tInj := time.Now()
		golden := ev.Accuracy()
		var is []draw
		var strata []stratum
		if o.Stratify {
			strata = q.strata()
			is, err = runStratified(ctx, inj, ev, sp, q, strata, golden, o, rng, jn)
		} else {
			is, err = inject(ctx, inj, ev, sp, isKeys, golden, o, func(k int64) float64 { return q.prob(k) }, "importance", jn)
		}
		if err != nil {
			return err
		}
		uni, err := inject(ctx, inj, ev, sp, uKeys, golden, o, func(int64) float64 { return q.p() }, "uniform", jn)
		if err != nil {
			return err
		}
		sum := &Summary{Kind: SummaryKind, SchemaVersion: SummarySchema, Checkpoint: ld.Checkpoint, Arch: ld.Meta.Arch,
			Dataset: ld.Dataset, Target: o.Target, Mode: o.Mode, Budget: o.Budget, Tau: o.Tau, Alpha: o.Alpha,
			Score: o.Score, ScoreFloor: o.ScoreFloor, Cap: o.Cap, Seed: o.Seed, Images: ev.Len(), ImagesSHA256: hash, GoldenAccuracy: golden,
			SensImages: sens.Images, FaultSpace: sp.faults(), M: o.M, Software: model.CurrentSoftware()}
		sum.Stratified = o.Stratify
		if o.Stratify {
			sum.Allocation = o.Allocation
		}
		summarise(sum, sp, strata, is, uni)
		ranked := rankDraws(sp, is)
		sum.SplitHalf = splitHalf(sp, is)
		sum.Protection = protection(sp, ranked, keysOf(uni), ysOf(uni), o.Seed)
		if o.CompareRanking != "" {
			if sum.Stability, err = compareRanking(o.CompareRanking, ranked); err != nil {
				return err
			}
		}
		sum.Timing = Timing{Sensitivity: tSens.Seconds(), Injection: time.Since(tInj).Seconds(), Total: time.Since(start).Seconds()}
		res = &Result{Summary: sum, Critical: criticalFaults(is, uni), Ranking: ranked}
		return write(o.Out, res, is, uni)
	}()
	if jn != nil {
		// Kept while the results are not written: a rerun resumes from it.
		if cerr := jn.close(err == nil); err == nil && cerr != nil {
			err = fmt.Errorf("importance: %w", cerr)
		}
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

// drawKeys draws n fault keys; without replacement when distinct (giving up
// after 100 n tries, when the proposal has less support than n).
func drawKeys(n int, distinct bool, space int64, next func() int64) ([]int64, error) {
	if distinct && int64(n) > space {
		return nil, fmt.Errorf("importance: budget %d exceeds the %d faults of the space", n, space)
	}
	keys := make([]int64, 0, n)
	seen := map[int64]bool{}
	for tries := 0; len(keys) < n; tries++ {
		if tries > 100*n {
			return nil, fmt.Errorf("importance: found only %d distinct faults in %d draws: the proposal's support is too small (raise alpha)", len(keys), tries)
		}
		k := next()
		if distinct && seen[k] {
			continue
		}
		seen[k] = true
		keys = append(keys, k)
	}
	return keys, nil
}

// blockSize is the injections per block: about 2^18 fault x image pairs.
func blockSize(o Options, images int) int {
	if o.block > 0 {
		return o.block
	}
	return max(1, (1<<18)/images)
}

// inject runs the faults of keys on the evaluation set in blocks, replaying the
// blocks the journal recorded and recording the others.
func inject(ctx context.Context, inj *fault.Injector, ev *fault.EvalSet, sp *space, keys []int64, golden float64,
	o Options, prob func(int64) float64, phase string, jn *replayLog) ([]draw, error) {
	ds := make([]draw, len(keys))
	p := 1 / float64(sp.faults())
	block := blockSize(o, ev.Len())
	if o.OnProgress != nil {
		o.OnProgress(phase, 0, int64(len(keys)))
	}
	for lo := 0; lo < len(keys); lo += block {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hi := min(len(keys), lo+block)
		fs := make([]*fault.Fault, 0, hi-lo)
		for i := lo; i < hi; i++ {
			ds[i] = draw{key: keys[i], q: prob(keys[i]), p: p, stratum: -1, f: sp.fault(keys[i], int64(i))}
			ds[i].w = ds[i].p / ds[i].q
			fs = append(fs, &ds[i].f)
		}
		outs, replayed, err := jn.replay(phase, keys[lo:hi])
		if err != nil {
			return nil, err
		}
		if o.onBlock != nil {
			o.onBlock(phase, replayed)
		}
		if replayed {
			if o.OnReplay != nil {
				o.OnReplay(phase, int64(hi-lo))
			}
			for i := lo; i < hi; i++ {
				oc := outs[i-lo]
				ds[i].f.Outcome = &oc
			}
		} else {
			if err := inj.RunBatched(ev, fs); err != nil {
				return nil, fmt.Errorf("importance: %s: %w", phase, err)
			}
			outs := make([]fault.Outcome, 0, hi-lo)
			for i := lo; i < hi; i++ {
				outs = append(outs, *ds[i].f.Outcome)
			}
			if err := jn.record(phase, keys[lo:hi], outs); err != nil {
				return nil, err
			}
		}
		for i := lo; i < hi; i++ {
			oc := ds[i].f.Outcome
			ds[i].y = float64(oc.Critical()) / float64(oc.Images)
			acc := float64(oc.Images-oc.Misclassified) / float64(oc.Images)
			ds[i].critical = golden > 0 && (golden-acc)/golden >= o.Tau
		}
		if o.OnProgress != nil {
			o.OnProgress(phase, int64(hi), int64(len(keys)))
		}
	}
	return ds, nil
}

func keysOf(ds []draw) []int64 {
	out := make([]int64, len(ds))
	for i, d := range ds {
		out[i] = d.key
	}
	return out
}

func ysOf(ds []draw) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = d.y
	}
	return out
}

// rankDraws ranks the space's units from importance-sampled draws.
func rankDraws(sp *space, ds []draw) []Unit {
	w := make([]float64, len(ds))
	crit := make([]bool, len(ds))
	for i, d := range ds {
		w[i] = d.p / d.q // within a (unit, class) cell, proportional to p_h/q_h
		crit[i] = d.critical
	}
	return rank(sp, keysOf(ds), w, ysOf(ds), crit)
}

// summarise fills the summary's sampler comparisons and estimates.
func summarise(s *Summary, sp *space, strata []stratum, is, uni []draw) {
	s.PrecisionAtK = map[string]map[string]float64{"is": {}, "uniform": {}}
	s.InjectionsToM = map[string]*int{}
	s.Estimates = map[string]Estimates{}
	for name, ds := range map[string][]draw{"is": is, "uniform": uni} {
		for _, k := range []int{10, 100, 1000, 10000, len(ds)} {
			if k > len(ds) {
				continue
			}
			c := 0
			for _, d := range ds[:k] {
				if d.critical {
					c++
				}
			}
			s.PrecisionAtK[name][strconv.Itoa(k)] = float64(c) / float64(k)
		}
		seen := map[int64]bool{}
		for i, d := range ds {
			if d.critical && !seen[d.key] {
				seen[d.key] = true
				if len(seen) == s.M {
					n := i + 1
					s.InjectionsToM[name] = &n
					break
				}
			}
		}
		if _, ok := s.InjectionsToM[name]; !ok {
			s.InjectionsToM[name] = nil
		}
		if name == "is" && strata != nil {
			s.Estimates[name] = stratifiedEstimates(sp, strata, ds)
		} else {
			s.Estimates[name] = estimates(sp, ds)
		}
	}
	s.VFIS, s.VFISCI = s.Estimates["is"].VF.Value, s.Estimates["is"].VF.CI95
	s.VFUniform, s.VFUniformCI = s.Estimates["uniform"].VF.Value, s.Estimates["uniform"].VF.CI95
	s.ESS = s.Estimates["is"].VF.ESS
	if vi := s.Estimates["is"].VF.Variance; vi > 0 {
		r := s.Estimates["uniform"].VF.Variance / vi
		s.VarianceRatio = &r
	}
	if s.Mode == SearchMode {
		s.Note = "search mode draws without replacement: the weighted estimates treat the draws as independent, which holds approximately while the budget is a small share of the fault space; use --mode estimate for unbiased estimates"
	}
}

// estimates computes a sampler's estimates, overall, per layer and per bit
// class: a restricted estimate re-weights by the stratum's share of p, so
// VF_l = E_q[w y 1(f in l)] / P(l) uses every draw.
func estimates(sp *space, ds []draw) Estimates {
	n := len(ds)
	w := make([]float64, n)
	y := make([]float64, n)
	c := make([]float64, n)
	for i, d := range ds {
		w[i], y[i] = d.w, d.y
		if d.critical {
			c[i] = 1
		}
	}
	e := Estimates{VF: estimate(w, y), Critical: estimate(w, c), Layers: map[string]Estimate{}, BitClass: map[string]Estimate{}}
	restricted := func(in func(d draw) bool, share float64) Estimate {
		yy := make([]float64, n)
		for i, d := range ds {
			if in(d) {
				yy[i] = d.y / share
			}
		}
		return estimate(w, yy)
	}
	for li, l := range sp.layers {
		share := float64(l.n) / float64(sp.elems)
		e.Layers[l.site.Name] = restricted(func(d draw) bool { return sp.layerOf(d.key/Bits) == li }, share)
	}
	for _, bc := range bitClasses {
		e.BitClass[bc.name] = restricted(func(d draw) bool { return bitClass(int(d.key%Bits)) == bc.name }, float64(bc.bits)/Bits)
	}
	return e
}

// runStratified draws and injects the importance-sampled faults stratum by
// stratum: the pilot, then the Neyman-allocated rest.
func runStratified(ctx context.Context, inj *fault.Injector, ev *fault.EvalSet, sp *space, q *proposal, strata []stratum,
	golden float64, o Options, rng *rand.Rand, jn *replayLog) ([]draw, error) {
	return stratifiedDraws(o.Budget, o.Allocation == Neyman, q, strata, rng, func(keys []int64, phase string) ([]draw, error) {
		return inject(ctx, inj, ev, sp, keys, golden, o, func(k int64) float64 { return q.prob(k) }, phase, jn)
	})
}

// stratifiedDraws draws budget faults from q restricted to each stratum, at
// least two per stratum. The rest goes in proportion to q's mass on each
// stratum (never worse than unstratified IS: the same expected allocation,
// without its randomness), or, with neyman, by Neyman allocation on the
// standard deviations of w*y measured by a pilot of a tenth of the budget (in
// proportion to the strata's shares of p, at least two each). Only the second
// phase enters the estimates: pooling the pilot, whose values set the
// allocation, would bias them. eval runs a list of fault keys.
func stratifiedDraws(budget int, neymanAlloc bool, q *proposal, strata []stratum, rng *rand.Rand, eval func(keys []int64, phase string) ([]draw, error)) ([]draw, error) {
	if budget < 5*len(strata) {
		return nil, fmt.Errorf("importance: budget %d too small to stratify %d strata (layer x bit class): want at least %d", budget, len(strata), 5*len(strata))
	}
	share := make([]float64, len(strata))
	pilot := make([]int, len(strata))
	used := 0
	for h := range strata {
		if strata[h].mass <= 0 {
			return nil, fmt.Errorf("importance: stratum %d (layer %s, %s bits) has no proposal mass: use alpha > 0 to stratify",
				h, q.sp.layers[strata[h].layer].site.Name, bitClasses[strata[h].class].name)
		}
		share[h] = strata[h].share
		pilot[h] = max(2, int(math.Round(0.1*float64(budget)*share[h])))
		used += pilot[h]
	}
	run := func(alloc []int, phase string) ([]draw, error) {
		var keys []int64
		var hs []int
		for h, n := range alloc {
			for range n {
				keys = append(keys, q.drawIn(&strata[h], rng))
				hs = append(hs, h)
			}
		}
		ds, err := eval(keys, phase)
		if err != nil {
			return nil, err
		}
		for i := range ds {
			h := &strata[hs[i]]
			ds[i].stratum = hs[i]
			ds[i].w = (ds[i].p / h.share) / (ds[i].q / h.mass)
		}
		return ds, nil
	}
	if !neymanAlloc {
		mass := make([]float64, len(strata))
		for h := range strata {
			mass[h] = strata[h].mass
		}
		alloc := proportional(budget-2*len(strata), mass)
		for h := range alloc {
			alloc[h] += 2
		}
		all, err := run(alloc, "importance")
		if err != nil {
			return nil, err
		}
		for i := range all {
			all[i].f.ID = int64(i)
		}
		return all, nil
	}
	first, err := run(pilot, "importance (pilot)")
	if err != nil {
		return nil, err
	}
	for i := range first {
		first[i].pilot = true
	}
	groups := make([][]float64, len(strata))
	for _, d := range first {
		groups[d.stratum] = append(groups[d.stratum], d.w*d.y)
	}
	sd := make([]float64, len(strata))
	for h, g := range groups {
		sd[h] = math.Sqrt(sampleVariance(g))
	}
	if budget-used < 2*len(strata) {
		return nil, fmt.Errorf("importance: budget %d too small to stratify %d strata after a pilot of %d", budget, len(strata), used)
	}
	alloc := neyman(budget-used-2*len(strata), share, sd)
	for h := range alloc {
		alloc[h] += 2
	}
	rest, err := run(alloc, "importance")
	if err != nil {
		return nil, err
	}
	all := append(first, rest...)
	for i := range all {
		all[i].f.ID = int64(i)
	}
	return all, nil
}

// sampleVariance is the unbiased sample variance (0 below two values).
func sampleVariance(xs []float64) float64 {
	if len(xs) < 2 {
		return 0
	}
	var m float64
	for _, x := range xs {
		m += x
	}
	m /= float64(len(xs))
	var s float64
	for _, x := range xs {
		s += (x - m) * (x - m)
	}
	return s / float64(len(xs)-1)
}

// stratifiedEstimates is estimates for stratified draws: per stratum means
// combined with the strata's shares, overall, per layer and per bit class.
func stratifiedEstimates(sp *space, strata []stratum, ds []draw) Estimates {
	n := len(strata)
	w := make([][]float64, n)
	wy := make([][]float64, n)
	wc := make([][]float64, n)
	for _, d := range ds {
		if d.pilot {
			continue
		}
		w[d.stratum] = append(w[d.stratum], d.w)
		wy[d.stratum] = append(wy[d.stratum], d.w*d.y)
		c := 0.0
		if d.critical {
			c = d.w
		}
		wc[d.stratum] = append(wc[d.stratum], c)
	}
	share := make([]float64, n)
	for h := range strata {
		share[h] = strata[h].share
	}
	e := Estimates{VF: stratifiedEstimate(share, w, wy), Critical: stratifiedEstimate(share, w, wc),
		Layers: map[string]Estimate{}, BitClass: map[string]Estimate{}}
	sub := func(in func(h *stratum) bool) Estimate {
		s := make([]float64, n)
		var tot float64
		for h := range strata {
			if in(&strata[h]) {
				tot += share[h]
			}
		}
		for h := range strata {
			if in(&strata[h]) {
				s[h] = share[h] / tot
			}
		}
		return stratifiedEstimate(s, w, wy)
	}
	for li, l := range sp.layers {
		e.Layers[l.site.Name] = sub(func(h *stratum) bool { return h.layer == li })
	}
	for c, bc := range bitClasses {
		e.BitClass[bc.name] = sub(func(h *stratum) bool { return h.class == c })
	}
	return e
}

// StratifiedHead returns the first n images of set taken class by class in
// equal shares (the first classes get one more when n does not divide evenly;
// classes short of images leave their share to the next images in order), and
// the SHA-256 of their pixels and labels.
func StratifiedHead(set *datasets.Set, n int) (*datasets.Set, string) {
	k := max(set.Classes, 1)
	quota := make([]int, k)
	for c := range quota {
		quota[c] = n / k
		if c < n%k {
			quota[c]++
		}
	}
	var idx []int
	taken := make([]bool, set.Len())
	for i := 0; i < set.Len() && len(idx) < n; i++ {
		c := int(set.Labels[i])
		if c < k && quota[c] > 0 {
			quota[c]--
			idx = append(idx, i)
			taken[i] = true
		}
	}
	for i := 0; i < set.Len() && len(idx) < n; i++ {
		if !taken[i] {
			idx = append(idx, i)
		}
	}
	sort.Ints(idx)
	sub := set.Subset(idx)
	h := sha256.New()
	h.Write(sub.Pixels)
	h.Write(sub.Labels)
	return sub, hex.EncodeToString(h.Sum(nil))
}

// rankingFile is ranking.json.
type rankingFile struct {
	Kind          string `json:"kind"`
	SchemaVersion int    `json:"schema_version"`
	Target        Target `json:"target"`
	Units         []Unit `json:"units"`
}

// compareRanking computes Kendall's tau between ranked and the ranking in path.
func compareRanking(path string, ranked []Unit) (*Stability, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("importance: compare ranking: %w", err)
	}
	var rf rankingFile
	if err := json.Unmarshal(b, &rf); err != nil {
		return nil, fmt.Errorf("importance: compare ranking %s: %w", path, err)
	}
	if rf.Kind != RankingKind {
		return nil, fmt.Errorf("importance: compare ranking %s: kind %q, want %q", path, rf.Kind, RankingKind)
	}
	type id struct {
		layer string
		index int64
	}
	other := map[id]float64{}
	for _, u := range rf.Units {
		if u.Score != nil {
			other[id{u.Layer, u.Index}] = *u.Score
		}
	}
	var a, c []float64
	for _, u := range ranked {
		if v, ok := other[id{u.Layer, u.Index}]; ok && u.Score != nil {
			a = append(a, *u.Score)
			c = append(c, v)
		}
	}
	if len(a) < 2 {
		return nil, fmt.Errorf("importance: compare ranking %s: fewer than two units scored in both", path)
	}
	return &Stability{Other: path, Units: len(a), KendallTau: KendallTau(a, c)}, nil
}

// drawRecord is one line of draws.jsonl.
type drawRecord struct {
	Sampler  string       `json:"sampler"`
	Q        float64      `json:"q"`
	P        float64      `json:"p"`
	Weight   float64      `json:"weight"`
	Stratum  int          `json:"stratum"` // -1: not stratified
	VF       float64      `json:"vf"`
	Critical bool         `json:"critical"`
	Fault    *fault.Fault `json:"fault"`
}

// criticalFaults lists the distinct critical faults of the draws, importance-
// sampled first, numbered from 0 (critical.jsonl).
func criticalFaults(is, uni []draw) []fault.Fault {
	var out []fault.Fault
	seen := map[int64]bool{}
	for _, ds := range [][]draw{is, uni} {
		for _, d := range ds {
			if !d.critical || seen[d.key] {
				continue
			}
			seen[d.key] = true
			f := d.f
			f.ID = int64(len(out))
			out = append(out, f)
		}
	}
	return out
}

// write writes every output file of r atomically.
func write(dir string, r *Result, is, uni []draw) error {
	s, ranked := r.Summary, r.Ranking
	jsonl := func(name string, each func(enc *json.Encoder) error) error {
		return atomicfile.Write(filepath.Join(dir, name), 0o644, func(w io.Writer) error {
			return each(json.NewEncoder(w))
		})
	}
	if err := jsonl(DrawsFile, func(enc *json.Encoder) error {
		for _, set := range []struct {
			name string
			ds   []draw
		}{{"is", is}, {"uniform", uni}} {
			for i := range set.ds {
				d := &set.ds[i]
				if err := enc.Encode(drawRecord{Sampler: set.name, Q: d.q, P: d.p, Weight: d.w, Stratum: d.stratum, VF: d.y, Critical: d.critical, Fault: &d.f}); err != nil {
					return err
				}
			}
		}
		return nil
	}); err != nil {
		return err
	}
	if err := jsonl(CriticalFile, func(enc *json.Encoder) error {
		for i := range r.Critical {
			if err := enc.Encode(&r.Critical[i]); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	rj := rankingFile{RankingKind, SummarySchema, s.Target, ranked}
	b, err := json.MarshalIndent(rj, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, RankingJSON), append(b, '\n'), 0o644); err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, RankingCSV), 0o644, func(w io.Writer) error {
		if _, err := fmt.Fprintln(w, "rank,layer,index,score,ci95_low,ci95_high,faults,critical,score_lower"); err != nil {
			return err
		}
		for _, u := range ranked {
			score, lo, hi, lower := "", "", "", ""
			if u.Score != nil {
				score = strconv.FormatFloat(*u.Score, 'g', 8, 64)
			}
			if u.ScoreLower != nil {
				lower = strconv.FormatFloat(*u.ScoreLower, 'g', 8, 64)
			}
			if u.CI95 != nil {
				lo = strconv.FormatFloat(u.CI95[0], 'g', 8, 64)
				hi = strconv.FormatFloat(u.CI95[1], 'g', 8, 64)
			}
			if _, err := fmt.Fprintf(w, "%d,%s,%d,%s,%s,%s,%d,%d,%s\n", u.Rank, u.Layer, u.Index, score, lo, hi, u.Faults, u.Critical, lower); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	b, err = json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, SummaryFile), append(b, '\n'), 0o644)
}
