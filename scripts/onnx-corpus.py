#!/usr/bin/python3
"""Build faultline's ONNX test corpus: CNNs exported by PyTorch, with reference logits.

Usage (Debian's /usr/bin/python3 with python3-torch, python3-torchvision, python3-onnx,
python3-numpy; no network, no pretrained weights):

  /usr/bin/python3 scripts/onnx-corpus.py --out DIR [--models a,b] [--opsets 11,13,17]
      [--images N] [--calib K] [--seed S] [--data-dir D] [--fixtures DIR]

Every model takes 1x28x28 inputs and has 10 classes; it is built from random weights
(torch.manual_seed(S + the model's index in MODELS), so one model's files do not
depend on which others are selected), its BatchNorm affine parameters are randomised,
and its BatchNorm running statistics are set to the exact mean/variance over K
(default 256, 0 = keep 0/1) Fashion-MNIST training images, so that activations
and logits have a realistic scale. Each model is then exported with
torch.onnx.export (input `input`, output `logits`, only the batch dimension dynamic,
constant folding on) twice per opset (default 13):

  DIR/MODEL-opsetV-eval.onnx      training=EVAL: BatchNorm after a Conv is folded
                                  into it; other BatchNorms stay BatchNormalization
  DIR/MODEL-opsetV-preserve.onnx  training=PRESERVE on the eval-mode model: no
                                  folding, every BatchNorm is a BatchNormalization
                                  node (inference semantics, running statistics)

and each file passes onnx.checker.check_model(full_check=True). Also written:

  DIR/images.npy          float32 [N,1,28,28]: the first N (default 1000) Fashion-MNIST
                          test images, x/255 then (x - 0.2860406)/0.3530242
  DIR/labels.npy          int64 [N]: their labels
  DIR/MODEL.logits.npy    float32 [N,10]: PyTorch's eval-mode logits on images.npy
  DIR/manifest.json       per model: parameter count, seed, and per file: op types
                          with counts, size, sha256, opset, mode

--fixtures DIR (e.g. model/testdata/onnx) also writes the checked-in test fixtures:
smallnet-opset13-eval.onnx and smallnet-opset13-preserve.onnx (identical to the
corpus files) and smallnet_io.npz ("input" float32 [8,1,28,28]: the first 8
normalised test images, "labels" int64 [8], "logits" float32 [8,10]: PyTorch's
eval-mode logits), a zip with fixed timestamps readable by internal/npz.

The output files are byte-for-byte deterministic for given arguments (single
thread). Models: resnet18, mobilenet_v2, squeezenet1_1, shufflenet_v2_x0_5
(torchvision architectures with the stems adapted to 28x28) and smallnet (a
custom ~7.5k-parameter net covering Concat, a depthwise-separable block, a residual
Add, a Shape/Gather/Unsqueeze/Concat-computed Reshape, Clip (ReLU6), HardSwish,
Sigmoid, MaxPool, AveragePool, asymmetric Pad, GlobalAveragePool, a standalone
BatchNormalization, Dropout, Gemm). Check the exports with ONNX Runtime through
scripts/ort-run.js (see scripts/onnx-compare.py).

What PyTorch 1.13's exports contain, beyond the obvious (all seen in this corpus):
HardSwish is HardSigmoid+Mul below opset 14; ReLU6 is Clip with Constant-node
bounds; constant folding leaves the pads of F.pad as a ConstantOfShape/Concat/
Reshape/Slice(step -1)/Transpose/Reshape/Cast sub-graph; AvgPool2d becomes an
all-zero Pad then AveragePool; equal initializers (SqueezeNet's zero biases) are
deduplicated into Identity nodes; ShuffleNet's chunk and channel shuffle are
Shape/Gather/Div/Slice and Reshape/Transpose sub-graphs; torch drops inference
Dropout, so smallnet keeps one through a custom symbolic (KeptDropout).
"""

import argparse
import gzip
import hashlib
import json
import os
import sys
import zipfile
from collections import Counter

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import onnx

MEAN, STD = 0.2860406, 0.3530242
MODES = ("eval", "preserve")


