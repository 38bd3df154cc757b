package configs

import "slices"

// Config is the complete configuration of a faultline run. Each field is a section;
// its key prefix is the field's tag ("model", "data", ...).
type Config struct {
	Model   ModelConfig   `mapstructure:"model" yaml:"model" json:"model"`
	Data    DataConfig    `mapstructure:"data" yaml:"data" json:"data"`
	Train   TrainConfig   `mapstructure:"train" yaml:"train" json:"train"`
	Runtime RuntimeConfig `mapstructure:"runtime" yaml:"runtime" json:"runtime"`
	Harden  HardenConfig  `mapstructure:"harden" yaml:"harden" json:"harden"`
}

// ModelConfig selects the network and its shape (keys model.*).
type ModelConfig struct {
	// Arch is the architecture: one of ArchMLP, ArchLeNet5, ArchVGG11, ArchResNet20.
	Arch string `mapstructure:"arch" yaml:"arch" json:"arch"`
	// Width multiplies the channel (or unit) counts of the architecture; 1 is the
	// published size.
	Width float64 `mapstructure:"width" yaml:"width" json:"width"`
	// Hidden lists the hidden layer sizes of an MLP, input side first. Other
	// architectures ignore it.
	Hidden []int `mapstructure:"hidden" yaml:"hidden" json:"hidden,omitempty"`
	// BatchNorm adds batch normalisation after each convolution of VGG-11. Only
	// vgg11 reads it (ResNet-20 always has batch norm, the others never).
	BatchNorm bool `mapstructure:"batch_norm" yaml:"batch_norm" json:"batch_norm"`
}

// DataConfig selects the dataset and how much of it is used (keys data.*).
type DataConfig struct {
	// Dataset is one of DatasetFashionMNIST, DatasetMNIST, DatasetCIFAR10,
	// DatasetSynthetic.
	Dataset string `mapstructure:"dataset" yaml:"dataset" json:"dataset"`
	// Dir is the directory holding the dataset files; "" means the dataset's
	// default directory.
	Dir string `mapstructure:"dir" yaml:"dir" json:"dir"`
	// TrainLimit caps the number of training examples; 0 uses all.
	TrainLimit int `mapstructure:"train_limit" yaml:"train_limit" json:"train_limit"`
	// TestLimit caps the number of test examples; 0 uses all.
	TestLimit int `mapstructure:"test_limit" yaml:"test_limit" json:"test_limit"`
	// Augment is the training augmentation: AugmentNone or AugmentFlipCrop.
	Augment string `mapstructure:"augment" yaml:"augment" json:"augment"`
}

// TrainConfig is the training recipe: optimiser, learning-rate schedule and loop
// length (keys train.*).
type TrainConfig struct {
	// Epochs is the number of passes over the training set.
	Epochs int `mapstructure:"epochs" yaml:"epochs" json:"epochs"`
	// BatchSize is the training mini-batch size.
	BatchSize int `mapstructure:"batch_size" yaml:"batch_size" json:"batch_size"`
	// EvalBatchSize is the batch size used for evaluation (no gradients).
	EvalBatchSize int `mapstructure:"eval_batch_size" yaml:"eval_batch_size" json:"eval_batch_size"`
	// Optimizer is OptimizerSGD or OptimizerAdam.
	Optimizer string `mapstructure:"optimizer" yaml:"optimizer" json:"optimizer"`
	// LR is the base (peak) learning rate.
	LR float64 `mapstructure:"lr" yaml:"lr" json:"lr"`
	// Momentum is the SGD momentum; Adam ignores it.
	Momentum float64 `mapstructure:"momentum" yaml:"momentum" json:"momentum"`
	// Nesterov switches SGD to Nesterov momentum (needs Momentum > 0).
	Nesterov bool `mapstructure:"nesterov" yaml:"nesterov" json:"nesterov"`
	// WeightDecay is the L2 penalty coefficient.
	WeightDecay float64 `mapstructure:"weight_decay" yaml:"weight_decay" json:"weight_decay"`
	// Schedule is the learning-rate schedule: ScheduleNone, ScheduleStep,
	// ScheduleCosine or ScheduleOneCycle.
	Schedule string `mapstructure:"schedule" yaml:"schedule" json:"schedule"`
	// StepSize is the period, in epochs, of the step schedule.
	StepSize int `mapstructure:"step_size" yaml:"step_size" json:"step_size"`
	// Gamma is the factor the step schedule multiplies the learning rate by.
	Gamma float64 `mapstructure:"gamma" yaml:"gamma" json:"gamma"`
	// WarmupEpochs is the number of epochs of linear warm-up before the schedule.
	WarmupEpochs int `mapstructure:"warmup_epochs" yaml:"warmup_epochs" json:"warmup_epochs"`
	// LabelSmoothing is the label-smoothing factor of the cross-entropy loss.
	LabelSmoothing float64 `mapstructure:"label_smoothing" yaml:"label_smoothing" json:"label_smoothing"`
	// KeepBest keeps the weights of the epoch with the best test accuracy instead
	// of the last epoch's.
	KeepBest bool `mapstructure:"keep_best" yaml:"keep_best" json:"keep_best"`
}

