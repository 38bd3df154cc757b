package datasets

import (
	"bytes"
	"errors"
	"io/fs"
	"path/filepath"
	"testing"
)

func TestReadIDX(t *testing.T) {
	good := idxImages(3, 2, 2)
	labels := idxLabels(0, 9, 4)
	tests := []struct {
		name           string
		images, labels []byte // nil: file absent
		imgFile        string // default "img"
		want           []string
	}{
		{name: "raw", images: good, labels: labels},
		{name: "gzip", images: gz(good), labels: gz(labels)},
		{name: "gzip without .gz name", images: gz(good), labels: labels, imgFile: "images-idx3-ubyte"},
		{name: "raw with .gz name", images: good, labels: labels, imgFile: "images-idx3-ubyte.gz"},
		{name: "rectangular", images: idxImages(3, 2, 5), labels: labels},
		{name: "missing images", labels: labels, want: []string{"img", "missing file"}},
		{name: "missing labels", images: good, want: []string{"lbl", "missing file"}},
		{name: "empty file", images: []byte{}, labels: labels,
			want: []string{"img", "truncated IDX images header: want 16 bytes, got 0"}},
		{name: "bad magic", images: mutate(good, func(b []byte) []byte { b[3] = 0x04; return b }), labels: labels,
			want: []string{"img", "bad magic 0x00000804 (want 0x00000803 for IDX images)"}},
		{name: "labels as images", images: labels, labels: labels,
			want: []string{"img", "bad magic 0x00000801", "this is an IDX labels file"}},
		{name: "images as labels", images: good, labels: good,
			want: []string{"lbl", "bad magic 0x00000803 (want 0x00000801 for IDX labels", "this is an IDX images file"}},
		{name: "truncated header", images: good[:10], labels: labels,
			want: []string{"img", "truncated IDX images header: want 16 bytes, got 10"}},
		{name: "truncated data", images: good[:16+7], labels: labels,
			want: []string{"img", "truncated pixel data (3 images of 2x2): want 12 bytes, got 7"}},
		{name: "truncated gzip data", images: gz(good[:16+7]), labels: labels,
			want: []string{"img", "want 12 bytes, got 7 (after gzip decompression)"}},
		{name: "truncated gzip stream", images: gz(good)[:20], labels: labels,
			want: []string{"img", "truncated"}},
		{name: "trailing data", images: append(append([]byte(nil), good...), 1), labels: labels,
			want: []string{"img", "trailing data"}},
		{name: "truncated labels", images: good, labels: labels[:9],
			want: []string{"lbl", "truncated label data (3 labels): want 3 bytes, got 1"}},
		{name: "truncated labels header", images: good, labels: labels[:5],
			want: []string{"lbl", "truncated IDX labels header: want 8 bytes, got 5"}},
		{name: "count mismatch", images: good, labels: idxLabels(1, 2),
			want: []string{"count mismatch", "img has 3 images", "lbl has 2 labels"}},
		{name: "label out of range", images: good, labels: idxLabels(1, 10, 2),
			want: []string{"lbl", "label 10 at index 1 out of range (want < 10 classes)"}},
		{name: "corrupt gzip checksum", images: mutate(gz(good), func(b []byte) []byte { b[len(b)-6] ^= 0xff; return b }),
			labels: labels, want: []string{"img", "corrupt gzip", "checksum"}},
		{name: "corrupt gzip header", images: mutate(gz(good), func(b []byte) []byte { b[2] = 0; return b }),
			labels: labels, want: []string{"img", "corrupt gzip", "invalid header"}},
		{name: "absurd dimensions", images: idxHeader(idxImagesMagic, 1<<20, 1<<10, 1<<10), labels: labels,
			want: []string{"img", "implausible IDX dimensions 1048576x1024x1024"}},
		{name: "overflowing dimensions", images: idxHeader(idxImagesMagic, 0xffffffff, 0xffffffff, 0xffffffff), labels: labels,
			want: []string{"img", "implausible IDX dimensions"}},
		{name: "zero dimension", images: idxHeader(idxImagesMagic, 3, 0, 2), labels: labels,
			want: []string{"img", "empty IDX images: dimensions 3x0x2"}},
		{name: "absurd label count", images: good, labels: idxHeader(idxLabelsMagic, 0xffffffff),
			want: []string{"lbl", "implausible IDX label count 4294967295"}},
		{name: "large claim, little data", images: idxHeader(idxImagesMagic, 1<<11, 1<<10, 1<<10), labels: labels,
			want: []string{"img", "want 2147483648 bytes, got 0"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			imgFile := tc.imgFile
			if imgFile == "" {
				imgFile = "img"
			}
			imgPath, lblPath := filepath.Join(dir, imgFile), filepath.Join(dir, "lbl")
			if tc.images != nil {
				writeFile(t, dir, imgFile, tc.images)
			}
			if tc.labels != nil {
				writeFile(t, dir, "lbl", tc.labels)
			}
			s, err := ReadIDX(imgPath, lblPath)
			if tc.want != nil {
				wantErr(t, err, tc.want...)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Validate(); err != nil {
				t.Fatal(err)
			}
			if s.N != 3 || s.C != 1 || s.Classes != 10 || !bytes.Equal(s.Labels, []byte{0, 9, 4}) {
				t.Errorf("got N=%d C=%d classes=%d labels=%v", s.N, s.C, s.Classes, s.Labels)
			}
			raw := tc.images
			if raw[0] == 0x1f {
				raw = good
			}
			if !bytes.Equal(s.Pixels, raw[16:]) {
				t.Errorf("pixels differ from the file")
			}
		})
	}
}

func TestReadIDXMissingIsNotExist(t *testing.T) {
	_, err := ReadIDX(filepath.Join(t.TempDir(), "nope"), "x")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error %v does not wrap fs.ErrNotExist", err)
	}
}

func TestParseIDXLabelsClasses(t *testing.T) {
	for _, tc := range []struct {
		classes int
		want    string
	}{
		{0, "0 classes (want 1..256)"},
		{257, "257 classes"},
		{3, "label 5 at index 1 out of range (want < 3 classes)"},
		{6, ""},
	} {
		_, err := ParseIDXLabels(bytes.NewReader(idxLabels(1, 5)), "mem", tc.classes)
		if tc.want == "" {
			if err != nil {
				t.Errorf("classes %d: %v", tc.classes, err)
			}
			continue
		}
		wantErr(t, err, "mem", tc.want)
	}
}
