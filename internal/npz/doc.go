// Package npz reads and writes NumPy .npy arrays and .npz archives of named arrays as
// gorgonia *tensor.Dense values, so checkpoints round-trip with numpy.load and
// torch.from_numpy.
// Parsing is strict and never trusts the file: malformed headers, shapes that do not
// match the data and unsupported dtypes are errors that name the file and the entry.
package npz
