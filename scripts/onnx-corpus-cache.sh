#!/usr/bin/env bash
# Keep an ONNX test corpus (scripts/onnx-corpus.py) up to date in a cache directory,
# for `make test`. Usage: scripts/onnx-corpus-cache.sh [DIR] [OPSETS]
# (default .cache/onnx-corpus and 11,12,13,14,15,16,17).
#
# DIR/.stamp records what the corpus was built from: the sha256 of
# scripts/onnx-corpus.py, the opsets, and the Debian versions of python3-torch,
# python3-torchvision, python3-onnx and python3-numpy. The corpus is rebuilt (into
# DIR.tmp, then renamed, so an interrupted build leaves no half corpus) only when
# one of them changed; otherwise this prints nothing and takes well under a second.
# Needs what `scripts/setup.sh --test` installs. Building all seven opsets (70
# files) takes about 2 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=${1:-.cache/onnx-corpus}
opsets=${2:-11,12,13,14,15,16,17}
dir=${dir%/}

versions=$(dpkg-query -W -f='${Package}=${Version} ' python3-torch python3-torchvision python3-onnx python3-numpy 2>/dev/null || true)
stamp="onnx-corpus.py $(sha256sum scripts/onnx-corpus.py | cut -d' ' -f1); opsets $opsets; $versions"
if [ -f "$dir/manifest.json" ] && [ "$(cat "$dir/.stamp" 2>/dev/null)" = "$stamp" ]; then
  exit 0
fi

echo "onnx-corpus: building $dir (opsets $opsets; about 2 minutes)"
start=$SECONDS
tmp="$dir.tmp"
rm -rf "$tmp"
mkdir -p "$tmp"
if ! /usr/bin/python3 scripts/onnx-corpus.py --out "$tmp" --opsets "$opsets" >"$tmp/build.log" 2>&1; then
  tail -n 30 "$tmp/build.log" >&2
  echo "onnx-corpus: scripts/onnx-corpus.py failed (full log: $tmp/build.log); scripts/setup.sh --test installs what it needs" >&2
  exit 1
fi
printf '%s\n' "$stamp" >"$tmp/.stamp"
rm -rf "$dir"
mv "$tmp" "$dir"
echo "onnx-corpus: $(ls "$dir"/*.onnx | wc -l) files in $((SECONDS - start)) s"
