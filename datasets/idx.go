package datasets

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// IDX magic numbers: two zero bytes, the element type (0x08 = unsigned byte) and the
// number of dimensions.
const (
	idxImagesMagic = 0x00000803
	idxLabelsMagic = 0x00000801
)

// MaxBytes is the largest pixel payload a reader accepts (2 GiB). Headers that claim
// more are refused before anything is allocated.
const MaxBytes = 1 << 31

// idxClasses is the number of classes of the IDX data sets faultline knows (MNIST,
// Fashion-MNIST).
const idxClasses = 10

// readChunk is the first buffer a reader allocates; it then doubles as data arrives,
// so it never holds more than the larger of readChunk and twice the data read.
const readChunk = 64 << 10

// IDXImages is the content of an IDX images file: N images of H x W bytes, one channel.
type IDXImages struct {
	N, H, W int
	Pixels  []uint8 // N*H*W bytes, row-major per image
}

// ReadIDX reads an IDX images file and the matching IDX labels file (each gzip or raw)
// into a one-channel Set with 10 classes, as for MNIST and Fashion-MNIST. The caller
// sets Name, Split and ClassNames.
func ReadIDX(imagesPath, labelsPath string) (*Set, error) {
	var img *IDXImages
	err := withFile(imagesPath, func(r io.Reader) (err error) {
		img, err = ParseIDXImages(r, imagesPath)
		return err
	})
	if err != nil {
		return nil, err
	}
	var labels []uint8
	err = withFile(labelsPath, func(r io.Reader) (err error) {
		labels, err = ParseIDXLabels(r, labelsPath, idxClasses)
		return err
	})
	if err != nil {
		return nil, err
	}
	if len(labels) != img.N {
		return nil, fmt.Errorf("datasets: count mismatch: %s has %d images but %s has %d labels",
			imagesPath, img.N, labelsPath, len(labels))
	}
	return &Set{N: img.N, C: 1, H: img.H, W: img.W, Classes: idxClasses,
		Pixels: img.Pixels, Labels: labels}, nil
}

// ParseIDXImages reads an IDX images file (magic 0x00000803, dimensions N, H, W) from
// r, which may be gzip-compressed (detected by its magic bytes). name identifies the
// input in errors. The whole stream must be consumed exactly: truncated data, trailing
// bytes and gzip checksum failures are errors.
func ParseIDXImages(r io.Reader, name string) (*IDXImages, error) {
	s, err := newStream(r, name)
	if err != nil {
		return nil, err
	}
	hdr, err := s.header(16, idxImagesMagic, "images")
	if err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[4:])
	h := binary.BigEndian.Uint32(hdr[8:])
	w := binary.BigEndian.Uint32(hdr[12:])
	if n == 0 || h == 0 || w == 0 {
		return nil, fmt.Errorf("datasets: %s: empty IDX images: dimensions %dx%dx%d", name, n, h, w)
	}
	// Each factor is below 1<<32, so checking before each multiplication keeps the
	// uint64 product from overflowing.
	if uint64(h)*uint64(w) > MaxBytes || uint64(n)*uint64(h)*uint64(w) > MaxBytes {
		return nil, fmt.Errorf("datasets: %s: implausible IDX dimensions %dx%dx%d (more than %d bytes)",
			name, n, h, w, MaxBytes)
	}
	size := int(n) * int(h) * int(w)
	pix, err := s.read(fmt.Sprintf("pixel data (%d images of %dx%d)", n, h, w), size)
	if err != nil {
		return nil, err
	}
	if err := s.end(); err != nil {
		return nil, err
	}
	return &IDXImages{N: int(n), H: int(h), W: int(w), Pixels: pix}, nil
}

// ParseIDXLabels reads an IDX labels file (magic 0x00000801, dimension N) from r,
// gzip or raw, and checks every label is below classes (1..256). name identifies the
// input in errors.
func ParseIDXLabels(r io.Reader, name string, classes int) ([]uint8, error) {
	if classes < 1 || classes > 256 {
		return nil, fmt.Errorf("datasets: %s: %d classes (want 1..256)", name, classes)
	}
	s, err := newStream(r, name)
	if err != nil {
		return nil, err
	}
	hdr, err := s.header(8, idxLabelsMagic, "labels")
	if err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[4:])
	if n == 0 {
		return nil, fmt.Errorf("datasets: %s: empty IDX labels: 0 labels", name)
	}
	if uint64(n) > MaxBytes {
		return nil, fmt.Errorf("datasets: %s: implausible IDX label count %d (more than %d)", name, n, MaxBytes)
	}
	labels, err := s.read(fmt.Sprintf("label data (%d labels)", n), int(n))
	if err != nil {
		return nil, err
	}
	if err := s.end(); err != nil {
		return nil, err
	}
	if err := checkLabels(name, labels, classes); err != nil {
		return nil, err
	}
	return labels, nil
}

