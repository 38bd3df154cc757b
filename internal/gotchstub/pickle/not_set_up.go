// Package pickle is a placeholder: faultline has not been set up on this machine.
package pickle

var _ int = "faultline: gotch is not set up on this machine: run 'make setup' in the faultline checkout (see README.md)"
