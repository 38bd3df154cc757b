package onnx

import (
	"bufio"
	"fmt"
	"io"
	"os"

	"github.com/faultline/faultline/internal/atomicfile"
	"github.com/faultline/faultline/model/graph"
)

// ReadFile reads the ONNX model at path.
func ReadFile(path string) (*graph.Graph, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("onnx: %w", err)
	}
	defer f.Close()
	return Decode(bufio.NewReaderSize(f, 1<<20), path)
}

// WriteFile writes g to path as an ONNX model, atomically: readers see the old
// file or the complete new one, never part of it.
func WriteFile(path string, g *graph.Graph) error {
	b, err := encodeModel(g)
	if err != nil {
		return fmt.Errorf("onnx: write %s: %w", path, err)
	}
	if err := atomicfile.Write(path, 0o644, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	}); err != nil {
		return fmt.Errorf("onnx: %w", err)
	}
	return nil
}
