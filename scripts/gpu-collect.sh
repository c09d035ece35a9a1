#!/usr/bin/env bash
# Takes what scripts/gpu-train.sh returned (the `files_at` folder of the device call) back into
# the repository: keeps the model, log and bench table under runs/, and hands the model to
# scripts/decide.sh, which installs it only if it beats the shipped model on the held-out
# validation set (then reports Kodak and adds the card's history row). See train/GPU.md.
#   bash scripts/gpu-collect.sh FILES_AT      # HARDWARE="1x H100" names the GPU in the row
set -euo pipefail
src=${1:?usage: scripts/gpu-collect.sh FILES_AT}
cd "$(dirname "$0")/.."
source scripts/env.sh
model=$src/ember-mrc-v1.safetensors
[ -f "$model" ] || { echo "ember: $model not found" >&2; exit 1; }
keep=runs/gpu-$(date -u +%Y%m%d-%H%M%S)
mkdir -p "$keep"
cp "$src"/* "$keep"/
mv "$keep/ember-mrc-v1.safetensors" "$keep/model.safetensors"
python3 - "$keep/state.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"GPU run: {s['step']} steps, {s['images']} images of {s['config']['crop']}², "
      f"{s['seconds'] / 60:.1f} min")
PY
cat "$keep/bench.md"
HARDWARE=${HARDWARE:-GPU machine, tch-cuda} bash scripts/decide.sh "$keep"
