#!/usr/bin/python3
"""Compare ONNX Runtime's logits on the ONNX corpus with PyTorch's reference logits.

Usage (after scripts/onnx-corpus.py --out DIR and `(cd scripts && npm ci --ignore-scripts)`):

  /usr/bin/python3 scripts/onnx-compare.py DIR [--files GLOB] [--tol 1e-4] [--min-agree 0.99]
      [--batch 100] [--threads 1] [--opt all|extended|basic|disabled]

For every .onnx file listed in DIR/manifest.json (optionally only those whose
name matches GLOB), runs scripts/ort-run.js on DIR/images.npy and compares its
logits with DIR/MODEL.logits.npy (PyTorch, eval mode): the maximum absolute
difference, the maximum difference relative to the largest |logit|, and the
top-1 agreement. Prints a Markdown table; exits 1 if any file fails to run,
differs by more than --tol (absolute), or agrees on fewer than --min-agree of the
top-1 classes. --opt is ORT's graph optimisation level (default all, which
itself fuses BatchNormalization into Conv; disabled runs the graph as exported).
Needs only numpy (and node with onnxruntime-node).
"""

import argparse
import fnmatch
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--files", default="*.onnx")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--min-agree", type=float, default=0.99)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--opt", default="all", choices=["all", "extended", "basic", "disabled"])
    args = ap.parse_args()

    with open(os.path.join(args.dir, "manifest.json")) as f:
        manifest = json.load(f)
    images = os.path.join(args.dir, manifest["images"]["file"])
    labels = np.load(os.path.join(args.dir, manifest["images"]["labels"]))

    bad = 0
    print("| file | bytes | max abs diff | max diff / max abs logit | top-1 agreement | ORT accuracy |")
    print("|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, m in manifest["models"].items():
            ref = np.load(os.path.join(args.dir, m["logits"]))
            for fname, info in sorted(m["files"].items(), key=lambda kv: (kv[1]["opset"], kv[1]["mode"])):
                if not fnmatch.fnmatch(fname, args.files):
                    continue
                out = os.path.join(tmp, "logits.npy")
                r = subprocess.run(["node", os.path.join(HERE, "ort-run.js"),
                                    "--model", os.path.join(args.dir, fname), "--input", images,
                                    "--out", out, "--batch", str(args.batch),
                                    "--threads", str(args.threads), "--opt", args.opt],
                                   capture_output=True, text=True)
                if r.returncode != 0:
                    bad += 1
                    print(f"| {fname} | {info['bytes']} | FAILED: {r.stderr.strip()} | | | |")
                    continue
                got = np.load(out)
                if got.shape != ref.shape:
                    bad += 1
                    print(f"| {fname} | {info['bytes']} | shape {got.shape} != {ref.shape} | | | |")
                    continue
                diff = float(np.abs(got.astype(np.float64) - ref).max())
                rel = diff / float(np.abs(ref).max())
                agree = float((got.argmax(1) == ref.argmax(1)).mean())
                acc = float((got.argmax(1) == labels).mean())
                flag = ""
                if not diff <= args.tol or agree < args.min_agree:
                    bad += 1
                    flag = " **FAIL**"
                print(f"| {fname} | {info['bytes']} | {diff:.3g}{flag} | {rel:.3g} | {agree:.3f} | {acc:.3f} |",
                      flush=True)
    if bad:
        print(f"onnx-compare: {bad} file(s) failed", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
