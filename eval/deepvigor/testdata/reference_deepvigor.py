#!/usr/bin/env python3
"""Test oracle: faultline's own PyTorch re-implementation of what the DeepVigor+
reference code computes (its "full" weight and activation analyses), quirks included.

It is written from a description of what the reference code does (README, eval vf,
--semantics reference), not copied from it.  It exists so the Go `reference` semantics can
be checked value for value; it is NOT a model of true IEEE-754 fault behaviour (see `exact`
mode for that).

Network: faultline's LeNet-5 for 1x28x28 inputs, of any width (the layer sizes are read from
the weights), loaded from a .npz whose keys are PyTorch state_dict names.  Like the
reference, the model is never switched to eval() (it has no BatchNorm or Dropout, so this
does not change anything here).

Usage:
  reference_deepvigor.py --weights model.npz --images images.npy --out result.json
        [--layers conv1,conv2] [--analysis weights|activations|both]
        [--neurons '[["conv2", 17], ["conv1", 4000]]' | --neurons neurons.json]
        [--loss broadcast|per-image] [--threads 1]

images.npy: float32, shape [B,1,28,28] (or [B,28,28]), ALREADY normalized
((x/255 - mean)/std); all B images form the single analysis batch.

Output JSON:
  {"layers": [{"name": "conv1",
               "cvf_weights": [VF of filter 0, ...],        # 1 - non-critical fraction
               "nvf": {"<flat neuron index c*H*W+y*W+x>": VF, ...},
               "forwards_weights": n, "forwards_activations": n}, ...],
   "meta": {...}}
Forward counts follow the reference: one batch forward = 1, including one golden forward per
layer and analysis.  With --neurons the activation count covers the listed neurons only.

--loss per-image replaces the reference's broadcast loss by the per-image margin loss; it
exists only to show that the two differ and is not the reference behaviour.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# ----------------------------------------------------------------------------------------
# Constants of the method
# ----------------------------------------------------------------------------------------
RESOLUTION = 10
CAP = float(2 ** RESOLUTION)  # the reference's stand-in for "infinity" (1024)

# The 43 thresholds: -2^10 .. -2^-10, 0, 2^-10 .. 2^10 (all exact in float32).
THRESHOLDS = ([-(2.0 ** p) for p in range(RESOLUTION, -RESOLUTION - 1, -1)] + [0.0] +
              [2.0 ** p for p in range(-RESOLUTION, RESOLUTION + 1)])
N_THR = len(THRESHOLDS)
THRESHOLDS_T = torch.tensor(THRESHOLDS, dtype=torch.float32)
ZERO_SLOT = 2 * RESOLUTION + 1  # index of the 0 threshold (21)


# ----------------------------------------------------------------------------------------
# The network
# ----------------------------------------------------------------------------------------
class LeNet5(nn.Module):
    """faultline's lenet5: two 5x5 convs with ReLU + 2x2 max-pool, then three dense layers.
    Its widths come from the weights' shapes (faultline's width multiplier)."""

    def __init__(self, shapes):
        super().__init__()
        c1, c2 = shapes["conv1.weight"], shapes["conv2.weight"]
        self.conv1 = nn.Conv2d(c1[1], c1[0], 5, padding=2)
        self.conv2 = nn.Conv2d(c2[1], c2[0], 5)
        f1, f2, f3 = shapes["fc1.weight"], shapes["fc2.weight"], shapes["fc3.weight"]
        self.fc1 = nn.Linear(f1[1], f1[0])
        self.fc2 = nn.Linear(f2[1], f2[0])
        self.fc3 = nn.Linear(f3[1], f3[0])

    def forward(self, x):
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        h = torch.flatten(h, 1)
        h = F.relu(self.fc1(h))
        h = F.relu(self.fc2(h))
        return self.fc3(h)


def load_model(path):
    arrays = np.load(path)
    net = LeNet5({k: arrays[k].shape for k in arrays.files})
    net.load_state_dict({k: torch.from_numpy(np.asarray(arrays[k], dtype=np.float32))
                         for k in arrays.files})
    return net


# ----------------------------------------------------------------------------------------
# Bit flips as the reference's arithmetic converter produces them
# ----------------------------------------------------------------------------------------
def converter_fields(x):
    """Split float32 values into (sign, exponent field, 23-bit mantissa) the way the
    reference's float->bits converter does, which is not always the IEEE encoding:
      * +-0 is encoded as the bits of +1.0;
      * the exponent is floor(log2|x|) computed in float32, so a value a hair below a power
        of two whose log2 rounds up gets an exponent one too large, and its "mantissa" is
        then read one bit position higher (it decodes to about twice the value);
      * magnitudes whose exponent is below -104 make the reference crash; we refuse them too.
    Everything after the log2 is done with exact integer bit operations."""
    mag = x.abs()
    mag = torch.where(mag == 0, torch.ones_like(mag), mag).contiguous()
    expo = torch.floor(torch.log2(mag))  # float32, as the reference computes it
    if bool((expo < -104).any()):
        raise ValueError("operand below 2^-104: the reference converter fails on it")
    sign = (x < 0).to(torch.int64)  # -0.0 counts as positive (the zero is re-encoded anyway)
    ieee = mag.view(torch.int32).to(torch.int64)
    significand = (ieee & 0x7FFFFF) | (1 << 23)  # 24 bits, leading one made explicit
    field = expo.to(torch.int64) + 127
    # how far the claimed exponent sits above the true one (0, or 1 in the log2 case);
    # the converter reads the 23 bits just below bit position `field`
    shift = field - (ieee >> 23)
    mant = ((significand >> shift.clamp(min=0)) << (-shift).clamp(min=0)) & 0x7FFFFF
    return sign, field, mant


def converter_decode(sign, field, mant):
    """Rebuild float32 values from fields the way the reference's bits->float does:
    field 255 gives +-inf whatever the mantissa (never NaN); field 0 gives
    2^-127 * (1.m) rounded once to float32 (no true subnormal encoding)."""
    regular = ((field.clamp(1, 254) << 23) | mant).to(torch.int32).view(torch.float32)
    # (2^23 + m) * 2^-150 is exact in float64; the cast to float32 is the single rounding
    tiny = ((mant | (1 << 23)).to(torch.float64) * 2.0 ** -150).to(torch.float32)
    mag = torch.where(field == 0, tiny, regular)
    mag = torch.where(field == 255, torch.full_like(mag, float("inf")), mag)
    return torch.where(sign == 1, -mag, mag)


def flip_errors(x):
    """eps[b] = (x with bit b flipped) - x for all 32 bits, float32, shape [32, *x.shape].
    Bit order follows the reference (sign, exponent MSB..LSB, mantissa MSB..LSB); only the
    pooled multiset matters downstream."""
    sign, field, mant = converter_fields(x)
    rows = []
    for b in range(32):
        s, e, m = sign, field, mant
        if b == 0:
            s = 1 - sign
        elif b <= 8:
            e = field ^ (1 << (8 - b))
        else:
            m = mant ^ (1 << (31 - b))
        rows.append(converter_decode(s, e, m) - x)  # float32 subtraction, as the reference
    return torch.stack(rows)


# ----------------------------------------------------------------------------------------
# Error distributions (Algorithm 1) and the value sub-spaces
# ----------------------------------------------------------------------------------------
def cdf_columns(pool, n_per_column):
    """pool: float32 [R, K] of error values, one pool per column.  Returns float32 [K, 43]
    with CDF[k, i] = #(value < t_i) / R, counts exact, divided in float32.
    NaN becomes 1e4 and +-inf becomes +-FLT_MAX first (torch.nan_to_num)."""
    pool = torch.nan_to_num(pool, nan=10000.0)
    n_cols = pool.shape[1]
    # number of thresholds <= v, i.e. v < t_i exactly for i >= that number
    slot = torch.bucketize(pool, THRESHOLDS_T, right=True)
    slot = slot + (N_THR + 1) * torch.arange(n_cols).unsqueeze(0)
    hist = torch.bincount(slot.flatten(), minlength=n_cols * (N_THR + 1))
    counts = hist.view(n_cols, N_THR + 1).cumsum(1)[:, :N_THR]
    return counts / n_per_column  # int64 / int -> float32 (true division)


def value_subspaces(cdf):
    """The four VVSS lists from a 43-entry CDF.  A nonzero threshold is kept when some error
    lies in [previous threshold, it), i.e. when the CDF steps there (previous CDF of the first
    entry taken as 0; the 0 threshold updates the previous value but is never kept).
    -1 and +1 go to the small lists.  1024 / -1024 are appended (at the end) if missing."""
    neg_big, neg_small, pos_small, pos_big = [], [], [], []
    prev = 0.0
    for t, c in zip(THRESHOLDS, cdf.tolist()):
        if c - prev != 0:
            if t < -1:
                neg_big.append(t)
            elif t < 0:
                neg_small.append(t)
            elif 0 < t <= 1:
                pos_small.append(t)
            elif t > 1:
                pos_big.append(t)
        prev = c
    if CAP not in pos_big:
        pos_big.append(CAP)
    if -CAP not in neg_big:
        neg_big.append(-CAP)
    as_t = lambda v: torch.tensor(v, dtype=torch.float32)
    return {"neg_big": as_t(neg_big), "neg_small": as_t(neg_small),
            "pos_small": as_t(pos_small), "pos_big": as_t(pos_big)}


# ----------------------------------------------------------------------------------------
# Fault injection, loss and probes
# ----------------------------------------------------------------------------------------
class Injector:
    """Runs the whole batch with a per-image delta added to one neuron or to every position of
    one channel of the target conv's output (after its bias, before ReLU)."""

    def __init__(self, net, layer, images, golden, loss_kind):
        self.net, self.layer, self.images, self.golden = net, layer, images, golden
        self.loss_kind = loss_kind
        self.forwards = 0
        # one-hot of the golden classes, shape [B, 1, C] as in the reference
        self.onehot = F.one_hot(golden, num_classes=net.fc3.out_features).unsqueeze(1)

    def _run(self, where, delta, want_grad):
        captured = {}

        def hook(_module, _inputs, out):
            hit = out.clone()
            if where[0] == "neuron":
                hit.view(hit.shape[0], -1)[:, where[1]] += delta
            else:
                hit[:, where[1]] += delta.view(-1, 1, 1)
            captured["out"] = hit
            return hit

        handle = self.layer.register_forward_hook(hook)
        try:
            if want_grad:
                logits = self.net(self.images)
            else:
                with torch.no_grad():
                    logits = self.net(self.images)
        finally:
            handle.remove()
        self.forwards += 1
        return logits, captured["out"]

    def loss(self, logits):
        batch = logits.shape[0]
        if self.loss_kind == "broadcast":
            # The reference's loss: the [B,1,C] one-hot times [B,C] logits broadcasts to
            # [B,B,C]; summing over the middle axis gives, for each image i, the column sums
            # of all logits masked to i's golden class.  Then sigmoid(that - every image's
            # logits), summed over everything, / B.  Same operations in the same order.
            masked = logits * self.onehot                     # [B, B, C]
            picked = torch.sum(masked, 1).unsqueeze(1)        # [B, 1, C]
            return torch.sum(torch.sigmoid(picked - logits)) / batch
        # per-image margin loss (NOT the reference): sigmoid(E_b[g_b] - E_b[j])
        own = torch.sum(logits * self.onehot.squeeze(1), 1).unsqueeze(1)  # [B, 1]
        return torch.sum(torch.sigmoid(own - logits)) / batch

    def probe(self, where, value):
        """Inject the same value in every image; return (still-correct mask, zero-gradient
        mask), the gradient taken at the post-injection conv output."""
        batch = self.golden.shape[0]
        delta = torch.full((batch,), value, dtype=torch.float32)
        logits, act = self._run(where, delta, want_grad=True)
        grad, = torch.autograd.grad(self.loss(logits), act)
        if where[0] == "neuron":
            g = grad.reshape(batch, -1)[:, where[1]]
        else:
            g = torch.sum(torch.sum(grad, 3), 2)[:, where[1]]  # last axis first, as reference
        correct = torch.max(logits.detach(), 1)[1] == self.golden
        return correct, g == 0

    def correct_with(self, where, delta):
        logits, _ = self._run(where, delta, want_grad=False)
        return torch.max(logits, 1)[1] == self.golden


