package npz

import (
	"bytes"
	"encoding/binary"
	"math"
	"strings"
	"testing"

	"gorgonia.org/tensor"
)

// craft builds an .npy file by hand: magic, version major.0, the length field, the
// header text exactly as given, then data.
func craft(major byte, dict string, data []byte) []byte {
	b := []byte(magic)
	b = append(b, major, 0)
	if major == 1 {
		b = binary.LittleEndian.AppendUint16(b, uint16(len(dict)))
	} else {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(dict)))
	}
	b = append(b, dict...)
	return append(b, data...)
}

// dict is a header dictionary for descr and shape in NumPy's spelling.
func dict(descr, shape string) string {
	return "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }\n"
}

// npyBytes encodes t with WriteNpy or fails the test.
func npyBytes(t testing.TB, d *tensor.Dense) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := WriteNpy(&b, d); err != nil {
		t.Fatalf("WriteNpy: %v", err)
	}
	return b.Bytes()
}

// sameTensor compares dtype, shape and the encoded bytes (so NaNs compare equal).
func sameTensor(t testing.TB, got, want *tensor.Dense) {
	t.Helper()
	if got.Dtype() != want.Dtype() || !got.Shape().Eq(want.Shape()) || got.Dims() != want.Dims() {
		t.Fatalf("got %v %v, want %v %v", got.Dtype(), got.Shape(), want.Dtype(), want.Shape())
	}
	if !bytes.Equal(npyBytes(t, got), npyBytes(t, want)) {
		t.Fatalf("data differ:\ngot  %v\nwant %v", got.Data(), want.Data())
	}
}

