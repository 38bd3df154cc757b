//go:build !linux

package model

import (
	"errors"
	"os"
)

// memFile reports that no in-memory file exists here.
func memFile() (*os.File, string, error) {
	return nil, "", errors.New("no memfd")
}
