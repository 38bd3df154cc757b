#!/usr/bin/python3
"""Plain PyTorch twins of faultline's model zoo (model/zoo.go), for cross-checking.

Every module has exactly faultline's state_dict name and semantics, so a faultline
model.npz loads with load_state_dict(strict=True) and a torch.save'd state_dict of
these modules imports into faultline. Used by model/pytorch_test.go; run it with
Debian's /usr/bin/python3 (python3-torch, python3-numpy).

Commands (SPEC_JSON is a faultline Spec as JSON, e.g. from model.json's "spec"):

  logits ARCH SPEC_JSON NPZ INPUT_NPY OUT_NPY
      Build ARCH, load NPZ (numpy.savez of state_dict names, e.g. faultline's
      model.npz) strictly, and save the eval-mode logits on INPUT_NPY to OUT_NPY.

  savestate ARCH SPEC_JSON OUT_PT SEED [--npz OUT_NPZ] [--logits INPUT_NPY OUT_NPY]
        [--legacy OUT_PT] [--io OUT_NPZ] [--train-steps N]
      Build ARCH with torch.manual_seed(SEED), randomise the BatchNorm affine
      parameters, run N (default 3) training-mode forward passes on random input
      so the running statistics are non-trivial, and torch.save the state_dict to
      OUT_PT. Optionally also write it in the pre-1.6 non-zip format (--legacy),
      as an .npz (--npz), the eval-mode logits on INPUT_NPY (--logits), or a random
      input batch with its eval-mode logits as an .npz of "input" and "logits"
      (--io, for checked-in fixtures).

  names ARCH SPEC_JSON
      Print the state_dict names and shapes as JSON.

  accuracy CHECKPOINT_DIR [--data-dir DIR] [--split test|train] [--limit N]
      Rebuild a faultline checkpoint in PyTorch from its model.npz alone (the
      architecture and normalisation come from model.json), evaluate it on the
      IDX files of an MNIST-style data set (default: Debian's Fashion-MNIST), and
      print {"accuracy": ..., "images": ...} as JSON, to compare with
      `faultline test --checkpoint CHECKPOINT_DIR --json`.
"""

import argparse
import gzip
import json
import math
import os
import sys

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F


def scale(spec, c):
    """faultline's Spec.scale: math.Round (half away from zero), at least 1."""
    v = int(math.floor(c * spec["width_multiplier"] + 0.5))
    return max(v, 1)


def conv_out(h, k, stride, pad):
    return (h + 2 * pad - k) // stride + 1


class MLP(nn.Module):
    def __init__(self, spec):
        super().__init__()
        n = spec["in_channels"] * spec["height"] * spec["width"]
        sizes = [scale(spec, h) for h in spec["hidden"]] + [spec["classes"]]
        self.n = len(sizes)
        for i, out in enumerate(sizes):
            setattr(self, "fc%d" % (i + 1), nn.Linear(n, out))
            n = out

    def forward(self, x):
        x = torch.flatten(x, 1)
        for i in range(self.n):
            x = getattr(self, "fc%d" % (i + 1))(x)
            if i < self.n - 1:
                x = F.relu(x)
        return x


class LeNet5(nn.Module):
    def __init__(self, spec):
        super().__init__()
        h, w = spec["height"], spec["width"]
        # Go: pad = (32 - Height + 1) / 2 (integer division) for inputs under 32.
        pad = (32 - h + 1) // 2 if h < 32 else 0
        c1, c2 = scale(spec, 6), scale(spec, 16)
        self.conv1 = nn.Conv2d(spec["in_channels"], c1, 5, padding=pad)
        h, w = conv_out(h, 5, 1, pad) // 2, conv_out(w, 5, 1, pad) // 2
        self.conv2 = nn.Conv2d(c1, c2, 5)
        h, w = conv_out(h, 5, 1, 0) // 2, conv_out(w, 5, 1, 0) // 2
        self.fc1 = nn.Linear(c2 * h * w, scale(spec, 120))
        self.fc2 = nn.Linear(scale(spec, 120), scale(spec, 84))
        self.fc3 = nn.Linear(scale(spec, 84), spec["classes"])

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