def index_walk(inj, where, lists, groups, steps, step_if_wrong):
    """Fixed-length per-image walk.  Image b walks lists[groups[b]] (one or two lists), each
    index starting at len//2 of its list.  Each of `steps` rounds injects every image's current
    value, then moves misclassified images by step_if_wrong and correct ones by the opposite,
    clamped to the list.  Returns the values at the final indices (after the last move, so the
    final value itself may never have been tested)."""
    batch = groups.shape[0]
    idx = [torch.full((batch,), len(lst) // 2, dtype=torch.int64) for lst in lists]

    def current():
        # every list is indexed for every image (an empty one fails, as in the reference)
        picks = [lst[i] for lst, i in zip(lists, idx)]
        value = picks[0]
        for g in range(1, len(picks)):
            value = torch.where(groups == g, picks[g], value)
        return value

    for _ in range(steps):
        wrong = ~inj.correct_with(where, current())
        move = torch.where(wrong, step_if_wrong, -step_if_wrong)
        idx = [torch.clamp(i + move, 0, len(lst) - 1) for lst, i in zip(lists, idx)]
    return current()


def search_deltas(inj, where, vvss, activation_mode):
    """Per-image vulnerability values (delta-, delta+) for one target, the reference's way."""
    batch = inj.golden.shape[0]
    full = lambda v: torch.full((batch,), float(v), dtype=torch.float32)
    neg_big, neg_small = vvss["neg_big"], vvss["neg_small"]
    pos_big, pos_small = vvss["pos_big"], vvss["pos_small"]

    # ---- negative side -------------------------------------------------------------------
    # what images with a zero gradient get: NEG_BIG[0] in activation mode, -1024 for weights
    neg_fill = float(neg_big[0]) if activation_mode else -CAP
    correct, zero = inj.probe(where, -1.0)
    if bool(zero.all()):                           # gradient blocked for every image: skip
        d_neg = full(neg_fill)
    elif bool(correct.all()):                      # nobody flips at -1: walk NEG_BIG
        if len(neg_big) <= 1:
            d_neg = full(-CAP)
        else:
            d_neg = index_walk(inj, where, [neg_big], torch.zeros(batch, dtype=torch.int64),
                               len(neg_big) // 2, +1)
            d_neg[zero] = neg_fill
    else:
        # mixed: the reference sends images MISclassified at -1 into NEG_BIG and the correct
        # ones into NEG_SMALL (inverted w.r.t. the paper), for |NEG_SMALL|//2 rounds
        if len(neg_small) == 0:
            raise IndexError("empty NEG_SMALL in the mixed negative branch (reference crashes)")
        groups = (~correct).to(torch.int64)        # 1 -> NEG_BIG, 0 -> NEG_SMALL
        d_neg = index_walk(inj, where, [neg_small, neg_big], groups, len(neg_small) // 2, +1)
        d_neg[zero] = neg_fill

    # ---- positive side -------------------------------------------------------------------
    correct, zero = inj.probe(where, +1.0)
    if bool(zero.all()):
        d_pos = full(CAP)
    elif bool(correct.all()):
        if len(pos_big) <= 1:
            d_pos = full(CAP)
        else:
            d_pos = index_walk(inj, where, [pos_big], torch.zeros(batch, dtype=torch.int64),
                               len(pos_big) // 2, -1)
            d_pos[zero] = CAP
    else:
        # mixed: images correct at +1 walk POS_BIG, misclassified ones POS_SMALL
        if len(pos_small) == 0:
            raise IndexError("empty POS_SMALL in the mixed positive branch (reference crashes)")
        groups = correct.to(torch.int64)           # 1 -> POS_BIG, 0 -> POS_SMALL
        d_pos = index_walk(inj, where, [pos_small, pos_big], groups, len(pos_small) // 2, -1)
        d_pos[zero] = CAP
    return d_neg, d_pos


def vulnerability(cdf, d_neg, d_pos):
    """VF = 1 - mean_b [CDF(at delta+_b) - CDF(at delta-_b)], exponents floor(log2|delta|),
    the positive one capped at 10; the sum over images is float32."""
    p_neg = torch.floor(torch.log2(torch.abs(d_neg))).to(torch.int64)
    p_pos = torch.clamp(torch.floor(torch.log2(d_pos)).to(torch.int64), max=RESOLUTION)
    upper = cdf[ZERO_SLOT + RESOLUTION + 1 + p_pos]   # index 32 + p
    lower = cdf[RESOLUTION - p_neg]
    noncritical = torch.sum(upper - lower) / d_neg.shape[0]
    return 1.0 - float(noncritical)


# ----------------------------------------------------------------------------------------
# Per-layer analyses
# ----------------------------------------------------------------------------------------
def layer_operands(net, layer, images):
    """Zero-padded input of `layer` on the clean batch, and the output map size."""
    seen = {}
    handle = layer.register_forward_hook(lambda m, i, o: seen.update(x=i[0].detach(), y=o.shape))
    with torch.no_grad():
        net(images)
    handle.remove()
    p = layer.padding[0]
    x_pad = F.pad(seen["x"], (p, p, p, p))
    _, channels, h, w = seen["y"]
    if h != w:
        raise ValueError("the reference assumes square output maps")
    return x_pad, channels, h


def windows(x, layer):
    """[R, Cin*k*k, H*W]: receptive fields of every output position (row-major), R = leading
    rows of x.  Positions follow the reference: row = i // W, col = i % W, times the stride."""
    return F.unfold(x, kernel_size=layer.kernel_size[0], stride=layer.stride[0])


def golden_labels(net, images):
    with torch.no_grad():
        return torch.max(net(images), 1)[1]


def weights_analysis(net, layer, images, loss_kind, chunk=64):
    x_pad, channels, side = layer_operands(net, layer, images)
    positions = side * side
    fields = windows(x_pad, layer)                     # [B, Cin*k*k, P]
    inj = Injector(net, layer, images, golden_labels(net, images), loss_kind)
    inj.forwards += 1                                  # the golden forward
    cvf = []
    for c in range(channels):
        w = layer.weight.detach()[c].reshape(-1)       # [Cin*k*k]
        eps = flip_errors(w)                           # [32, Cin*k*k]
        # per-position CDFs of eps_w * x_pos, then their float32 running sum in position order
        total = torch.zeros(N_THR, dtype=torch.float32)
        for start in range(0, positions, chunk):
            xs = fields[:, :, start:start + chunk]     # [B, K, pc]
            pool = eps[:, None, :, None] * xs[None]    # [32, B, K, pc]
            pool = pool.reshape(-1, xs.shape[2])
            cdfs = cdf_columns(pool, pool.shape[0])
            for row in cdfs:
                total += row
        cdf = total / positions
        d_neg, d_pos = search_deltas(inj, ("channel", c), value_subspaces(cdf), False)
        cvf.append(vulnerability(cdf, d_neg, d_pos))
    return cvf, inj.forwards


def activations_analysis(net, layer, images, loss_kind, only=None, chunk=32):
    """NVF per neuron.  Every neuron is independent of the others (the only state shared in
    the reference is the layer's golden labels and clean padded input), so `only` (a set of
    flat indices) yields exactly the values the full analysis would give."""
    x_pad, channels, side = layer_operands(net, layer, images)
    positions = side * side
    batch, cin = x_pad.shape[0], x_pad.shape[1]
    # flip errors of every padded input operand, zeros (padding, ReLU zeros) included
    eps = flip_errors(x_pad)                                           # [32, B, Cin, Hp, Wp]
    eps_fields = windows(eps.reshape(32 * batch, cin, *x_pad.shape[2:]), layer)  # [32B, K, P]
    inj = Injector(net, layer, images, golden_labels(net, images), loss_kind)
    inj.forwards += 1
    nvf = {}
    for c in range(channels):
        wanted = [n for n in range(c * positions, (c + 1) * positions)
                  if only is None or n in only]
        if not wanted:
            continue
        w = layer.weight.detach()[c].reshape(1, -1, 1)                 # [1, K, 1]
        for start in range(0, len(wanted), chunk):
            group = wanted[start:start + chunk]
            cols = torch.tensor([n - c * positions for n in group])
            pool = eps_fields[:, :, cols] * w                          # eps_x * w
            cdfs = cdf_columns(pool.reshape(-1, len(group)), pool.shape[0] * pool.shape[1])
            for n, cdf in zip(group, cdfs):
                d_neg, d_pos = search_deltas(inj, ("neuron", n), value_subspaces(cdf), True)
                nvf[str(n)] = vulnerability(cdf, d_neg, d_pos)
    return nvf, inj.forwards


# ----------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------
def parse_neurons(arg, layers):
    text = open(arg).read() if os.path.exists(arg) else arg
    chosen = {name: set() for name in layers}
    for name, index in json.loads(text):
        if name not in chosen:
            raise SystemExit("--neurons names layer %r which is not in --layers" % name)
        chosen[name].add(int(index))
    return chosen


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", required=True, help="model .npz (state_dict names)")
    ap.add_argument("--images", required=True, help="normalized float32 images .npy")
    ap.add_argument("--out", required=True, help="result JSON path")
    ap.add_argument("--layers", default="conv1,conv2", help="comma-separated conv layers")
    ap.add_argument("--analysis", choices=["weights", "activations", "both"], default="both")
    ap.add_argument("--neurons", help="JSON list (or file) of [layer, flat index] to restrict "
                                      "the activation analysis to")
    ap.add_argument("--loss", choices=["broadcast", "per-image"], default="broadcast",
                    help="broadcast = the reference; per-image only for comparison")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)

    net = load_model(a.weights)
    images = torch.from_numpy(np.load(a.images).astype(np.float32, copy=False))
    if images.dim() == 3:
        images = images.unsqueeze(1)
    layers = [s for s in a.layers.split(",") if s]
    for name in layers:
        if not isinstance(getattr(net, name, None), nn.Conv2d):
            raise SystemExit("%r is not a conv layer of the model" % name)
    only = parse_neurons(a.neurons, layers) if a.neurons else None

    out = {"layers": [], "meta": {"batch": int(images.shape[0]), "loss": a.loss,
                                  "analysis": a.analysis, "seconds": {}}}
    for name in layers:
        layer = getattr(net, name)
        entry = {"name": name, "cvf_weights": [], "nvf": {},
                 "forwards_weights": 0, "forwards_activations": 0}
        if a.analysis in ("weights", "both"):
            t0 = time.time()
            entry["cvf_weights"], entry["forwards_weights"] = weights_analysis(
                net, layer, images, a.loss)
            out["meta"]["seconds"][name + ".weights"] = round(time.time() - t0, 3)
        if a.analysis in ("activations", "both"):
            t0 = time.time()
            entry["nvf"], entry["forwards_activations"] = activations_analysis(
                net, layer, images, a.loss, None if only is None else only[name])
            out["meta"]["seconds"][name + ".activations"] = round(time.time() - t0, 3)
        out["layers"].append(entry)
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
