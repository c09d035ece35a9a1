#!/usr/bin/env bash
# Encode and decode one image with the shipped model, doing any set-up needed first.
# Usage: scripts/demo.sh [IMAGE] [QUALITY]   (default: Kodak's kodim23 if ../shared is present)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
image=${1:-../shared/datasets/kodak/kodim23.png}
quality=${2:-4}
if [ ! -f "$image" ]; then
    echo "ember: $image not found; using the test picture testdata/golden/rgb-130x70-q8.png" >&2
    image=testdata/golden/rgb-130x70-q8.png
fi
cargo build --release --quiet --workspace --features "$EMBER_FEATURES"
out=${TMPDIR:-/tmp}/ember-demo
mkdir -p "$out"
"${CARGO_TARGET_DIR:-target}"/release/ember encode "$image" -o "$out/demo.ember" --quality "$quality"
"${CARGO_TARGET_DIR:-target}"/release/ember decode "$out/demo.ember" -o "$out/demo.png"
"${CARGO_TARGET_DIR:-target}"/release/ember info "$out/demo.ember"
echo "reconstruction: $out/demo.png"
