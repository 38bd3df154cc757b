#!/usr/bin/env bash
# One idempotent setup for faultline on Debian bookworm (run as root, or with sudo
# available): installs the Debian packages faultline needs (skipping what is
# present), then generates the adapted gotch into .gotch/ and go.work (skipped in
# seconds when up to date). Usage: scripts/setup.sh [--test]
#
# --test also installs what the tests use: Debian's python3-torch and python3-numpy
# (the PyTorch cross-checks), python3-torchvision and python3-onnx (the ONNX corpus,
# scripts/onnx-corpus.py, and onnx.checker), chromium (the report's browser test),
# Node.js and npm (only where `node` or `npm` is missing: a machine's own Node.js
# is kept), and ONNX Runtime for scripts/ort-run.js: `npm ci --ignore-scripts` in
# scripts/, from the versions pinned in scripts/package-lock.json, rerun only when
# scripts/node_modules is missing or older than the lock file. Prints nothing when
# there is nothing to do.
set -euo pipefail
cd "$(dirname "$0")/.."

test=0
case "${1:-}" in
  "") ;;
  --test) test=1 ;;
  *) echo "usage: scripts/setup.sh [--test]" >&2; exit 2 ;;
esac

pkgs=(libtorch-dev libopenblas0-pthread dataset-fashion-mnist g++)
if [ $test = 1 ]; then
  pkgs+=(python3-torch python3-numpy python3-torchvision python3-onnx chromium)
fi

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ $test = 1 ]; then
  # By command, not by package: a Node.js from elsewhere (which bundles its own npm
  # and conflicts with Debian's npm package) is used as it is.
  command -v node >/dev/null || missing+=(nodejs)
  command -v npm >/dev/null || missing+=(npm)
fi
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "setup: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
    sudo=sudo
  fi
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# ONNX Runtime (onnxruntime-node) for scripts/ort-run.js. --ignore-scripts: the
# package carries its Linux x64 CPU library, and its install script would download
# more. The stamp holds the hash of package.json and package-lock.json that the
# installed node_modules came from.
if [ $test = 1 ]; then
  stamp=scripts/node_modules/.faultline-lock.sha256
  want=$(cat scripts/package.json scripts/package-lock.json | sha256sum | cut -d' ' -f1)
  if [ ! -d scripts/node_modules/onnxruntime-node ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: npm ci --ignore-scripts in scripts/ (onnxruntime-node, pinned in scripts/package-lock.json)"
    rm -f "$stamp"
    if ! log=$(cd scripts && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error 2>&1); then
      echo "$log" >&2
      echo "setup: npm ci --ignore-scripts in scripts/ failed (it needs the npm registry); the ONNX Runtime tests need it" >&2
      exit 1
    fi
    echo "$want" >"$stamp"
  fi
fi

# The adapted gotch (see internal/gotchgen). GOWORK=off: the generator does not
# need gotch, and a stale go.work must not stop it from writing a new one.
GOWORK=off GOFLAGS=-mod=mod go run ./cmd/gotchgen -out .gotch -workspace .
