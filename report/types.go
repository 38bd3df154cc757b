package report

// The result kinds the report reads, and the schema version of each that it
// supports.
const (
	KindVF          = "faultline.vf"
	KindBER         = "faultline.ber_curve"
	KindCampaign    = "faultline.fault_campaign"
	KindImportance  = "faultline.importance"
	KindRanking     = "faultline.ranking"
	KindHarden      = "faultline.harden_report"
	KindCheckpoint  = "faultline.checkpoint"
	supportedSchema = 1
)

// knownKinds maps every kind the report reads to the schema versions it supports.
var knownKinds = map[string][]int{
	KindVF: {supportedSchema}, KindBER: {supportedSchema}, KindCampaign: {supportedSchema},
	KindImportance: {supportedSchema}, KindRanking: {supportedSchema}, KindHarden: {supportedSchema},
	KindCheckpoint: {supportedSchema},
}

// header is the part every result file shares.
type header struct {
	Kind          string `json:"kind"`
	SchemaVersion *int   `json:"schema_version"`
}

// Software is the versions that produced a result.
type Software struct {
	Faultline string `json:"faultline"`
	Gotch     string `json:"gotch"`
	Libtorch  string `json:"libtorch"`
	BLAS      string `json:"blas"`
	Threads   int    `json:"threads"`
	Go        string `json:"go"`
}

// VF is the part of a faultline.vf result (vf.json) the report reads.
type VF struct {
	Checkpoint     string    `json:"checkpoint"`
	Arch           string    `json:"arch"`
	Dataset        string    `json:"dataset"`
	Images         int       `json:"images"`
	GoldenAccuracy float64   `json:"golden_accuracy"`
	Target         string    `json:"target"`
	Semantics      string    `json:"semantics"`
	TailCheck      bool      `json:"tail_check"`
	SamplingRatio  float64   `json:"sampling_ratio"`
	Seed           int64     `json:"seed"`
	PerOctave      int       `json:"thresholds_per_octave"`
	WeightErrors   string    `json:"weight_errors"`
	MVF            MVF       `json:"mvf"`
	Layers         []VFLayer `json:"layers"`
	Software       Software  `json:"software"`
}

// MVF is a model's vulnerability factors, with their 95% intervals (absent
// from files written before they were recorded).
type MVF struct {
	Activations   *float64    `json:"activations"`
	Weights       *float64    `json:"weights"`
	Total         *float64    `json:"total"`
	ActivationsCI *[2]float64 `json:"activations_ci95"`
	WeightsCI     *[2]float64 `json:"weights_ci95"`
	TotalCI       *[2]float64 `json:"total_ci95"`
}

// VFLayer is one layer's DeepVigor+ result.
type VFLayer struct {
	Name             string      `json:"name"`
	Kind             string      `json:"kind"`
	Channels         int         `json:"out_channels"`
	LVFActivations   *float64    `json:"lvf_activations"`
	LVFActivationsCI *[2]float64 `json:"lvf_activations_ci95"`
	LVFWeights       *float64    `json:"lvf_weights"`
	LVFWeightsCI     *[2]float64 `json:"lvf_weights_ci95"`
	Channel          []VFChannel `json:"channels"`
}

// VFChannel is one analysed output channel.
type VFChannel struct {
	Index          int      `json:"index"`
	CVFActivations *float64 `json:"cvf_activations"`
	CVFWeights     *float64 `json:"cvf_weights"`
}

// BERCurve is the part of a faultline.ber_curve result (ber.json) the report reads.
type BERCurve struct {
	Checkpoint     string     `json:"checkpoint"`
	Arch           string     `json:"arch"`
	Dataset        string     `json:"dataset"`
	Mode           string     `json:"mode"`
	Layers         []string   `json:"layers"`
	Bits           int64      `json:"bits"`
	Seed           int64      `json:"seed"`
	TrialsPerPoint int        `json:"trials_per_point"`
	Confidence     float64    `json:"confidence"`
	Images         int        `json:"images"`
	GoldenAccuracy float64    `json:"golden_accuracy"`
	Points         []BERPoint `json:"points"`
	Trials         []BERTrial `json:"trials"`
}

