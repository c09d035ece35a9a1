#!/usr/bin/env bash
# Prepares the folder gpu/ (ignored by git) for a training call on the GPU machine; see
# train/GPU.md. It holds ember-train built here against pip's torch 2.11.0 (stripped and
# xz-compressed: 9 MB -> 2 MB) and the training set packed as small JPEGs (~40 MB), because
# ../shared does not travel and a call carries at most 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo build --release --quiet -p train --features "$EMBER_FEATURES"
mkdir -p gpu
strip -o gpu/ember-train.tmp "${CARGO_TARGET_DIR:-target}"/release/ember-train
xz -T0 -6 -c gpu/ember-train.tmp > gpu/ember-train.xz.tmp
mv gpu/ember-train.xz.tmp gpu/ember-train.xz
rm gpu/ember-train.tmp
if [ ! -d gpu/train-pack ]; then
    "${CARGO_TARGET_DIR:-target}"/release/ember-train pack "${DATA:-../shared/datasets/train}" -o gpu/train-pack.tmp
    mv gpu/train-pack.tmp gpu/train-pack
fi
tree=$(git ls-files -z | xargs -0 du -cb | tail -n 1 | cut -f1)
carried=$(du -sb gpu | cut -f1)
total=$((tree + carried))
echo "travels: $((total / 1048576)) MiB of 64 (repository $((tree / 1048576)), gpu/ $((carried / 1048576)))"
if [ "$total" -ge $((64 * 1048576)) ]; then
    echo "ember: too much to carry; lower ember-train pack's --jpeg-quality" >&2
    exit 1
fi