func TestWriteNpyExactBytes(t *testing.T) {
	tests := []struct {
		name string
		in   *tensor.Dense
		want string
	}{{
		// 57-byte dict + 20 growth spaces (21 - len("3")) + 40 padding + '\n' = 118
		// bytes, so the 10-byte prefix and header end at 128 = 2*64.
		name: "float32 (3,)",
		in:   tensor.New(tensor.WithShape(3), tensor.WithBacking([]float32{0, 1, 2})),
		want: "\x93NUMPY\x01\x00\x76\x00" +
			"{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }" +
			strings.Repeat(" ", 20+40) + "\n" +
			"\x00\x00\x00\x00" + "\x00\x00\x80\x3f" + "\x00\x00\x00\x40",
	}, {
		// 0-d: 55-byte dict, no growth room, 62 padding + '\n' = 118 bytes.
		name: "int64 ()",
		in:   tensor.New(tensor.WithShape(), tensor.WithBacking([]int64{7})),
		want: "\x93NUMPY\x01\x00\x76\x00" +
			"{'descr': '<i8', 'fortran_order': False, 'shape': (), }" +
			strings.Repeat(" ", 62) + "\n" +
			"\x07\x00\x00\x00\x00\x00\x00\x00",
	}, {
		// 59-byte dict + 20 growth spaces + 38 padding + '\n' = 118 bytes again.
		name: "uint8 (2, 1)",
		in:   tensor.New(tensor.WithShape(2, 1), tensor.WithBacking([]uint8{9, 255})),
		want: "\x93NUMPY\x01\x00\x76\x00" +
			"{'descr': '|u1', 'fortran_order': False, 'shape': (2, 1), }" +
			strings.Repeat(" ", 20+38) + "\n" +
			"\x09\xff",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := npyBytes(t, tc.in)
			if string(got) != tc.want {
				t.Errorf("got\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}

func TestRoundTripNpy(t *testing.T) {
	shapes := [][]int{{}, {1}, {3}, {1, 1}, {2, 3, 4}}
	backing := func(dt tensor.Dtype, n int) any {
		switch dt {
		case tensor.Float32:
			xs := make([]float32, n)
			for i := range xs {
				xs[i] = float32(i)/3 - 1
			}
			if n > 1 {
				xs[1] = float32(math.NaN())
			}
			return xs
		case tensor.Float64:
			xs := make([]float64, n)
			for i := range xs {
				xs[i] = float64(i)/3 - 1
			}
			if n > 1 {
				xs[1] = math.Inf(-1)
			}
			return xs
		case tensor.Int64:
			xs := make([]int64, n)
			for i := range xs {
				xs[i] = int64(i)*1e12 - 5
			}
			return xs
		case tensor.Int32:
			xs := make([]int32, n)
			for i := range xs {
				xs[i] = int32(i)*1e8 - 7
			}
			return xs
		case tensor.Uint8:
			xs := make([]uint8, n)
			for i := range xs {
				xs[i] = uint8(250 + i)
			}
			return xs
		case tensor.Bool:
			xs := make([]bool, n)
			for i := range xs {
				xs[i] = i%3 == 0
			}
			return xs
		}
		panic("unhandled dtype")
	}
	for _, dt := range []tensor.Dtype{tensor.Float32, tensor.Float64, tensor.Int64, tensor.Int32, tensor.Uint8, tensor.Bool} {
		for _, shape := range shapes {
			in := tensor.New(tensor.WithShape(shape...), tensor.WithBacking(backing(dt, tensor.Shape(shape).TotalSize())))
			t.Run(dt.String()+formatShape(shape), func(t *testing.T) {
				out, err := ReadNpy(bytes.NewReader(npyBytes(t, in)), "x.npy")
				if err != nil {
					t.Fatal(err)
				}
				sameTensor(t, out, in)
			})
		}
	}
}

func TestWriteNpyViewsAndInts(t *testing.T) {
	m := tensor.New(tensor.WithShape(2, 3), tensor.WithBacking([]float32{1, 2, 3, 4, 5, 6}))
	if err := m.T(); err != nil {
		t.Fatal(err)
	}
	got, err := ReadNpy(bytes.NewReader(npyBytes(t, m)), "t.npy")
	if err != nil {
		t.Fatal(err)
	}
	sameTensor(t, got, tensor.New(tensor.WithShape(3, 2), tensor.WithBacking([]float32{1, 4, 2, 5, 3, 6})))

	row, err := tensor.New(tensor.WithShape(2, 3), tensor.WithBacking([]float32{1, 2, 3, 4, 5, 6})).Slice(tensor.S(1))
	if err != nil {
		t.Fatal(err)
	}
	got, err = ReadNpy(bytes.NewReader(npyBytes(t, row.(*tensor.Dense))), "row.npy")
	if err != nil {
		t.Fatal(err)
	}
	sameTensor(t, got, tensor.New(tensor.WithShape(3), tensor.WithBacking([]float32{4, 5, 6})))

	// Go int is written as '<i8' and reads back as int64.
	ints := tensor.New(tensor.WithShape(2), tensor.WithBacking([]int{-1, 1 << 40}))
	got, err = ReadNpy(bytes.NewReader(npyBytes(t, ints)), "int.npy")
	if err != nil {
		t.Fatal(err)
	}
	sameTensor(t, got, tensor.New(tensor.WithShape(2), tensor.WithBacking([]int64{-1, 1 << 40})))
}

func TestWriteNpyErrors(t *testing.T) {
	tests := []struct {
		name string
		in   *tensor.Dense
		want string
	}{
		{"nil", nil, "nil tensor"},
		{"complex", tensor.New(tensor.WithShape(1), tensor.WithBacking([]complex64{1})), "dtype complex64 is not supported"},
		{"zero value", new(tensor.Dense), "tensor has no dtype"},
		{"column-major", tensor.New(tensor.WithShape(2, 3), tensor.WithBacking(make([]float32, 6)), tensor.AsFortran(nil)), "column-major tensor of shape (2, 3)"},
		{"masked", tensor.New(tensor.WithShape(2), tensor.WithBacking([]float32{1, 2}, []bool{false, true})), "masked"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := WriteNpy(&bytes.Buffer{}, tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want error containing %q", err, tc.want)
			}
		})
	}
}

// TestReadNpyAccepts covers header spellings NumPy and other writers produce.
func TestReadNpyAccepts(t *testing.T) {
	f4 := []byte{0, 0, 0x80, 0x3f, 0, 0, 0, 0x40} // 1, 2
	tests := []struct {
		name string
		file []byte
		want *tensor.Dense
	}{
		{"v1", craft(1, dict("<f4", "(2,)"), f4), vec32(1, 2)},
		{"v2", craft(2, dict("<f4", "(2,)"), f4), vec32(1, 2)},
		{"v3", craft(3, dict("<f4", "(2,)"), f4), vec32(1, 2)},
		{"double quotes, other key order, no trailing comma or newline",
			craft(1, `{"shape": (2,), "fortran_order": False, "descr": "<f4"}`, f4), vec32(1, 2)},
		{"gorgonia spelling", craft(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)}      ", f4), vec32(1, 2)},
		{"python 2 long", craft(1, dict("<f4", "(2L,)"), f4), vec32(1, 2)},
		{"2-d trailing comma", craft(1, dict("<f4", "(1, 2,)"), f4),
			tensor.New(tensor.WithShape(1, 2), tensor.WithBacking([]float32{1, 2}))},
		{"big-endian converted", craft(1, dict(">f4", "(2,)"), []byte{0x3f, 0x80, 0, 0, 0x40, 0, 0, 0}), vec32(1, 2)},
		{"big-endian int64", craft(1, dict(">i8", "()"), []byte{0, 0, 0, 0, 0, 0, 1, 2}),
			tensor.New(tensor.WithShape(), tensor.WithBacking([]int64{258}))},
		{"fortran 1-d", craft(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }", f4), vec32(1, 2)},
		{"fortran (1, 2)", craft(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (1, 2), }", f4),
			tensor.New(tensor.WithShape(1, 2), tensor.WithBacking([]float32{1, 2}))},
		{"bool nonzero is true", craft(1, dict("|b1", "(3,)"), []byte{0, 1, 2}),
			tensor.New(tensor.WithShape(3), tensor.WithBacking([]bool{false, true, true}))},
		{"'<u1' for a byte", craft(1, dict("<u1", "(1,)"), []byte{200}),
			tensor.New(tensor.WithShape(1), tensor.WithBacking([]uint8{200}))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReadNpy(bytes.NewReader(tc.file), "x.npy")
			if err != nil {
				t.Fatal(err)
			}
			sameTensor(t, got, tc.want)
		})
	}
}

func vec32(xs ...float32) *tensor.Dense {
	return tensor.New(tensor.WithShape(len(xs)), tensor.WithBacking(xs))
}

func TestReadNpyErrors(t *testing.T) {
	f4x2 := make([]byte, 8)
	long := craft(2, strings.Repeat(" ", 16), nil)
	binary.LittleEndian.PutUint32(long[8:], maxHeaderLen+1)
	tests := []struct {
		name string
		file []byte
		want string
	}{
		{"empty", nil, "not an npy file: only 0 bytes"},
		{"bad magic", []byte("PK\x03\x04\x14\x00\x00\x00\x00\x00"), `bad magic "PK\x03\x04\x14\x00"`},
		{"magic only", []byte(magic), "only 6 bytes"},
		{"unknown version", append([]byte(magic), 4, 0, 0, 0), "unsupported npy format version 4.0"},
		{"minor version", append([]byte(magic), 1, 1, 0, 0), "unsupported npy format version 1.1"},
		{"truncated length", append([]byte(magic), 1, 0, 5), "truncated header length"},
		{"header too long", long, "header too long: 1048577 bytes (limit 1048576)"},
		{"truncated header", craft(1, dict("<f4", "(2,)"), nil)[:40], "truncated header: 30 of"},
		{"not a dict", craft(1, "[1, 2]", nil), `want '{' at offset 0`},
		{"unknown key", craft(1, "{'descr': '<f4', 'order': 'C'}", nil), `unknown key "order"`},
		{"repeated key", craft(1, "{'descr': '<f4', 'descr': '<f4'}", nil), `repeated key "descr"`},
		{"missing shape", craft(1, "{'descr': '<f4', 'fortran_order': False}", nil), `missing key "shape"`},
		{"unterminated", craft(1, "{'descr: '<f4'}", nil), "want ':' at offset"},
		{"trailing junk", craft(1, dict("<f4", "(2,)")+"x", f4x2), `"x" after the dictionary`},
		{"fortran not bool", craft(1, "{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}", f4x2), `fortran_order is "", not True or False`},
		{"half float", craft(1, dict("<f2", "(2,)"), f4x2), `unsupported dtype "<f2"`},
		{"complex", craft(1, dict("<c8", "(1,)"), f4x2), `unsupported dtype "<c8"`},
		{"object", craft(1, dict("|O", "(1,)"), f4x2), `unsupported dtype "|O"`},
		{"structured", craft(1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,)}", f4x2), "structured dtypes are not supported"},
		{"native order", craft(1, dict("=f4", "(2,)"), f4x2), "native byte order"},
		{"bad order", craft(1, dict("|f4", "(2,)"), f4x2), "bad byte order"},
		{"int not tuple", craft(1, dict("<f4", "(2)"), f4x2), "(2) is not a tuple"},
		{"negative dim", craft(1, dict("<f4", "(-3,)"), f4x2), "negative dimension -3"},
		{"huge dim", craft(1, dict("<f4", "(99999999999999999999,)"), f4x2), "dimension 99999999999999999999 is out of range"},
		{"overflowing shape", craft(1, dict("<f4", "(4294967296, 4294967296)"), f4x2), "is too large"},
		{"too many dims", craft(1, dict("<f4", "("+strings.Repeat("1, ", 65)+")"), f4x2), "more than 64 dimensions"},
		{"absurd shape, little data", craft(1, dict("<f4", "(1000000, 1000000)"), f4x2),
			"header declares shape (1000000, 1000000) = 1000000000000 elements but data has 8 bytes (want 4000000000000)"},
		{"short data", craft(1, dict("<f4", "(3,)"), f4x2), "header declares shape (3,) = 3 elements but data has 8 bytes (want 12)"},
		{"long data", craft(1, dict("<f4", "(1,)"), f4x2), "header declares shape (1,) = 1 elements but data has more than 4 bytes (want 4)"},
		{"zero-size", craft(1, dict("<f4", "(0, 3)"), nil), "shape (0, 3) has no elements"},
		{"fortran 2-d", craft(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", append(f4x2, f4x2...)), "Fortran order"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReadNpy(bytes.NewReader(tc.file), "w.npy")
			if err == nil {
				t.Fatalf("got %v %v, want error containing %q", got.Shape(), got.Data(), tc.want)
			}
			if !strings.HasPrefix(err.Error(), "npz: w.npy: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %q, want error containing %q", err, tc.want)
			}
		})
	}
}

// TestGorgoniaInterop checks that files gorgonia writes read here and that gorgonia can
// read what is written here (float32; its reader maps '<i8' to Go int and then fails).
func TestGorgoniaInterop(t *testing.T) {
	in := tensor.New(tensor.WithShape(2, 3), tensor.WithBacking([]float32{1, -2, 3, -4, 5, 0.5}))
	var b bytes.Buffer
	if err := in.WriteNpy(&b); err != nil {
		t.Fatal(err)
	}
	got, err := ReadNpy(&b, "gorgonia.npy")
	if err != nil {
		t.Fatal(err)
	}
	sameTensor(t, got, in)

	back := new(tensor.Dense)
	if err := back.ReadNpy(bytes.NewReader(npyBytes(t, in))); err != nil {
		t.Fatal(err)
	}
	sameTensor(t, back, in)
}