// BERPoint is one rate of a BER curve.
type BERPoint struct {
	BER         float64    `json:"ber"`
	Count       int        `json:"count"`
	Trials      int        `json:"trials"`
	MeanFlips   float64    `json:"mean_flips"`
	Accuracy    float64    `json:"accuracy"`
	AccuracyCI  [2]float64 `json:"accuracy_ci"`
	AccuracyMin float64    `json:"accuracy_min"`
	AccuracyMax float64    `json:"accuracy_max"`
}

// BERTrial is one trial of a BER curve.
type BERTrial struct {
	Point    int     `json:"point"`
	Accuracy float64 `json:"accuracy"`
}

// Campaign is the part of a faultline.fault_campaign result (summary.json) the
// report reads.
type Campaign struct {
	Campaign struct {
		Checkpoint     string `json:"checkpoint"`
		Arch           string `json:"arch"`
		Dataset        string `json:"dataset"`
		Mode           string `json:"mode"`
		ImagesPerFault int    `json:"images_per_fault"`
		Plan           *struct {
			Sampler string `json:"sampler"`
			Seed    int64  `json:"seed"`
			Space   struct {
				Target string `json:"target"`
				Kind   string `json:"kind"`
				Point  string `json:"point"`
				Multi  int    `json:"multi"`
			} `json:"space"`
		} `json:"plan"`
	} `json:"campaign"`
	Faults int64 `json:"faults"`
	Images int   `json:"images"`
	Pairs  int64 `json:"pairs"`
	// The rates are over the active fault x image pairs. Inactive, present for
	// campaigns of kinds other than bitflip, counts the pairs on which the fault
	// left the value unchanged; the _all rates count them too.
	SDCRate        float64     `json:"sdc_rate"`
	DUERate        float64     `json:"due_rate"`
	VF             float64     `json:"vf"`
	Inactive       *int64      `json:"inactive"`
	SDCRateAll     float64     `json:"sdc_rate_all"`
	DUERateAll     float64     `json:"due_rate_all"`
	VFAll          float64     `json:"vf_all"`
	GoldenAccuracy float64     `json:"golden_accuracy"`
	PerBit         []Breakdown `json:"per_bit"`
}

// Breakdown is a campaign's result for one bit position (or layer).
type Breakdown struct {
	Key     string     `json:"key"`
	Faults  int64      `json:"faults"`
	Pairs   int64      `json:"pairs"`
	SDC     int64      `json:"sdc"`
	DUE     int64      `json:"due"`
	SDCRate float64    `json:"sdc_rate"`
	DUERate float64    `json:"due_rate"`
	VFCI95  [2]float64 `json:"vf_ci95"`
	// Inactive and ActivePairs are present when the campaign counts inactive
	// faults; the rates are over the active pairs.
	Inactive    *int64 `json:"inactive"`
	ActivePairs int64  `json:"active_pairs"`
}

// Importance is the part of a faultline.importance result (summary.json) the
// report reads.
type Importance struct {
	Checkpoint     string                        `json:"checkpoint"`
	Arch           string                        `json:"arch"`
	Dataset        string                        `json:"dataset"`
	Target         string                        `json:"target"`
	Mode           string                        `json:"mode"`
	Budget         int                           `json:"budget"`
	Tau            float64                       `json:"tau"`
	Alpha          float64                       `json:"alpha"`
	Score          string                        `json:"score"`
	Seed           int64                         `json:"seed"`
	Images         int                           `json:"images"`
	FaultSpace     int64                         `json:"fault_space"`
	PrecisionAtK   map[string]map[string]float64 `json:"precision_at_k"`
	M              int                           `json:"m"`
	InjectionsToM  map[string]*int               `json:"injections_to_m_critical"`
	Software       Software                      `json:"software"`
	GoldenAccuracy float64                       `json:"golden_accuracy"`
}

// Ranking is a faultline.ranking result (ranking.json).
type Ranking struct {
	Target string `json:"target"`
	Units  []Unit `json:"units"`
}

