package datasets

import (
	"bytes"
	"path/filepath"
	"testing"
)

func TestParseCIFAR(t *testing.T) {
	good := cifarRecords(3, 9)
	tests := []struct {
		name string
		data []byte
		want []string
	}{
		{name: "good", data: good},
		{name: "many chunks", data: cifarRecords(bytes.Repeat([]byte{1, 2, 3}, cifarChunkRecords)...)},
		{name: "empty", data: nil, want: []string{"f.bin", "empty CIFAR-10 file"}},
		{name: "bad size", data: good[:2*cifarRecord-5],
			want: []string{"f.bin", "size 6141 bytes is not a multiple of the 3073-byte CIFAR-10 record (1 whole records and 3068 bytes over)"}},
		{name: "extra bytes", data: append(append([]byte(nil), good...), 0, 0),
			want: []string{"f.bin", "size 6148 bytes is not a multiple"}},
		{name: "bad label", data: cifarRecords(1, 10),
			want: []string{"f.bin", "label 10 in record 1 out of range (want 0..9)"}},
		{name: "exactly one chunk", data: cifarRecords(make([]byte, cifarChunkRecords)...)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ParseCIFAR(bytes.NewReader(tc.data), "f.bin")
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
			if s.N != len(tc.data)/cifarRecord || s.C != 3 || s.H != 32 || s.W != 32 || s.ClassNames[9] != "truck" {
				t.Fatalf("got %d images %dx%dx%d, class 9 %q", s.N, s.C, s.H, s.W, s.ClassNames[9])
			}
			for i := range s.N {
				rec := tc.data[i*cifarRecord : (i+1)*cifarRecord]
				if s.Labels[i] != rec[0] || !bytes.Equal(s.Image(i), rec[1:]) {
					t.Fatalf("record %d differs", i)
				}
			}
		})
	}
}

func TestReadCIFAR(t *testing.T) {
	dir := t.TempDir()
	a := writeFile(t, dir, "a.bin", cifarRecords(1, 2))
	b := writeFile(t, dir, "b.bin", cifarRecords(3))
	bad := writeFile(t, dir, "bad.bin", cifarRecords(4, 11))
	s, err := ReadCIFAR(a, b)
	if err != nil {
		t.Fatal(err)
	}
	if s.N != 3 || !bytes.Equal(s.Labels, []byte{1, 2, 3}) || len(s.Pixels) != 3*cifarImage {
		t.Errorf("got N=%d labels %v, %d pixels", s.N, s.Labels, len(s.Pixels))
	}
	if !bytes.Equal(s.Image(2), cifarRecords(3)[1:]) {
		t.Errorf("third image differs from b.bin")
	}
	_, err = ReadCIFAR(a, bad)
	wantErr(t, err, "bad.bin", "label 11 in record 1")
	_, err = ReadCIFAR(a, filepath.Join(dir, "none.bin"))
	wantErr(t, err, "none.bin", "missing file")
	_, err = ReadCIFAR()
	wantErr(t, err, "no files")
}
