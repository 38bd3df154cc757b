package datasets

import (
	"bytes"
	"testing"
)

func tinySet() *Set {
	return &Set{Name: "tiny", Split: Train, N: 4, C: 1, H: 1, W: 2, Classes: 3,
		Pixels: []uint8{0, 1, 10, 11, 20, 21, 30, 31}, Labels: []uint8{0, 1, 2, 0},
		ClassNames: []string{"a", "b", "c"}}
}

func TestSetViews(t *testing.T) {
	s := tinySet()
	if s.Len() != 4 || !bytes.Equal(s.Image(2), []uint8{20, 21}) {
		t.Fatalf("Len %d, Image(2) %v", s.Len(), s.Image(2))
	}
	sub := s.Subset([]int{3, 1, 1})
	if sub.N != 3 || !bytes.Equal(sub.Pixels, []uint8{30, 31, 10, 11, 10, 11}) || !bytes.Equal(sub.Labels, []uint8{0, 1, 1}) {
		t.Errorf("Subset: %+v", sub)
	}
	sub.Pixels[0], sub.ClassNames[0] = 99, "z"
	if s.Pixels[6] != 30 || s.ClassNames[0] != "a" {
		t.Errorf("Subset shares storage with its parent")
	}
	h, err := s.Head(2)
	if err != nil || h.N != 2 || !bytes.Equal(h.Pixels, []uint8{0, 1, 10, 11}) || h.Validate() != nil {
		t.Errorf("Head(2) = %+v, %v", h, err)
	}
	_ = append(h.Pixels, 77)
	if s.Pixels[4] != 20 {
		t.Errorf("appending to Head overwrote the parent")
	}
}

func TestSetHeadErrors(t *testing.T) {
	for _, n := range []int{0, -1, 5} {
		_, err := tinySet().Head(n)
		wantErr(t, err, "tiny/train", "want 1..4")
	}
}

func TestSetValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Set)
		want string
	}{
		{"ok", func(*Set) {}, ""},
		{"short pixels", func(s *Set) { s.Pixels = s.Pixels[1:] }, "7 pixel bytes, want 8"},
		{"short labels", func(s *Set) { s.Labels = s.Labels[1:] }, "3 labels for 4 images"},
		{"label", func(s *Set) { s.Labels[3] = 3 }, "label 3 at index 3 out of range"},
		{"classes", func(s *Set) { s.Classes = 0 }, "0 classes"},
		{"shape", func(s *Set) { s.C = 0 }, "bad shape"},
		{"names", func(s *Set) { s.ClassNames = s.ClassNames[:2] }, "2 class names for 3 classes"},
	}
	for _, tc := range tests {
		s := tinySet()
		tc.edit(s)
		err := s.Validate()
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		wantErr(t, err, tc.want)
	}
}

func TestParseSplit(t *testing.T) {
	for in, want := range map[string]Split{"train": Train, " Test": Test} {
		if got, err := ParseSplit(in); err != nil || got != want {
			t.Errorf("ParseSplit(%q) = %q, %v", in, got, err)
		}
	}
	_, err := ParseSplit("val")
	wantErr(t, err, `"val"`, "train", "test")
}