VGG11 = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]


class VGG11Net(nn.Module):
    def __init__(self, spec):
        super().__init__()
        layers = []
        c = spec["in_channels"]
        small = spec["height"] < 32 or spec["width"] < 32
        for i, v in enumerate(VGG11):
            if v == "M":
                if i == len(VGG11) - 1 and small:
                    continue
                layers.append(nn.MaxPool2d(2))
                continue
            out = scale(spec, v)
            layers.append(nn.Conv2d(c, out, 3, padding=1, bias=True))
            if spec["batch_norm"]:
                layers.append(nn.BatchNorm2d(out))
            layers.append(nn.ReLU(inplace=True))
            c = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, spec["classes"])

    def forward(self, x):
        x = self.features(x)
        x = torch.flatten(self.pool(x), 1)
        return self.classifier(x)


class BasicBlock(nn.Module):
    def __init__(self, cin, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet20(nn.Module):
    def __init__(self, spec):
        super().__init__()
        c = scale(spec, 16)
        self.conv1 = nn.Conv2d(spec["in_channels"], c, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        for stage in (1, 2, 3):
            planes = scale(spec, 16 << (stage - 1))
            blocks = []
            for i in range(3):
                stride = 2 if stage > 1 and i == 0 else 1
                blocks.append(BasicBlock(c, planes, stride))
                c = planes
            setattr(self, "layer%d" % stage, nn.Sequential(*blocks))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, spec["classes"])

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = torch.flatten(self.pool(x), 1)
        return self.fc(x)


ARCHS = {"mlp": MLP, "lenet5": LeNet5, "vgg11": VGG11Net, "resnet20": ResNet20}


def build(arch, spec_json):
    spec = json.loads(spec_json)
    if spec["arch"] != arch:
        sys.exit("pytorch_zoo: arch %r but the spec says %r" % (arch, spec["arch"]))
    if arch not in ARCHS:
        sys.exit("pytorch_zoo: unknown arch %r" % arch)
    return ARCHS[arch](spec), spec


def eval_logits(model, input_npy, out_npy):
    x = torch.from_numpy(np.load(input_npy).astype(np.float32))
    model.eval()
    with torch.no_grad():
        y = model(x)
    np.save(out_npy, y.numpy().astype(np.float32))


def cmd_logits(a):
    model, _ = build(a.arch, a.spec)
    with np.load(a.npz) as z:
        sd = {k: torch.from_numpy(z[k]) for k in z.files}
    # strict=True: the names and the buffer set (num_batches_tracked too) must match.
    model.load_state_dict(sd, strict=True)
    eval_logits(model, a.input, a.out)


def cmd_savestate(a):
    torch.manual_seed(a.seed)
    model, spec = build(a.arch, a.spec)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    model.train()
    with torch.no_grad():
        for _ in range(a.train_steps):
            x = torch.randn(8, spec["in_channels"], spec["height"], spec["width"]) * 1.5 + 0.3
            model(x)
    sd = model.state_dict()
    torch.save(sd, a.out)
    if a.legacy:
        torch.save(sd, a.legacy, _use_new_zipfile_serialization=False)
    if a.npz:
        np.savez(a.npz, **{k: v.detach().cpu().numpy() for k, v in sd.items()})
    if a.logits:
        eval_logits(model, a.logits[0], a.logits[1])
    if a.io:
        x = torch.randn(4, spec["in_channels"], spec["height"], spec["width"])
        model.eval()
        with torch.no_grad():
            y = model(x)
        np.savez(a.io, input=x.numpy(), logits=y.numpy())


def cmd_names(a):
    model, _ = build(a.arch, a.spec)
    print(json.dumps([[k, list(v.shape)] for k, v in model.state_dict().items()]))


def read_idx(path, ndim):
    """Read an IDX file (raw or gzip) of unsigned bytes with ndim dimensions."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 + 4 * ndim or data[0:2] != b"\0\0" or data[2] != 8 or data[3] != ndim:
        sys.exit("pytorch_zoo: %s: not an IDX file of %d-d unsigned bytes" % (path, ndim))
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        sys.exit("pytorch_zoo: %s: %d bytes of data for dims %s" % (path, body.size, dims))
    return body.reshape(dims)


def find_idx(data_dir, stem):
    for name in (stem + ".gz", stem):
        p = os.path.join(data_dir, name)
        if os.path.exists(p):
            return p
    sys.exit("pytorch_zoo: %s: no %s[.gz]" % (data_dir, stem))


def cmd_accuracy(a):
    with open(os.path.join(a.checkpoint, "model.json")) as f:
        meta = json.load(f)
    spec = meta["spec"]
    model, _ = build(spec["arch"], json.dumps(spec))
    with np.load(os.path.join(a.checkpoint, "model.npz")) as z:
        sd = {k: torch.from_numpy(z[k]) for k in z.files}
    model.load_state_dict(sd, strict=True)
    model.eval()
    # A hardened checkpoint's range restriction: clamp each listed layer's output.
    clamps = (meta.get("extra") or {}).get("clamps") or {}
    modules = dict(model.named_modules())
    for name, b in clamps.items():
        lo, hi = float(b["min"]), float(b["max"])
        modules[name].register_forward_hook(lambda m, i, o, lo=lo, hi=hi: o.clamp(lo, hi))
    prefix = "t10k" if a.split == "test" else "train"
    images = read_idx(find_idx(a.data_dir, prefix + "-images-idx3-ubyte"), 3)
    labels = read_idx(find_idx(a.data_dir, prefix + "-labels-idx1-ubyte"), 1)
    if a.limit > 0:
        images, labels = images[:a.limit], labels[:a.limit]
    norm = meta.get("normalization") or {}
    mean, std = (norm.get("mean") or [0.0])[0], (norm.get("std") or [1.0])[0]
    # The same per-level table as faultline's datasets package: float64 arithmetic on
    # the float32 statistics, rounded once to float32.
    levels = np.arange(256, dtype=np.float64) / 255
    lut = ((levels - float(np.float32(mean))) / float(np.float32(std))).astype(np.float32)
    x = torch.from_numpy(lut[images].reshape(-1, 1, images.shape[1], images.shape[2]))
    correct = 0
    with torch.no_grad():
        for i in range(0, x.shape[0], 1000):
            pred = model(x[i:i + 1000]).argmax(dim=1).numpy()
            correct += int((pred == labels[i:i + 1000]).sum())
    print(json.dumps({"accuracy": correct / len(labels), "images": len(labels)}))


def main():
    torch.set_num_threads(1)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("logits")
    for n in ("arch", "spec", "npz", "input", "out"):
        s.add_argument(n)
    s.set_defaults(fn=cmd_logits)
    s = sub.add_parser("savestate")
    for n in ("arch", "spec", "out"):
        s.add_argument(n)
    s.add_argument("seed", type=int)
    s.add_argument("--npz")
    s.add_argument("--logits", nargs=2, metavar=("INPUT_NPY", "OUT_NPY"))
    s.add_argument("--io")
    s.add_argument("--train-steps", type=int, default=3)
    s.add_argument("--legacy")
    s.set_defaults(fn=cmd_savestate)
    s = sub.add_parser("names")
    s.add_argument("arch")
    s.add_argument("spec")
    s.set_defaults(fn=cmd_names)
    s = sub.add_parser("accuracy")
    s.add_argument("checkpoint")
    s.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    s.add_argument("--split", choices=("test", "train"), default="test")
    s.add_argument("--limit", type=int, default=0)
    s.set_defaults(fn=cmd_accuracy)
    a = p.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
