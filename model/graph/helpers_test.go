package graph

import (
	"strings"
	"testing"
)

// nd builds a node; attrs alternate names and Attr values.
func nd(op, name, ins, outs string, attrs ...any) Node {
	n := Node{Name: name, Op: op, Inputs: split(ins), Outputs: split(outs)}
	for i := 0; i+1 < len(attrs); i += 2 {
		if n.Attrs == nil {
			n.Attrs = map[string]Attr{}
		}
		n.Attrs[attrs[i].(string)] = attrs[i+1].(Attr)
	}
	return n
}

// split splits a comma-separated list of names ("" stays an empty entry when
// between commas: "x,,y" has an omitted input).
func split(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func f32(t *testing.T, name string, shape []int64, vals ...float32) *Tensor {
	t.Helper()
	if vals == nil {
		vals = make([]float32, prod(shape))
		for i := range vals {
			vals[i] = float32(i)
		}
	}
	x, err := FromFloat32s(name, shape, vals)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func i64(t *testing.T, name string, shape []int64, vals ...int64) *Tensor {
	t.Helper()
	x, err := FromInt64s(name, shape, vals)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// input is the usual data input: [batch, c, h, w].
func input(c, h, w int64) Value {
	return Value{Name: "x", DType: Float32, Shape: []int64{-1, c, h, w}, DimNames: []string{"batch", "", "", ""}}
}

func wantErr(t *testing.T, err error, want string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v, want one containing %q", err, want)
	}
}
