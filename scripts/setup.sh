#!/usr/bin/env bash
# One idempotent setup for faultline on Debian bookworm (run as root, or with sudo
# available): installs the Debian packages faultline needs (skipping what is
# present), then generates the adapted gotch into .gotch/ and go.work (skipped in
# seconds when up to date). Usage: scripts/setup.sh [--test]  (--test also installs
# the optional packages used by the tests: Debian's python3-torch for the PyTorch
# cross-checks, chromium for the report's browser test).
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(libtorch-dev libopenblas0-pthread dataset-fashion-mnist g++)
if [ "${1:-}" = "--test" ]; then
  pkgs+=(python3-torch python3-numpy chromium)
fi

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
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

# The adapted gotch (see internal/gotchgen). GOWORK=off: the generator does not
# need gotch, and a stale go.work must not stop it from writing a new one.
GOWORK=off GOFLAGS=-mod=mod go run ./cmd/gotchgen -out .gotch -workspace .