// RuntimeConfig holds where and how reproducibly the run executes (keys runtime.*).
type RuntimeConfig struct {
	// Seed seeds every random choice (initialisation, shuffling, augmentation).
	Seed int64 `mapstructure:"seed" yaml:"seed" json:"seed"`
	// Threads is the number of compute threads; 0 means the number of cores.
	Threads int `mapstructure:"threads" yaml:"threads" json:"threads"`
	// Device is DeviceCPU or DeviceCUDA.
	Device string `mapstructure:"device" yaml:"device" json:"device"`
}

// HardenConfig is the hardening recipe of faultline harden and its
// before/after measurements (keys harden.*).
type HardenConfig struct {
	// Clamps turns on range restriction: layer outputs clamped to their range on
	// ProfileImages training images (0 = all), widened by Margin times the
	// range's width.
	Clamps        bool    `mapstructure:"clamps" yaml:"clamps" json:"clamps"`
	ProfileImages int     `mapstructure:"profile_images" yaml:"profile_images" json:"profile_images"`
	Margin        float64 `mapstructure:"margin" yaml:"margin" json:"margin"`
	// WeightClamps clamps every conv and linear layer's weights, as forward
	// passes read them, to the range of the final (hardened) weights.
	WeightClamps bool `mapstructure:"weight_clamps" yaml:"weight_clamps" json:"weight_clamps"`
	// FAT turns on fault-aware fine-tuning: Epochs epochs at LRScale times the
	// checkpoint's learning rate; a step carries FaultsPerStep transient weight
	// flips with probability FaultProb, a PoolShare of them from the critical
	// faults importance sampling finds (PoolBudget injections on PoolImages
	// test images).
	FAT           bool    `mapstructure:"fat" yaml:"fat" json:"fat"`
	Epochs        int     `mapstructure:"epochs" yaml:"epochs" json:"epochs"`
	LRScale       float64 `mapstructure:"lr_scale" yaml:"lr_scale" json:"lr_scale"`
	FaultProb     float64 `mapstructure:"fault_prob" yaml:"fault_prob" json:"fault_prob"`
	FaultsPerStep int     `mapstructure:"faults_per_step" yaml:"faults_per_step" json:"faults_per_step"`
	PoolShare     float64 `mapstructure:"pool_share" yaml:"pool_share" json:"pool_share"`
	PoolBudget    int     `mapstructure:"pool_budget" yaml:"pool_budget" json:"pool_budget"`
	PoolImages    int     `mapstructure:"pool_images" yaml:"pool_images" json:"pool_images"`
	// Lambda weighs a faulty step's loss (loss = clean + Lambda x faulty, on the
	// same batch); MaxGradNorm (0 = off) clips the faulty pass's gradients to
	// that global L2 norm. Refresh re-profiles the clamp bounds and searches
	// the critical pool again (fresh sensitivities) before every epoch after
	// the first. Permanent names a fault-list JSONL file (faultline inject's
	// format) of weight faults kept on in every step: permanent-fault mode.
	Lambda      float64 `mapstructure:"lambda" yaml:"lambda" json:"lambda"`
	MaxGradNorm float64 `mapstructure:"max_grad_norm" yaml:"max_grad_norm" json:"max_grad_norm"`
	Refresh     bool    `mapstructure:"refresh" yaml:"refresh" json:"refresh"`
	Permanent   string  `mapstructure:"permanent" yaml:"permanent" json:"permanent"`
	// VFRatio, VFPrecision and VFImages set the DeepVigor+ measurement
	// (VFPrecision as eval vf's --lvf-precision: 0 keeps the first draw);
	// BER, BERTrials and BERImages the accuracy under bit error rates.
	VFRatio     float64   `mapstructure:"vf_ratio" yaml:"vf_ratio" json:"vf_ratio"`
	VFPrecision float64   `mapstructure:"vf_precision" yaml:"vf_precision" json:"vf_precision"`
	VFImages    int       `mapstructure:"vf_images" yaml:"vf_images" json:"vf_images"`
	BER         []float64 `mapstructure:"ber" yaml:"ber" json:"ber"`
	BERTrials   int       `mapstructure:"ber_trials" yaml:"ber_trials" json:"ber_trials"`
	BERImages   int       `mapstructure:"ber_images" yaml:"ber_images" json:"ber_images"`
	// Ablation also runs clamps only and fault-aware training only.
	Ablation bool `mapstructure:"ablation" yaml:"ablation" json:"ablation"`
}

