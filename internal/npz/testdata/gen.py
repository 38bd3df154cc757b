# Regenerates the NumPy-made fixtures: /usr/bin/python3 gen.py (run in this directory).
import numpy as np
from numpy.lib import format as npformat

arrays = {
    "conv.weight": np.arange(24, dtype="<f4").reshape(2, 3, 4) / np.float32(8),
    "bn.num_batches_tracked": np.array(5, dtype=np.int64),
    "f8": np.array([1.5, -2.25, np.inf], dtype="<f8"),
    "i4": np.array([[1, -2], [3, -4]], dtype="<i4"),
    "u1": np.array([0, 7, 255], dtype=np.uint8),
    "mask": np.array([True, False, True]),
    "big": np.array([1.0, -0.5], dtype=">f4"),
}
np.savez("numpy.npz", **arrays)
np.savez_compressed("numpy_compressed.npz", **arrays)
with open("numpy_v2.npy", "wb") as f:
    npformat.write_array(f, np.array([[1, 2, 3]], dtype="<i8"), version=(2, 0))
