// Package configs holds faultline's typed configuration: the Config structs, the
// embedded presets, and their loading and validation.
//
// A configuration is built in layers, each overriding the one before:
//
//	preset (embedded YAML, default "lenet5-fashion")
//	  < YAML file (Source.File)
//	  < environment variables FAULTLINE_* (Source.Env)
//	  < command-line flags that were explicitly set (Source.Flags, Source.FlagKeys)
//
// Keys are dotted and snake_case ("train.epochs", "model.batch_norm"); the
// environment variable for a key is FAULTLINE_ followed by the key upper-cased with
// dots replaced by underscores (FAULTLINE_TRAIN_EPOCHS). Loading is strict: an
// unknown key in a file, an unknown FAULTLINE_* variable or a value of the wrong type
// is an error that names the key (with a did-you-mean suggestion where one is close),
// and the result is checked with [Config.Validate], which reports every problem at
// once.
//
// Each section is a struct field of [Config] with its own Validate method; adding a
// section means adding the struct and the field. The list of valid keys
// ([Keys]), the environment names and the validation of all sections follow from the
// struct by reflection.
package configs
