#!/usr/bin/env bash
# Takes what scripts/gpu-train.sh returned (the `files_at` folder of the device call) back into
# the repository: checks the model codes Kodak images, installs it as the shipped model, and
# keeps the log and bench table under runs/. See train/GPU.md.
#   bash scripts/gpu-collect.sh FILES_AT
set -euo pipefail
src=${1:?usage: scripts/gpu-collect.sh FILES_AT}
cd "$(dirname "$0")/.."
source scripts/env.sh
model=$src/ember-mrc-v1.safetensors
[ -f "$model" ] || { echo "ember: $model not found" >&2; exit 1; }
cargo build --release --quiet --workspace --features "$EMBER_FEATURES"
keep=runs/gpu-$(date -u +%Y%m%d-%H%M%S)
mkdir -p "$keep"
cp "$src"/* "$keep"/
# A quick real-bytes check on three Kodak images before the model replaces the shipped one.
kodak=${KODAK:-../shared/datasets/kodak}
if [ -d "$kodak" ]; then
    mkdir -p "$keep/check-images"
    for f in kodim01 kodim12 kodim23; do ln -sf "$(realpath "$kodak/$f.png")" "$keep/check-images/"; done
    "${CARGO_TARGET_DIR:-target}"/release/ember eval "$keep/check-images" --model "$model" --quality 1,4,8 -o "$keep/check"
fi
cp "$model" models/ember-mrc-v1.safetensors.tmp
mv models/ember-mrc-v1.safetensors.tmp models/ember-mrc-v1.safetensors
python3 - "$keep/state.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"GPU run: {s['step']} steps, {s['images']} images of {s['config']['crop']}², "
      f"{s['seconds'] / 60:.1f} min")
PY
cat "$keep/bench.md"
echo "installed models/ember-mrc-v1.safetensors; now run scripts/kodak-report.sh and update models/README.md"
