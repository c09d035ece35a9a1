#!/usr/bin/env bash
# Coverage-guided fuzzing of everything that reads untrusted bytes, on the stable toolchain:
#   bash scripts/fuzz.sh MINUTES [TARGET...]
# Targets (fuzz/src/lib.rs says what each checks): container, decode (the whole decoder with
# the shipped model, small images), alpha, icc, image (PNG/JPEG/PNM input). MINUTES is shared
# equally among the targets named (default: all five), run one after another at the lowest
# CPU priority.
#
# How it runs without nightly: cargo-fuzz needs nightly only for its sanitizer flags. The
# coverage instrumentation libFuzzer feeds on is LLVM's SanitizerCoverage pass, which stable
# rustc runs with `-C passes=sancov-module` and its `-C llvm-args`; libfuzzer-sys builds
# libFuzzer itself from its bundled C++ source. Rust's own checks (bounds, overflow with debug
# assertions on) catch what AddressSanitizer would in C.
#
# Each target starts from its committed corpus (testdata/fuzz/TARGET/, plus the golden streams
# for container and decode); at the end the corpus is minimized (libFuzzer's -merge) back into
# testdata/fuzz/TARGET/, any crash is copied to testdata/fuzz/crashes/TARGET/ (which
# `cargo test -p fuzz` replays, with the corpus), and fuzz/REPORT.md gets this run's numbers:
# executions, executions per second, coverage (SanitizerCoverage edges and libFuzzer's
# features) and crashes. Exits 1 if any target crashed.
set -euo pipefail
minutes=${1:?usage: scripts/fuzz.sh MINUTES [container|decode|alpha|icc|image ...]}
shift
cd "$(dirname "$0")/.."
renice -n 19 -p $$ >/dev/null
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(container decode alpha icc image)

triple=$(rustc -vV | sed -n 's/^host: //p')
target_dir=${CARGO_TARGET_DIR:-target}/fuzz
# --target keeps RUSTFLAGS off build scripts and proc macros: only the fuzzed code is
# instrumented.
RUSTFLAGS="-C passes=sancov-module -C llvm-args=-sanitizer-coverage-level=4 \
-C llvm-args=-sanitizer-coverage-inline-8bit-counters -C llvm-args=-sanitizer-coverage-pc-table \
-C llvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -C debug-assertions \
-C overflow-checks -C codegen-units=16" \
    cargo build --release --quiet -p fuzz --features fuzz/libfuzzer --target "$triple" \
    --target-dir "$target_dir"
bin=$target_dir/$triple/release

# Longest input per target: streams and profiles of small images, and pictures up to a few
# kilobytes, so that executions go to structure rather than to bulk.
max_len() {
    case $1 in
        image) echo 16384 ;;
        *) echo 4096 ;;
    esac
}

seconds=$(python3 -c 'import sys; print(max(1, int(float(sys.argv[1]) * 60 / int(sys.argv[2]))))' \
    "$minutes" "${#targets[@]}")
work=$target_dir/work
rows=()
failed=0
total=0
for t in "${targets[@]}"; do
    corpus=testdata/fuzz/$t
    crashes=testdata/fuzz/crashes/$t
    rm -rf "$work/$t/artifacts"
    mkdir -p "$corpus" "$work/$t/corpus" "$work/$t/artifacts"
    seeds=("$corpus")
    case $t in container | decode) seeds+=(testdata/golden testdata/golden/v1 testdata/shipped) ;; esac
    echo "fuzzing $t for $seconds s ..." >&2
    log=$work/$t/log
    rc=0
    "$bin/$t" "$work/$t/corpus" "${seeds[@]}" -max_total_time="$seconds" -max_len="$(max_len "$t")" \
        -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$work/$t/artifacts/" \
        2> "$log" || rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2 || true)
    ft=$(grep -o 'ft: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2 || true)
    found=0
    # crash-, timeout-, oom- and leak- files are failures (slow-unit- files are not).
    for a in "$work/$t/artifacts"/{crash,timeout,oom,leak}-*; do
        [ -f "$a" ] || continue
        mkdir -p "$crashes"
        cp "$a" "$crashes/"
        found=$((found + 1))
    done
    if [ "$rc" -ne 0 ] || [ "$found" -gt 0 ]; then
        failed=1
        echo "$t crashed: see $log; the input is in $crashes/" >&2
        grep -m 5 -E 'panicked|ERROR|SUMMARY' "$log" >&2 || true
    fi
    # Minimize: keep the smallest set of inputs that covers what all of them did.
    merged=$work/$t/merged
    rm -rf "$merged" && mkdir -p "$merged"
    "$bin/$t" -merge=1 -max_len="$(max_len "$t")" -timeout=20 -rss_limit_mb=2048 \
        -artifact_prefix="$work/$t/artifacts/" "$merged" "$corpus" "$work/$t/corpus" \
        2> "$work/$t/merge.log" || true
    if [ -n "$(ls -A "$merged")" ]; then
        rm -rf "$corpus" && mv "$merged" "$corpus"
    fi
    files=$(find "$corpus" -type f | wc -l)
    rows+=("| $t | $seconds | ${runs:-?} | ${speed:-?} | ${cov:-?} | ${ft:-?} | $files | $found |")
    total=$((total + ${runs:-0}))
done

{
    echo "## $(date -u +%F) \`scripts/fuzz.sh $minutes ${targets[*]}\` on $(lscpu | sed -n 's/^Model name: *//p' | head -n 1) ($(git describe --always --dirty))"
    echo
    echo "| target | seconds | executions | per second | coverage (edges) | features | corpus files | crashes |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    printf '%s\n' "${rows[@]}"
    echo
    echo "$total executions in all."
    echo
} > "$work/report-section.md"
cat "$work/report-section.md"
# Newest run first, below the report's marker line.
report=fuzz/REPORT.md
if [ -f "$report" ]; then
    python3 - "$report" "$work/report-section.md" <<'PY'
import sys
report, section = sys.argv[1:]
text = open(report).read()
marker = "<!-- runs, newest first: scripts/fuzz.sh adds each below this line -->\n"
if marker not in text:
    sys.exit(f"{report} has no marker line; the run's numbers are in {section}")
head, tail = text.split(marker, 1)
open(report + ".tmp", "w").write(head + marker + "\n" + open(section).read() + tail.lstrip("\n"))
PY
    mv "$report.tmp" "$report"
fi
exit "$failed"
