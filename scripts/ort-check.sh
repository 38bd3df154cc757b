#!/usr/bin/env bash
# Run a checkpoint's model.onnx in ONNX Runtime on the checkpoint's test images and
# compare it with faultline: the share of images with the same top-1 class, ONNX
# Runtime's accuracy and its difference with faultline's, and the largest logit
# difference.
#
# Usage: scripts/ort-check.sh CHECKPOINT [LIMIT] [THREADS]
#   LIMIT    first N test images (default 0: all)
#   THREADS  libtorch and ONNX Runtime threads (default 1)
# Environment: FAULTLINE (default bin/faultline), KEEP=DIR keeps the inputs and
# both runtimes' logits (.npy) in DIR instead of a temporary directory.
#
# Needs ONNX Runtime (onnxruntime-node, installed by `scripts/setup.sh --test` or
# `cd scripts && npm ci --ignore-scripts`) and Node.js. The checkpoint's images are
# written as the model reads them (test --save-inputs), run by scripts/ort-run.js,
# and compared by test --compare-logits, whose line (or JSON with JSON=1) this
# prints.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ckpt=${1:?usage: scripts/ort-check.sh CHECKPOINT [LIMIT] [THREADS]}
limit=${2:-0}
threads=${3:-1}
fl=${FAULTLINE:-$here/../bin/faultline}

if [ ! -f "$ckpt/model.onnx" ]; then
  echo "ort-check: $ckpt/model.onnx does not exist (a checkpoint written by train, import or harden has one)" >&2
  exit 1
fi
if [ ! -d "$here/node_modules/onnxruntime-node" ]; then
  echo "ort-check: ONNX Runtime is not installed: run scripts/setup.sh --test (or cd scripts && npm ci --ignore-scripts)" >&2
  exit 1
fi
if [ -n "${KEEP:-}" ]; then
  work=$KEEP
  mkdir -p "$work"
else
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
fi

"$fl" test --checkpoint "$ckpt" --limit "$limit" --threads "$threads" -q --save-inputs "$work/inputs.npy" --save-logits "$work/faultline.npy" >/dev/null
node "$here/ort-run.js" --model "$ckpt/model.onnx" --input "$work/inputs.npy" --out "$work/onnxruntime.npy" --threads "$threads"
json=()
if [ -n "${JSON:-}" ]; then
  json=(--json)
fi
"$fl" test --checkpoint "$ckpt" --limit "$limit" --threads "$threads" -q --compare-logits "$work/onnxruntime.npy" "${json[@]}"
