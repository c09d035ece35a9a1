#!/usr/bin/env bash
# Decides whether a trained model replaces the shipped one, on the validation set alone:
#   bash scripts/decide.sh RUN_FOLDER
# RUN_FOLDER holds the candidate as model.safetensors (scripts/train-leg.sh and
# scripts/gpu-collect.sh leave it there) and the state.json of the checkpoint it came from.
#
# The validation set is the 50 held-out photos of train/validation.txt, coded at full size at
# all eight qualities, real bytes. The candidate is installed only if its BD-rate (PSNR, cubic)
# against the shipped model there is negative. Kodak is the test set: it is evaluated after the
# install (scripts/kodak-report.sh, the README section) and never read before the decision.
# Either way RUN_FOLDER/DECISION.md says what was measured; an installed model also gets a row
# in the history table at the end of models/README.md and new golden streams of its encoder
# (testdata/shipped/).
#
# The shipped model's validation curve is kept in models/eval/validation/ with the SHA-256 of
# the file it belongs to, so each decision codes the candidate only (and a candidate's own curve is
# kept the same way in RUN_FOLDER/validation/, so deciding again codes nothing). DATA overrides the
# training-data folder (default ../shared/datasets/train), HARDWARE the history row's words
# for the machine, and KODAK_REPORT=0 skips the Kodak evaluation.
set -euo pipefail
run=${1:?usage: scripts/decide.sh RUN_FOLDER}
cd "$(dirname "$0")/.."
source scripts/env.sh
data=${DATA:-../shared/datasets/train}
candidate=$run/model.safetensors
shipped=models/ember-mrc-v1.safetensors
store=models/eval/validation
[ -f "$candidate" ] || { echo "ember: $candidate not found" >&2; exit 1; }
[ -f "$run/state.json" ] || { echo "ember: $run/state.json not found" >&2; exit 1; }
cargo build --release --quiet --workspace --features "$EMBER_FEATURES"
ember=${CARGO_TARGET_DIR:-target}/release/ember

# The held-out photos, linked into one folder (ember eval codes a folder).
set_dir=$(mktemp -d)
trap 'rm -rf "$set_dir"' EXIT
while read -r rel; do
    case "$rel" in '' | '#'*) continue ;; esac
    [ -f "$data/$rel" ] || { echo "ember: validation photo $data/$rel not found (set DATA)" >&2; exit 1; }
    mkdir -p "$set_dir/$(dirname "$rel")"
    ln -s "$(realpath "$data/$rel")" "$set_dir/$rel"
done < train/validation.txt

sha() { sha256sum "$1" | cut -d' ' -f1; }
mkdir -p "$store"
if [ "$(cat "$store/MODEL.sha256" 2>/dev/null)" != "$(sha "$shipped")" ]; then
    echo "coding the validation set with the shipped model (kept in $store) ..." >&2
    "$ember" eval "$set_dir" --model "$shipped" -o "$store" >/dev/null
    sha "$shipped" > "$store/MODEL.sha256"
fi
if [ ! -f "$store/webp.json" ]; then
    bash scripts/baselines.sh
    "$ember" eval "$set_dir" --codec webp -o "$store" >/dev/null
fi
# A candidate already coded (its curve is kept with the SHA-256 of the file it belongs to, as
# the shipped model's is) is not coded again: paired arms are judged first and installed after.
if [ "$(cat "$run/validation/MODEL.sha256" 2>/dev/null)" != "$(sha "$candidate")" ]; then
    echo "coding the validation set with $candidate ..." >&2
    rm -f "$run/validation/MODEL.sha256"
    "$ember" eval "$set_dir" --model "$candidate" -o "$run/validation" >/dev/null
    sha "$candidate" > "$run/validation/MODEL.sha256"
fi

