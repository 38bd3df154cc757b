package datasets

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// CIFAR-10 binary layout: each record is one label byte followed by a 32x32 image as
// three 1024-byte planes (red, green, blue).
const (
	cifarC, cifarH, cifarW = 3, 32, 32
	cifarImage             = cifarC * cifarH * cifarW
	cifarRecord            = 1 + cifarImage
	cifarClasses           = 10
)

// cifarChunkRecords is how many records ParseCIFAR reads at a time (about 48 KB).
const cifarChunkRecords = 16

var cifar10ClassNames = []string{
	"airplane", "automobile", "bird", "cat", "deer",
	"dog", "frog", "horse", "ship", "truck",
}

// cifarFiles are the batch files of each split, in order.
var cifarFiles = map[Split][]string{
	Train: {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"},
	Test:  {"test_batch.bin"},
}

// ReadCIFAR reads CIFAR-10 binary batch files and concatenates them, in order, into
// one Set of 3x32x32 images with the ten CIFAR-10 class names. The caller sets Name
// and Split.
func ReadCIFAR(paths ...string) (*Set, error) {
	if len(paths) == 0 {
		return nil, errors.New("datasets: ReadCIFAR: no files given")
	}
	var total int64
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, openError(p, err)
		}
		total += fi.Size()
	}
	out := newCIFARSet()
	if total > 0 && total <= MaxBytes {
		out.Pixels = make([]uint8, 0, total/cifarRecord*cifarImage)
		out.Labels = make([]uint8, 0, total/cifarRecord)
	}
	for _, p := range paths {
		err := withFile(p, func(r io.Reader) error { return parseCIFARInto(out, r, p) })
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ParseCIFAR reads CIFAR-10 binary records from r until EOF. name identifies the input
// in errors. The input must be a whole, non-zero number of 3073-byte records with
// labels 0..9.
func ParseCIFAR(r io.Reader, name string) (*Set, error) {
	out := newCIFARSet()
	if err := parseCIFARInto(out, r, name); err != nil {
		return nil, err
	}
	return out, nil
}

func newCIFARSet() *Set {
	return &Set{C: cifarC, H: cifarH, W: cifarW, Classes: cifarClasses,
		ClassNames: append([]string(nil), cifar10ClassNames...)}
}

// parseCIFARInto appends the records of r to out. Memory grows with the data read,
// never ahead of it by more than one chunk.
func parseCIFARInto(out *Set, r io.Reader, name string) error {
	buf := make([]byte, cifarChunkRecords*cifarRecord)
	records := 0 // in this input
	for {
		n, err := io.ReadFull(r, buf)
		if whole := n / cifarRecord; whole > 0 {
			if uint64(out.N+whole)*cifarImage > MaxBytes {
				return fmt.Errorf("datasets: %s: CIFAR-10 data larger than %d bytes", name, MaxBytes)
			}
			for i := range whole {
				rec := buf[i*cifarRecord : (i+1)*cifarRecord]
				if rec[0] >= cifarClasses {
					return fmt.Errorf("datasets: %s: label %d in record %d out of range (want 0..%d)",
						name, rec[0], records+i, cifarClasses-1)
				}
				out.Labels = append(out.Labels, rec[0])
				out.Pixels = append(out.Pixels, rec[1:]...)
			}
			out.N += whole
			records += whole
		}
		switch {
		case err == nil:
			continue
		case err != io.EOF && err != io.ErrUnexpectedEOF:
			return fmt.Errorf("datasets: %s: read CIFAR-10 records: %w", name, err)
		case n%cifarRecord != 0:
			over := n % cifarRecord
			return fmt.Errorf("datasets: %s: size %d bytes is not a multiple of the %d-byte CIFAR-10 record (%d whole records and %d bytes over)",
				name, records*cifarRecord+over, cifarRecord, records, over)
		case records == 0:
			return fmt.Errorf("datasets: %s: empty CIFAR-10 file (no %d-byte records)", name, cifarRecord)
		}
		return nil
	}
}

// cifarDir returns dir, or its cifar-10-batches-bin subfolder when the batch files
// live there.
func cifarDir(dir string) string {
	sub := filepath.Join(dir, "cifar-10-batches-bin")
	if _, err := os.Stat(filepath.Join(dir, cifarFiles[Test][0])); err == nil {
		return dir
	}
	if fi, err := os.Stat(sub); err == nil && fi.IsDir() {
		return sub
	}
	return dir
}