# ---------------------------------------------------------------------------
# Models

class KeptDropout(torch.autograd.Function):
    """Identity in PyTorch (inference), exported as an ONNX Dropout node.

    torch.onnx.export drops nn.Dropout from inference exports entirely, but other
    exporters (Keras/tf2onnx, older PyTorch) leave inference-mode Dropout nodes in
    graphs, so an importer must accept them. A bare Dropout(x) is valid in every
    opset (ratio defaults to 0.5, training_mode to false) and is a no-op."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def symbolic(g, x):
        return g.op("Dropout", x)


class SmallNet(nn.Module):
    """A small CNN that exercises the ONNX ops an importer must handle."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 12, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(12), nn.ReLU6())
        # two branches joined by Concat
        self.branch_a = nn.Sequential(nn.Conv2d(12, 8, 1, bias=False),
                                      nn.BatchNorm2d(8), nn.ReLU())
        self.branch_b = nn.Sequential(nn.Conv2d(12, 8, 3, padding=1, bias=False),
                                      nn.BatchNorm2d(8), nn.Hardswish())
        self.pool = nn.MaxPool2d(2)  # 28 -> 14
        # depthwise-separable block (groups = channels) with a residual Add
        self.dw = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False),
                                nn.BatchNorm2d(16), nn.ReLU6())
        self.pw = nn.Sequential(nn.Conv2d(16, 16, 1, bias=False), nn.BatchNorm2d(16))
        # asymmetric explicit padding (left 1, right 0, top 0, bottom 1), then a
        # strided conv with a bias: 14 -> 15 -> 7
        self.pad = nn.ZeroPad2d((1, 0, 0, 1))
        self.down = nn.Conv2d(16, 24, 3, stride=2)
        # squeeze-and-excitation style gate: GlobalAveragePool, 1x1 convs, Sigmoid, Mul
        self.se_reduce = nn.Conv2d(24, 8, 1)
        self.se_expand = nn.Conv2d(8, 24, 1)
        self.avg = nn.AvgPool2d(2)  # 7 -> 3
        self.bn_tail = nn.BatchNorm2d(24)  # follows a pool: never folded
        self.fc = nn.Linear(24 * 3 * 3, num_classes)

    def forward(self, x):
        x = self.stem(x)
        x = torch.cat([self.branch_a(x), self.branch_b(x)], dim=1)
        x = self.pool(x)
        x = F.relu(x + self.pw(self.dw(x)))
        x = F.relu(self.down(self.pad(x)))
        s = F.adaptive_avg_pool2d(x, 1)
        s = torch.sigmoid(self.se_expand(F.relu(self.se_reduce(s))))
        x = x * s
        x = self.bn_tail(self.avg(x))
        # computed size: exports as Shape/Gather/Unsqueeze/Concat feeding Reshape
        x = x.view(x.size(0), -1)
        x = KeptDropout.apply(x)
        return self.fc(x)


def build_resnet18():
    # CIFAR-style stem: 3x3 stride-1 conv, no maxpool (28 -> 28, 14, 7, 4)
    m = torchvision.models.resnet18(weights=None, num_classes=10)
    m.conv1 = nn.Conv2d(1, 64, 3, stride=1, padding=1, bias=False)
    m.maxpool = nn.Identity()
    return m