# The first data row is the shipped model, the second WebP: cubic BD-rates in percent.
bd() { awk -F'|' -v r="$1" '/^\| / && !/anchor/ { n++; if (n == r) { gsub(/[ %+]/, "", $3); print $3 } }'; }
table=$("$ember" bdrate "$run/validation/ember-mrc-v1.json" --against "$store/ember-mrc-v1.json" "$store/webp.json")
vs_shipped=$(bd 1 <<< "$table")
vs_webp=$(bd 2 <<< "$table")
shipped_webp=$("$ember" bdrate "$store/ember-mrc-v1.json" --against "$store/webp.json" | bd 1)
# A BD-rate with its sign ("n/a" as it is).
signed() { python3 -c 'import sys; print(f"{float(sys.argv[1]):+.2f}%")' "$1" 2>/dev/null || echo "$1"; }
# The leg in words, its crops in 256² equivalents, and its minutes.
read -r crops minutes what < <(python3 - "$run/state.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
c = s["config"]
print(round(s["images"] * c["crop"] ** 2 / 65536), f"{s['seconds'] / 60:.0f}",
      f"{s['step']:,} steps of {c['batch']}×{c['crop']}², peak {c['lr']:.0e}".replace("e-0", "e-"))
PY
)
wins=$(python3 -c '
import sys
try:
    print(int(float(sys.argv[1]) < 0))
except ValueError:
    print(0)' "$vs_shipped")
{
    echo "# Decision on $candidate ($(date -u +%F))"
    echo
    echo "Validation set (train/validation.txt, $(find "$set_dir" -type l | wc -l) held-out photos, real bytes, all 8 qualities):"
    echo
    echo "$table"
    echo
    echo "- against the shipped model: $(signed "$vs_shipped") BD-rate (PSNR, cubic)"
    echo "- against WebP: candidate $(signed "$vs_webp"), shipped $(signed "$shipped_webp")"
    echo "- leg: $what, $crops crops of 256² (equivalent), $minutes min"
    if [ "$wins" = 1 ]; then echo "- installed as $shipped"; else echo "- not installed: kept here"; fi
} > "$run/DECISION.md"
cat "$run/DECISION.md"
[ "$wins" = 1 ] || exit 0

cp "$candidate" "$shipped.tmp"
mv "$shipped.tmp" "$shipped"
cp "$run/validation/ember-mrc-v1.json" "$run/validation/ember-mrc-v1.csv" "$store/"
sha "$shipped" > "$store/MODEL.sha256"
kodak_webp=n/a
if [ "${KODAK_REPORT:-1}" != 0 ]; then
    bash scripts/kodak-report.sh
    kodak_webp=$("$ember" bdrate models/eval/ember-mrc-v1.json --against models/eval/webp.json | bd 1)%
fi
# One row of the card's history table, which ends the card: cumulative crops carried on from
# the row above it.
hardware=${HARDWARE:-$(lscpu | sed -n 's/^Model name: *//p' | head -n 1), $(nproc) cores}
python3 - models/README.md "$run" "$(sha "$shipped")" "$hardware" "$minutes" "$what" "$crops" \
    "$vs_shipped" "$vs_webp" "$kodak_webp" <<'PY'
import datetime, sys
card, run, sha, hardware, minutes, what, crops, *bd = sys.argv[1:]
lines = open(card).read().rstrip("\n").split("\n")
if not lines[-1].startswith("|"):
    sys.exit(f"{card} does not end with its history table")
total = int(lines[-1].split("|")[2].strip().replace(",", "")) + int(crops)
# The fingerprint `ember info` shows: the SHA-256's first 8 bytes as a little-endian integer.
fingerprint = int.from_bytes(bytes.fromhex(sha[:16]), "little")
pct = lambda v: v if v.endswith("n/a") else f"{float(v.rstrip('%')):+.2f}%".replace("-", "−")
lines.append(
    f"| {datetime.date.today()} `{run.rstrip('/').split('/')[-1]}` (`{fingerprint:016x}`) | "
    f"{total:,} | {hardware} | {minutes} | {what} | {' | '.join(pct(v) for v in bd)} |"
)
open(card + ".tmp", "w").write("\n".join(lines) + "\n")
PY
mv models/README.md.tmp models/README.md
# The shipped encoder's golden streams (testdata/shipped/) belong to the shipped model.
EMBER_WRITE_GOLDEN=1 cargo test --release --quiet -p codec --features codec/tch \
    --test suite shipped:: >/dev/null
echo "installed; the card's history table and the golden streams are new: commit models/, testdata/shipped/ and README.md"
