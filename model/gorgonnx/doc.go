// Package gorgonnx runs ONNX models on onnx-go's gorgonia backend
// (github.com/owulveryck/onnx-go v0.5.0, backend/x/gorgonnx, on gorgonia
// v0.9.18): a pure-Go second engine that checks an imported graph's logits
// against libtorch's where its operation set covers the model.
//
// Supports tells whether a graph can be run and names every op it cannot;
// Run and RunGraph compute the logits of a batch of images.
//
// gorgonnx needs static shapes, and several of its operators implement only
// some forms of the ONNX op, or misread some attributes. Before the graph is
// handed to onnx-go it is folded (graph.Fold) for the images' shape and
// rewritten, node by node, into an equivalent graph for a fixed batch size
// that gorgonnx computes as ONNX specifies:
//
//   - Flatten, Squeeze, Unsqueeze and Reshape become a Reshape to the
//     output's static shape (gorgonnx's Reshape miscomputes -1, its
//     Squeeze/Unsqueeze read opset-11 attributes).
//   - Conv gets explicit kernel_shape, and auto_pad resolved into pads,
//     written as [h, h, w, w], the layout gorgonnx reads (symmetric pads
//     only; dilations other than 1 are not supported). A grouped Conv with a
//     constant weight becomes a dense one whose weight is zero between groups
//     (gorgonnx ignores group).
//   - MaxPool's pads are written as [h_end, h_begin, w_end, w_begin], the
//     layout gorgonia's MaxPool2D reads, and ceil_mode=1 becomes the extra end
//     padding giving the same output size (gorgonnx refuses ceil_mode).
//   - AveragePool (without uncounted padding) becomes a Conv whose weight is
//     1/(kh*kw) on the channel diagonal.
//   - Clip with constant bounds becomes Max and Min; HardSigmoid and
//     HardSwish become Mul, Add, Max, Min (and Mul).
//   - A constant-mode Pad becomes Concats of constant blocks.
//   - ReduceMean over the spatial axes of a 4-D tensor becomes
//     GlobalAveragePool (and a Reshape without keepdims).
//   - A Slice of the channels of a 4-D tensor becomes a 1x1 Conv selecting
//     them (exact for finite values).
//   - Elementwise Add, Sub, Mul and Div get operands gorgonnx broadcasts as
//     numpy does: constants reshaped (a single element to [1], a rank-4
//     constant with a leading 1 to rank 3), and a computed [N C 1 1] operand
//     expanded by a Mul with ones.
//   - Gemm gets an explicit zero C; Transpose an explicit perm; Concat a
//     non-negative axis; Dropout becomes Identity; a node reading one value
//     twice reads it through an Identity copy (onnx-go's graph keeps one edge
//     per pair of nodes).
//
// Ops and forms outside these (LSTM, Resize, Softmax other than over the
// classes of a matrix, MatMul beyond rank 2, asymmetric Conv padding, ...) are
// reported by Supports and RunGraph as an *UnsupportedError.
//
// gorgonia keeps every intermediate tensor, so Run computes at most MaxBatch
// images at once. Runs are serialised (gorgonnx names nodes with an
// unsynchronised counter), and a panic inside onnx-go or gorgonia is
// recovered and returned as an error naming the model.
package gorgonnx