def build_mobilenet_v2():
    # stride-1 first conv and stride-1 first 24-channel stage (28 -> 28, 28, 14, 7, 7, 4)
    setting = [[1, 16, 1, 1], [6, 24, 2, 1], [6, 32, 3, 2], [6, 64, 4, 2],
               [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]
    m = torchvision.models.mobilenet_v2(weights=None, num_classes=10,
                                        inverted_residual_setting=setting)
    m.features[0][0] = nn.Conv2d(1, 32, 3, stride=1, padding=1, bias=False)
    return m


def build_squeezenet1_1():
    # stride-1 first conv (28 -> 28, maxpools with ceil_mode -> 14, 7, 3)
    m = torchvision.models.squeezenet1_1(weights=None, num_classes=10)
    m.features[0] = nn.Conv2d(1, 64, 3, stride=1, padding=1)
    return m


def build_shufflenet_v2_x0_5():
    # stride-1 stem, no maxpool (28 -> 28, 14, 7, 4)
    m = torchvision.models.shufflenet_v2_x0_5(weights=None, num_classes=10)
    m.conv1[0] = nn.Conv2d(1, 24, 3, stride=1, padding=1, bias=False)
    m.maxpool = nn.Identity()
    return m


# Order fixes the seeds: append new models at the end.
MODELS = {
    "resnet18": build_resnet18,
    "mobilenet_v2": build_mobilenet_v2,
    "squeezenet1_1": build_squeezenet1_1,
    "shufflenet_v2_x0_5": build_shufflenet_v2_x0_5,
    "smallnet": SmallNet,
}


def build(name, seed, calib):
    """Random model in eval mode with randomised, data-calibrated BatchNorms."""
    torch.manual_seed(seed)
    m = MODELS[name]()
    bns = [b for b in m.modules() if isinstance(b, nn.BatchNorm2d)]
    with torch.no_grad():
        for b in bns:
            b.weight.uniform_(0.5, 1.5)
            b.bias.normal_(0.0, 0.1)
    m.eval()
    if bns and calib is not None and len(calib):
        # momentum=None: running stats = cumulative average over the batches; one
        # batch makes them exactly that batch's mean and unbiased variance.
        for b in bns:
            b.reset_running_stats()
            b.momentum = None
            b.train()
        with torch.no_grad():
            m(calib)
        for b in bns:
            b.momentum = 0.1
            b.eval()
    return m


# ---------------------------------------------------------------------------
# Data

def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def normalise(x):
    x = x.astype(np.float32) / np.float32(255)
    return ((x - np.float32(MEAN)) / np.float32(STD)).astype(np.float32)[:, None, :, :]


# ---------------------------------------------------------------------------
# Export and checks

def export(model, path, opset, mode):
    dummy = torch.zeros(2, 1, 28, 28)
    training = torch.onnx.TrainingMode.EVAL if mode == "eval" else torch.onnx.TrainingMode.PRESERVE
    torch.onnx.export(model, dummy, path, opset_version=opset, training=training,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                      do_constant_folding=True)


def op_counts(proto):
    return dict(sorted(Counter(n.op_type for n in proto.graph.node).items()))


def check(path):
    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    ins = [(i.name, [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim])
           for i in proto.graph.input]
    outs = [(o.name, [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim])
            for o in proto.graph.output]
    if ins != [("input", ["batch", 1, 28, 28])] or outs != [("logits", ["batch", 10])]:
        raise RuntimeError(f"unexpected graph inputs/outputs {ins} -> {outs}")
    return proto


def write_npz(path, arrays):
    """numpy.savez without the wall-clock timestamps, so the file is deterministic."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for key, a in arrays.items():
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            with z.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.ascontiguousarray(a), allow_pickle=False)


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output directory (created)")
    ap.add_argument("--models", default=",".join(MODELS),
                    help="comma-separated subset of " + ",".join(MODELS))
    ap.add_argument("--opsets", default="13", help="comma-separated ONNX opsets (default 13)")
    ap.add_argument("--images", type=int, default=1000, help="test images for reference logits")
    ap.add_argument("--calib", type=int, default=256,
                    help="training images that set the BatchNorm running stats (0: keep 0/1)")
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--fixtures", metavar="DIR",
                    help="also write smallnet's opset-13 exports and an 8-image smallnet_io.npz to DIR")
    args = ap.parse_args()

    torch.set_num_threads(1)
    names = [s for s in args.models.split(",") if s]
    for n in names:
        if n not in MODELS:
            sys.exit(f"onnx-corpus: unknown model {n!r} (have {','.join(MODELS)})")
    try:
        opsets = [int(s) for s in args.opsets.split(",") if s]
    except ValueError:
        sys.exit(f"onnx-corpus: bad --opsets {args.opsets!r}")
    if not opsets:
        sys.exit("onnx-corpus: no opsets")
    if args.fixtures and args.images < 8:
        sys.exit("onnx-corpus: --fixtures needs --images of at least 8")
    if not 1 <= args.images <= 10000:
        sys.exit("onnx-corpus: --images must be in 1..10000")
    os.makedirs(args.out, exist_ok=True)

    images = normalise(read_idx(os.path.join(args.data_dir, "t10k-images-idx3-ubyte.gz"))[:args.images])
    labels = read_idx(os.path.join(args.data_dir, "t10k-labels-idx1-ubyte.gz"))[:args.images].astype(np.int64)
    np.save(os.path.join(args.out, "images.npy"), images)
    np.save(os.path.join(args.out, "labels.npy"), labels)
    calib = None
    if args.calib > 0:
        calib = torch.from_numpy(normalise(
            read_idx(os.path.join(args.data_dir, "train-images-idx3-ubyte.gz"))[:args.calib]))

    manifest_path = os.path.join(args.out, "manifest.json")
    manifest = {}
    if os.path.exists(manifest_path):
        with open(manifest_path) as f:
            manifest = json.load(f)
    manifest.setdefault("models", {})
    manifest["images"] = {"file": "images.npy", "labels": "labels.npy", "count": args.images,
                          "normalisation": {"mean": MEAN, "std": STD}}
    manifest["torch"], manifest["onnx"] = torch.__version__, onnx.__version__

    failures = []
    for name in names:
        seed = args.seed + list(MODELS).index(name)
        model = build(name, seed, calib)
        params = sum(p.numel() for p in model.parameters())
        with torch.no_grad():
            logits = torch.cat([model(torch.from_numpy(images[i:i + 100]))
                                for i in range(0, len(images), 100)]).numpy().astype(np.float32)
        np.save(os.path.join(args.out, f"{name}.logits.npy"), logits)
        acc = float((logits.argmax(1) == labels).mean())
        print(f"{name}: {params} parameters, seed {seed}, logits |max| {np.abs(logits).max():.3g}, "
              f"{len(np.unique(logits.argmax(1)))} distinct top-1 classes, accuracy {acc:.3f} (random weights)")
        entry = {"parameters": params, "seed": seed, "logits": f"{name}.logits.npy", "files": {}}
        for opset in opsets:
            for mode in MODES:
                fname = f"{name}-opset{opset}-{mode}.onnx"
                path = os.path.join(args.out, fname)
                try:
                    export(model, path, opset, mode)
                    proto = check(path)
                except Exception as e:  # report and carry on with the other exports
                    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                    failures.append((fname, f"{type(e).__name__}: {msg}"))
                    print(f"  {fname}: FAILED: {type(e).__name__}: {msg}")
                    if os.path.exists(path):
                        os.remove(path)
                    continue
                ops = op_counts(proto)
                size = os.path.getsize(path)
                entry["files"][fname] = {"opset": opset, "mode": mode, "bytes": size,
                                         "sha256": sha256(path), "ops": ops}
                print(f"  {fname}: {size} bytes, {sum(ops.values())} nodes: "
                      + " ".join(f"{k}x{v}" for k, v in ops.items()))
        manifest["models"][name] = entry

    if args.fixtures:
        os.makedirs(args.fixtures, exist_ok=True)
        model = build("smallnet", args.seed + list(MODELS).index("smallnet"), calib)
        for mode in MODES:
            path = os.path.join(args.fixtures, f"smallnet-opset13-{mode}.onnx")
            export(model, path, 13, mode)
            check(path)
            print(f"fixture {path}: {os.path.getsize(path)} bytes")
        with torch.no_grad():
            logits = model(torch.from_numpy(images[:8])).numpy().astype(np.float32)
        path = os.path.join(args.fixtures, "smallnet_io.npz")
        write_npz(path, {"input": images[:8], "labels": labels[:8], "logits": logits})
        print(f"fixture {path}: {os.path.getsize(path)} bytes")

    with open(manifest_path, "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")
    if failures:
        print(f"onnx-corpus: {len(failures)} export(s) failed:", file=sys.stderr)
        for fname, msg in failures:
            print(f"  {fname}: {msg}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
