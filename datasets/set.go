package datasets

import (
	"fmt"
	"slices"
	"strings"
)

// Split names the part of a data set: the training or the test images.
type Split string

// The splits every data set has.
const (
	Train Split = "train"
	Test  Split = "test"
)

// ParseSplit returns the Split called s ("train" or "test").
func ParseSplit(s string) (Split, error) {
	switch sp := Split(strings.ToLower(strings.TrimSpace(s))); sp {
	case Train, Test:
		return sp, nil
	}
	return "", fmt.Errorf("datasets: unknown split %q (want %q or %q)", s, Train, Test)
}

// Set is an in-memory labelled image data set. Image i occupies
// Pixels[i*C*H*W : (i+1)*C*H*W] in channel-major (CHW) order and has class Labels[i].
type Set struct {
	Name       string   // registry name, e.g. "fashion-mnist"; empty when read directly
	Split      Split    // train or test; empty when unknown
	N, C, H, W int      // images, channels, height, width
	Classes    int      // number of classes; every label is below it
	Pixels     []uint8  // N*C*H*W bytes, CHW per image
	Labels     []uint8  // N class indices
	ClassNames []string // one name per class where known, else nil
}

// Len returns the number of images.
func (s *Set) Len() int { return s.N }

// ImageSize returns the number of bytes per image, C*H*W.
func (s *Set) ImageSize() int { return s.C * s.H * s.W }

// Image returns the pixels of image i as a view into s.Pixels (not a copy).
// Like a slice index, it panics when i is out of range.
func (s *Set) Image(i int) []uint8 {
	sz := s.ImageSize()
	return s.Pixels[i*sz : (i+1)*sz : (i+1)*sz]
}

// Subset returns a new Set holding copies of the images idx (in that order; repeats
// are allowed). Like a slice index, it panics when an index is out of range.
func (s *Set) Subset(idx []int) *Set {
	sz := s.ImageSize()
	out := s.withN(len(idx))
	out.Pixels = make([]uint8, len(idx)*sz)
	out.Labels = make([]uint8, len(idx))
	for j, i := range idx {
		copy(out.Pixels[j*sz:], s.Image(i))
		out.Labels[j] = s.Labels[i]
	}
	return out
}

// Head returns the first n images. The result shares storage with s (capacity is
// clipped, so appending to it never overwrites s).
func (s *Set) Head(n int) (*Set, error) {
	if n <= 0 || n > s.N {
		return nil, fmt.Errorf("datasets: head %d of %s: want 1..%d images", n, s.label(), s.N)
	}
	sz := s.ImageSize()
	out := s.withN(n)
	out.Pixels = s.Pixels[: n*sz : n*sz]
	out.Labels = s.Labels[:n:n]
	return out, nil
}

// Validate checks that the shape, buffer lengths and labels agree.
func (s *Set) Validate() error {
	switch {
	case s.N < 0 || s.C <= 0 || s.H <= 0 || s.W <= 0:
		return fmt.Errorf("datasets: %s: bad shape N=%d C=%d H=%d W=%d", s.label(), s.N, s.C, s.H, s.W)
	case s.Classes <= 0 || s.Classes > 256:
		return fmt.Errorf("datasets: %s: %d classes (want 1..256)", s.label(), s.Classes)
	case len(s.Pixels) != s.N*s.ImageSize():
		return fmt.Errorf("datasets: %s: %d pixel bytes, want %d (N*C*H*W = %d*%d*%d*%d)",
			s.label(), len(s.Pixels), s.N*s.ImageSize(), s.N, s.C, s.H, s.W)
	case len(s.Labels) != s.N:
		return fmt.Errorf("datasets: %s: %d labels for %d images", s.label(), len(s.Labels), s.N)
	case s.ClassNames != nil && len(s.ClassNames) != s.Classes:
		return fmt.Errorf("datasets: %s: %d class names for %d classes", s.label(), len(s.ClassNames), s.Classes)
	}
	return checkLabels(s.label(), s.Labels, s.Classes)
}

// checkLabels reports the first label that is not below classes.
func checkLabels(name string, labels []uint8, classes int) error {
	for i, l := range labels {
		if int(l) >= classes {
			return fmt.Errorf("datasets: %s: label %d at index %d out of range (want < %d classes)", name, l, i, classes)
		}
	}
	return nil
}

// withN returns a copy of s's metadata with n images and no data.
func (s *Set) withN(n int) *Set {
	return &Set{Name: s.Name, Split: s.Split, N: n, C: s.C, H: s.H, W: s.W,
		Classes: s.Classes, ClassNames: slices.Clone(s.ClassNames)}
}

// label names s in error messages.
func (s *Set) label() string {
	switch {
	case s.Name == "":
		return "data set"
	case s.Split == "":
		return s.Name
	}
	return s.Name + "/" + string(s.Split)
}
