#!/usr/bin/env bash
# One training leg, the one command that turns machine time into quality:
#   bash scripts/train-leg.sh MINUTES [extra `ember-train run` flags]
# Continues the shipped model (models/ember-mrc-v1.safetensors) for MINUTES of training on
# whatever it finds (tch-cuda where nvidia-smi sees a GPU, else tch on the CPU), with a
# learning-rate schedule sized so that its cosine decay ends inside them; exports the result
# and hands it to scripts/decide.sh, which installs it only if it beats the shipped model on the
# held-out validation set (then evaluates Kodak and adds a row to the card's history table).
# Everything runs at the lowest CPU priority, so other work on the machine goes first; the
# validation and Kodak evaluations after the training take about 15 and 10 minutes on 2 cores.
# Where other work shares the CPU, give the leg one core with OMP_NUM_THREADS=1: LibTorch's
# threads wait on each other at every operation, so a two-thread step with one core taken by
# something else ran 2.6 times slower than alone (measured here), far worse than one thread.
#
# RUN names the run folder (default runs/leg-DATE-TIME). Called again with the same RUN, an
# interrupted leg resumes from its last checkpoint (written every 10 minutes and on SIGINT or
# SIGTERM) with the schedule it started with. On the GPU machine use train/GPU.md's recipe,
# which carries a packed training set; this script needs ../shared.
set -euo pipefail
minutes=${1:?usage: scripts/train-leg.sh MINUTES [ember-train run flags]}
shift
cd "$(dirname "$0")/.."
renice -n 19 -p $$ >/dev/null
# glibc hands large freed blocks back to the system and maps fresh ones for the next step, so
# every step's tensors page-fault their memory in anew: with these two settings the freed
# memory is kept and reused. Measured on this 2-core Zen 3 (one thread, 4×256², the shipped
# model, two other trainers running, both orders): 11.3–11.7 s a step, and 12 s of system time
# in the whole benchmark, against 8.5–8.6 s and 1.5 s: a quarter less time per crop.
export MALLOC_MMAP_THRESHOLD_=17179869184 MALLOC_TRIM_THRESHOLD_=17179869184
source scripts/env.sh
cargo build --release --quiet --workspace --features "$EMBER_FEATURES"
bin=${CARGO_TARGET_DIR:-target}/release
run=${RUN:-runs/leg-$(date -u +%Y%m%d-%H%M)}
mkdir -p "$run"

if [ -f "$run/checkpoints/latest" ]; then
    echo "resuming $run" >&2
    "$bin/ember-train" run --run "$run" --resume --minutes "$minutes" "$@"
else
    # Measured settings per machine (train/GPU.md): 8 crops of 256² at a peak of 5e-5 on the
    # CPU, 16 at 2e-4 on a GPU.
    if nvidia-smi >/dev/null 2>&1; then
        backend=tch-cuda batch=16 lr=2e-4
    else
        backend=tch batch=8 lr=5e-5
    fi
    # The step of the model the leg starts from: its post-filter is a third of the work.
    s_per_step=$("$bin/ember-train" bench --backend "$backend" --batch "$batch" --crop 256 \
        --steps 3 --init models/ember-mrc-v1.safetensors | awk -F'|' 'NR == 3 { gsub(/ /, "", $6); print $6 }')
    # 90% of the minutes: loading the photos and the in-run validations take the rest.
    steps=$(python3 -c 'import sys; print(max(20, int(float(sys.argv[1]) * 54 / float(sys.argv[2]))))' \
        "$minutes" "$s_per_step")
    warmup=$((steps / 10 < 50 ? steps / 10 : 50))
    # The crops' seed comes from the weights the leg starts from: reproducible, and different
    # from leg to leg.
    seed=$((16#$(sha256sum models/ember-mrc-v1.safetensors | cut -c1-12)))
    echo "$run: $steps steps of $batch×256² on $backend ($s_per_step s/step measured), $warmup warm-up, cosine from $lr" >&2
    "$bin/ember-train" run --run "$run" --backend "$backend" --init models/ember-mrc-v1.safetensors \
        --batch "$batch" --crop 256 --lr "$lr" --warmup "$warmup" --steps "$steps" --seed "$seed" \
        --level-weights 1,1,1,1,2,2,2,2 --val-every 250 --minutes "$minutes" "$@"
fi
state=$run/checkpoints/$(cat "$run/checkpoints/latest")/state.json
# A leg stopped by a signal (SIGINT, SIGTERM: the trainer checkpoints and exits 0) before its
# schedule ended and before its minutes ran out is not over: it is not judged half-trained.
read -r step steps < <(python3 -c 'import json, sys; s = json.load(open(sys.argv[1])); print(s["step"], s["config"]["steps"])' "$state")
if [ "$step" -lt "$steps" ] && [ "$SECONDS" -lt $((${minutes%.*} * 60)) ]; then
    # The minutes the rest of the schedule needs, at the median pace of the last logged steps
    # (plus a tenth for loading and validation): given fewer, the leg is judged before its
    # learning rate has decayed.
    need=$(python3 - "$run/log.jsonl" "$step" "$steps" "$state" <<'PY'
import json, statistics, sys
log, step, steps, state = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
batch = json.load(open(state))["config"]["batch"]
paces = [r["img_s"] for r in map(json.loads, open(log)) if r.get("img_s")][-10:]
print(round((steps - step) * batch / statistics.median(paces) / 60 * 1.1) + 1 if paces else "MINUTES")
PY
)
    echo "$run stopped at step $step of $steps; continue it with: RUN=$run bash scripts/train-leg.sh $need" >&2
    exit 0
fi
"$bin/ember-train" export "$run" -o "$run/model.safetensors"
cp "$state" "$run/state.json"
bash scripts/decide.sh "$run"