// Unit is one ranked output channel or unit.
type Unit struct {
	Layer string      `json:"layer"`
	Index int64       `json:"index"`
	Score *float64    `json:"score"`
	CI95  *[2]float64 `json:"ci95"`
	// ScoreLower is the lower confidence bound the ranking orders by (absent
	// from rankings written before it, which ordered by score).
	ScoreLower *float64 `json:"score_lower"`
	Faults     int      `json:"faults"`
	Critical   int      `json:"critical"`
	Rank       int      `json:"rank"`
}

// Harden is the part of a faultline.harden_report result (report.json) the
// report reads.
type Harden struct {
	Checkpoint string        `json:"checkpoint"`
	Hardened   string        `json:"hardened"`
	Recipe     HardenRecipe  `json:"recipe"`
	Before     HardenSide    `json:"before"`
	After      HardenSide    `json:"after"`
	Change     HardenChange  `json:"change"`
	Ablation   []AblationRow `json:"ablation"`
	Software   Software      `json:"software"`
}

// HardenRecipe is what hardening did.
type HardenRecipe struct {
	Clamps        map[string]Range `json:"clamps"`
	WeightClamps  map[string]Range `json:"weight_clamps"`
	Margin        float64          `json:"margin"`
	ProfileImages int              `json:"profile_images"`
	FAT           *struct {
		Epochs        int     `json:"epochs"`
		LR            float64 `json:"lr"`
		FaultProb     float64 `json:"fault_prob"`
		FaultsPerStep int     `json:"faults_per_step"`
		PoolShare     float64 `json:"pool_share"`
		PoolSize      int     `json:"pool_size"`
		Steps         int64   `json:"steps"`
	} `json:"fat"`
	Seed int64 `json:"seed"`
}

// Range is a clamp interval.
type Range struct {
	Min float64 `json:"min"`
	Max float64 `json:"max"`
}

// HardenSide is one side (before or after) of a hardening. The intervals are
// 95% ones, absent from reports written before they were recorded.
type HardenSide struct {
	CleanAccuracy   float64             `json:"clean_accuracy"`
	CleanAccuracyCI *[2]float64         `json:"clean_accuracy_ci95"`
	TestImages      int                 `json:"test_images"`
	VF              *VF                 `json:"vf"`
	BER             map[string]BERStats `json:"ber"`
}

// BERStats sums up one bit error rate's trials in a harden report, with 95%
// intervals over the trials.
type BERStats struct {
	BER            float64     `json:"ber"`
	Trials         int         `json:"trials"`
	Mean           float64     `json:"mean"`
	MeanCI         *[2]float64 `json:"mean_ci95"`
	Median         float64     `json:"median"`
	MedianCI       *[2]float64 `json:"median_ci95"`
	P5             float64     `json:"p5"`
	P5CI           *[2]float64 `json:"p5_ci95"`
	Catastrophic   float64     `json:"catastrophic"`
	CatastrophicCI *[2]float64 `json:"catastrophic_ci95"`
}

// HardenChange compares after with before.
type HardenChange struct {
	MVFTotal       *float64 `json:"mvf_total_reduction"`
	MVFActivations *float64 `json:"mvf_activations_reduction"`
	MVFWeights     *float64 `json:"mvf_weights_reduction"`
	CleanAccuracy  float64  `json:"clean_accuracy"`
}

// AblationRow is one hardening variant's after-measurements.
type AblationRow struct {
	Variant string       `json:"variant"`
	After   HardenSide   `json:"after"`
	Change  HardenChange `json:"change"`
}

// Checkpoint is the part of a faultline.checkpoint result (model.json) the
// report reads.
type Checkpoint struct {
	Arch         string   `json:"arch"`
	Dataset      string   `json:"dataset"`
	Epochs       int      `json:"epochs"`
	Steps        int64    `json:"steps"`
	Seed         int64    `json:"seed"`
	TestAccuracy float64  `json:"test_accuracy"`
	Source       string   `json:"source"`
	Software     Software `json:"software"`
}
