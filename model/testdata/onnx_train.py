#!/usr/bin/python3
"""PyTorch oracle for a training step of an imported ONNX model (model/graph_test.go).

Usage (Debian's /usr/bin/python3 with python3-torch, python3-torchvision,
python3-onnx, python3-numpy):

  onnx_train.py STATE_NPZ IO_NPZ LR OUT_NPZ

Builds scripts/onnx-corpus.py's SmallNet, loads STATE_NPZ (a faultline model.npz:
state_dict names) strictly, and runs one training step in training mode (BatchNorm
on batch statistics, updating the running ones) on IO_NPZ's "input" and "labels":
mean cross-entropy, backward, plain SGD (p -= LR * grad). Writes OUT_NPZ: "logits"
(the training-mode logits), "loss", and every state_dict entry after the step
(num_batches_tracked left out).
"""

import importlib.util
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F


def corpus_module():
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "..", "..", "scripts", "onnx-corpus.py")
    spec = importlib.util.spec_from_file_location("onnx_corpus", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    state_path, io_path, lr, out_path = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
    torch.set_num_threads(1)
    mod = corpus_module()
    # KeptDropout (an identity exported as Dropout) has no backward of its own.
    mod.KeptDropout.backward = staticmethod(lambda ctx, grad: grad)
    net = mod.SmallNet()
    state = {k: torch.from_numpy(np.asarray(v)) for k, v in np.load(state_path).items()}
    net.load_state_dict(state, strict=True)
    net.train()
    io = np.load(io_path)
    x = torch.from_numpy(io["input"])
    y = torch.from_numpy(io["labels"]).long()
    logits = net(x)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    with torch.no_grad():
        for p in net.parameters():
            p -= lr * p.grad
    out = {"logits": logits.detach().numpy().astype(np.float32),
           "loss": np.array(loss.item(), dtype=np.float32)}
    for k, v in net.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            out[k] = v.detach().numpy().astype(np.float32)
    np.savez(out_path, **out)


if __name__ == "__main__":
    main()