// header reads a size-byte IDX header and checks its magic number. The magic is
// checked first, so a short file of the wrong kind is reported as such.
func (s *stream) header(size int, magic uint32, what string) ([]byte, error) {
	hdr := make([]byte, size)
	n, err := io.ReadFull(s.r, hdr)
	if n >= 4 {
		if m := binary.BigEndian.Uint32(hdr); m != magic {
			return nil, badMagic(s.name, m, magic, what)
		}
	}
	if err != nil {
		return nil, s.fail("IDX "+what+" header", size, n, err)
	}
	return hdr, nil
}

func badMagic(name string, got, want uint32, what string) error {
	hint := ""
	switch got {
	case idxImagesMagic:
		hint = "; this is an IDX images file"
	case idxLabelsMagic:
		hint = "; this is an IDX labels file"
	}
	return fmt.Errorf("datasets: %s: bad magic 0x%08x (want 0x%08x for IDX %s%s)", name, got, want, what, hint)
}

// withFile opens path and passes it to parse.
func withFile(path string, parse func(io.Reader) error) error {
	f, err := os.Open(path)
	if err != nil {
		return openError(path, err)
	}
	defer f.Close()
	return parse(f)
}

// openError phrases a failure to open or stat path.
func openError(path string, err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("datasets: %s: missing file: %w", path, err)
	}
	return fmt.Errorf("datasets: %w", err)
}

// stream reads a possibly gzip-compressed input and phrases its errors.
type stream struct {
	name string
	r    io.Reader
	gz   bool
}

var gzipMagic = []byte{0x1f, 0x8b}

// newStream wraps r, decompressing it when it starts with the gzip magic bytes.
func newStream(r io.Reader, name string) (*stream, error) {
	br := bufio.NewReader(r)
	magic, err := br.Peek(2)
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("datasets: %s: %w", name, err)
	}
	if len(magic) < 2 || magic[0] != gzipMagic[0] || magic[1] != gzipMagic[1] {
		return &stream{name: name, r: br}, nil
	}
	zr, err := gzip.NewReader(br)
	if err != nil {
		return nil, fmt.Errorf("datasets: %s: corrupt gzip: %w", name, err)
	}
	return &stream{name: name, r: zr, gz: true}, nil
}

// read returns the next n bytes. Its buffer starts at readChunk bytes and doubles
// only as data arrives, so a lying header cannot make it allocate much.
func (s *stream) read(what string, n int) ([]byte, error) {
	buf := make([]byte, 0, min(n, readChunk))
	for len(buf) < n {
		if len(buf) == cap(buf) {
			grown := make([]byte, len(buf), len(buf)+min(n-len(buf), max(len(buf), readChunk)))
			copy(grown, buf)
			buf = grown
		}
		got, err := io.ReadFull(s.r, buf[len(buf):min(cap(buf), n)])
		buf = buf[:len(buf)+got]
		if err != nil {
			return nil, s.fail(what, n, len(buf), err)
		}
	}
	return buf, nil
}

// end checks that the input holds nothing more (and, for gzip, that the checksum
// at the end of the stream matches).
func (s *stream) end() error {
	var b [1]byte
	n, err := io.ReadFull(s.r, b[:])
	switch {
	case n > 0:
		return fmt.Errorf("datasets: %s: trailing data after the IDX payload", s.name)
	case err == io.EOF:
		return nil
	}
	return s.fail("data after the IDX payload", 0, 0, err)
}

// fail phrases a read error: a short input is reported as truncated with the byte
// counts, anything else from a gzip stream as corrupt gzip.
func (s *stream) fail(what string, want, got int, err error) error {
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		z := ""
		if s.gz {
			z = " (after gzip decompression)"
		}
		return fmt.Errorf("datasets: %s: truncated %s: want %d bytes, got %d%s", s.name, what, want, got, z)
	case s.gz:
		return fmt.Errorf("datasets: %s: corrupt gzip in %s: %w", s.name, what, err)
	}
	return fmt.Errorf("datasets: %s: read %s: %w", s.name, what, err)
}
