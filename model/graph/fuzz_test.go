package graph

import (
	"encoding/binary"
	"testing"
)

// fuzzOps are the ops FuzzEval drives through the constant evaluator and
// shape inference.
var fuzzOps = []string{"Gather", "Unsqueeze", "Squeeze", "Concat", "Slice", "Reshape", "Flatten", "Cast",
	"Transpose", "Add", "Div", "Equal", "Where", "Range", "ConstantOfShape", "Conv", "MaxPool", "AveragePool",
	"Gemm", "MatMul", "Pad", "Split", "ReduceMean", "Shape", "Dropout"}

// FuzzEval builds one node with small constant inputs and attributes from the
// fuzzer's bytes and evaluates and infers it: errors are fine, panics and
// runaway allocations are not.
func FuzzEval(f *testing.F) {
	f.Add([]byte{4, 2, 3, 1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12})
	f.Add([]byte{0, 1, 6, 2, 255, 1, 0, 2, 1})
	f.Add([]byte{15, 4, 1, 1, 5, 5, 3, 3, 3, 0, 1, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		next := func() int64 {
			if len(b) == 0 {
				return 0
			}
			v := int64(int8(b[0]))
			b = b[1:]
			return v
		}
		op := fuzzOps[int(uint8(next()))%len(fuzzOps)]
		var ins []*Tensor
		var infos []info
		for k := next() & 3; k >= 0; k-- {
			rank := int(next() & 3)
			shape := make([]int64, rank)
			n := int64(1)
			for i := range shape {
				shape[i] = next() & 7
				n *= shape[i]
			}
			vals := make([]int64, n)
			for i := range vals {
				vals[i] = next()
			}
			var x *Tensor
			if next()&1 == 0 {
				x, _ = FromInt64s("", shape, vals)
			} else {
				raw := make([]byte, 4*n)
				for i, v := range vals {
					binary.LittleEndian.PutUint32(raw[4*i:], uint32(v)<<20)
				}
				x, _ = NewTensor("", Float32, shape, raw)
			}
			ins = append(ins, x)
			infos = append(infos, ranked(x.DType, x.Shape))
		}
		attrs := map[string]Attr{}
		for _, name := range []string{"axis", "to", "allowzero", "group", "transB", "keepdims", "ceil_mode"} {
			if next()&1 == 1 {
				attrs[name] = Int(next())
			}
		}
		for _, name := range []string{"perm", "axes", "kernel_shape", "strides", "pads", "dilations", "split"} {
			if next()&1 == 1 {
				var v []int64
				for k := next() & 7; k > 0; k-- {
					v = append(v, next())
				}
				attrs[name] = Ints(v...)
			}
		}
		n := &Node{Name: "fuzz", Op: op, Attrs: attrs, Outputs: []string{"y"}}
		for range ins {
			n.Inputs = append(n.Inputs, "i")
		}
		if outs, err := evalNode(n, ins); err == nil {
			for _, o := range outs {
				if o == nil || o.check() != nil {
					t.Fatalf("%s gave an inconsistent tensor %+v", op, o)
				}
			}
		}
		if len(infos) > 0 && next()&1 == 1 {
			infos[0].shape = append([]int64{dimBatch}, infos[0].shape...)
		}
		_, _ = infer(n, infos, ins)
	})
}