// Allowed values of model.arch.
const (
	ArchMLP      = "mlp"      // multi-layer perceptron (model.hidden sizes)
	ArchLeNet5   = "lenet5"   // LeNet-5
	ArchVGG11    = "vgg11"    // VGG-11, optionally with batch norm
	ArchResNet20 = "resnet20" // ResNet-20 (CIFAR-style)
)

// Allowed values of data.dataset.
const (
	DatasetFashionMNIST = "fashion-mnist" // Fashion-MNIST (IDX files)
	DatasetMNIST        = "mnist"         // MNIST (IDX files)
	DatasetCIFAR10      = "cifar10"       // CIFAR-10 (binary version)
	DatasetSynthetic    = "synthetic"     // generated data, for tests and smoke runs
)

// Allowed values of data.augment.
const (
	AugmentNone     = "none"      // no augmentation
	AugmentFlipCrop = "flip-crop" // random horizontal flip and padded random crop
)

// Allowed values of train.optimizer.
const (
	OptimizerSGD  = "sgd"  // stochastic gradient descent with optional momentum
	OptimizerAdam = "adam" // Adam
)

// Allowed values of train.schedule.
const (
	ScheduleNone     = "none"     // constant learning rate
	ScheduleStep     = "step"     // multiply by gamma every step_size epochs
	ScheduleCosine   = "cosine"   // cosine annealing to zero
	ScheduleOneCycle = "onecycle" // one-cycle policy peaking at lr
)

// Allowed values of runtime.device.
const (
	DeviceCPU  = "cpu"  // CPU
	DeviceCUDA = "cuda" // the first CUDA device
)

// choices lists the allowed values of every enumerated key.
var choices = map[string][]string{
	"model.arch":      {ArchMLP, ArchLeNet5, ArchVGG11, ArchResNet20},
	"data.dataset":    {DatasetFashionMNIST, DatasetMNIST, DatasetCIFAR10, DatasetSynthetic},
	"data.augment":    {AugmentNone, AugmentFlipCrop},
	"train.optimizer": {OptimizerSGD, OptimizerAdam},
	"train.schedule":  {ScheduleNone, ScheduleStep, ScheduleCosine, ScheduleOneCycle},
	"runtime.device":  {DeviceCPU, DeviceCUDA},
}

// Choices returns the allowed values of an enumerated key such as "model.arch"
// (for help text and shell completion), or nil if the key is not enumerated.
func Choices(key string) []string {
	return slices.Clone(choices[key])
}

// normalize puts equal configurations into one Go representation (an empty
// Hidden list is nil), so that loaded configurations compare equal with
// reflect.DeepEqual.
func (c *Config) normalize() {
	if len(c.Model.Hidden) == 0 {
		c.Model.Hidden = nil
	}
}
