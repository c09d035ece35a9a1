#!/usr/bin/env bash
# Ember's whole test suite, as CI runs it: formatting, lints, and every test of every crate with
# the LibTorch and ndarray backends built (so cross-backend checks run).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
bash scripts/baselines.sh || echo "warning: could not install the classical codecs; their tests will skip" >&2
cargo fmt --all --check
cargo clippy --release --workspace --all-targets --features "$EMBER_FEATURES" -- -D warnings
cargo test --release --workspace --features "$EMBER_FEATURES"
