// Package fault is faultline's fault-injection engine: fault sites and fault models
// with exact IEEE-754 float32 bit arithmetic, injectors that run one fault per
// forward pass (the reference) or a different fault in every sample of a batch, and
// statistical campaigns whose results stream to replayable, resumable JSONL files.
//
// A Fault names where it lands (a parameter element, an activation element at a
// layer's input or output, or one operand of one neuron's multiply-accumulate),
// what it does (bit flips, stuck-at bits, a random value, zero) and whether it lasts
// one inference or stays until removed.
//
// Loaded is a model in memory with its metadata, test split and normalisation:
// what the measuring steps take (RunBERCurveOn here, eval.RunVFOn,
// importance.RunOn), so that they chain in memory. LoadCheckpoint reads one
// from a checkpoint directory, ForModel pairs a model built or changed in
// memory with its data. A resumable step's journal records the model's
// Identity: the checkpoint's content SHA-256 (model.ContentSHA256) as loaded,
// else ModelSHA256 of the weights, clamps and metadata in memory.
package fault
