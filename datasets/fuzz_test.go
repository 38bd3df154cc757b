package datasets

import (
	"bytes"
	"testing"
)

// The fuzz targets check that the parsers of untrusted files never panic, and that
// what they accept is consistent. Memory stays bounded because the readers allocate
// buffers that start small (64 KiB) and grow only as bytes actually arrive.

func FuzzParseIDXImages(f *testing.F) {
	good := idxImages(3, 2, 2)
	for _, seed := range [][]byte{
		good, gz(good), idxImages(1, 28, 28), nil, {0x1f, 0x8b}, good[:10], good[:20],
		idxLabels(1, 2), idxHeader(idxImagesMagic, 1<<11, 1<<10, 1<<10),
		idxHeader(idxImagesMagic, 0xffffffff, 0xffffffff, 0xffffffff),
		append(append([]byte(nil), good...), 0), gz(good)[:25],
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		img, err := ParseIDXImages(bytes.NewReader(data), "fuzz")
		if err != nil {
			return
		}
		if img.N <= 0 || img.H <= 0 || img.W <= 0 || len(img.Pixels) != img.N*img.H*img.W || len(img.Pixels) > MaxBytes {
			t.Fatalf("accepted %dx%dx%d with %d pixel bytes", img.N, img.H, img.W, len(img.Pixels))
		}
		if len(data) > 0 && data[0] == 0x1f {
			return // compressed input: the raw check below does not apply
		}
		again, err := ParseIDXImages(bytes.NewReader(gz(data)), "fuzz.gz")
		if err != nil || !bytes.Equal(again.Pixels, img.Pixels) {
			t.Fatalf("raw input accepted but its gzip form gives %v", err)
		}
	})
}

func FuzzParseIDXLabels(f *testing.F) {
	good := idxLabels(0, 9, 4)
	for _, seed := range [][]byte{
		good, gz(good), nil, good[:5], idxImages(1, 2, 2), idxLabels(10),
		idxHeader(idxLabelsMagic, 0xffffffff), gz(good)[:12],
	} {
		f.Add(seed, 10)
	}
	f.Add(good, 0)
	f.Add(good, 300)
	f.Fuzz(func(t *testing.T, data []byte, classes int) {
		labels, err := ParseIDXLabels(bytes.NewReader(data), "fuzz", classes)
		if err != nil {
			return
		}
		if len(labels) == 0 || classes < 1 || classes > 256 {
			t.Fatalf("accepted %d labels with %d classes", len(labels), classes)
		}
		for i, l := range labels {
			if int(l) >= classes {
				t.Fatalf("label %d at %d not below %d", l, i, classes)
			}
		}
	})
}

func FuzzReadCIFAR(f *testing.F) {
	good := cifarRecords(3, 9)
	for _, seed := range [][]byte{good, nil, good[:100], good[:cifarRecord+1], cifarRecords(10), {0}} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseCIFAR(bytes.NewReader(data), "fuzz")
		if err != nil {
			return
		}
		if s.N*cifarRecord != len(data) {
			t.Fatalf("accepted %d bytes as %d records", len(data), s.N)
		}
		if err := s.Validate(); err != nil {
			t.Fatal(err)
		}
	})
}
