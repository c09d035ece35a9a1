#!/usr/bin/env bash
# The cross-backend determinism check with the wgpu backend added (not part of CI: building
# burn-wgpu doubles the build time). On a machine without a GPU, wgpu runs on Mesa's lavapipe
# (Debian's mesa-vulkan-drivers, installed here if missing). Streams encoded on each of tch,
# ndarray and wgpu must decode to identical latents on every other.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
if ! ls /usr/share/vulkan/icd.d/*.json >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq mesa-vulkan-drivers >&2
fi
cargo test --release -p codec --features codec/tch,codec/wgpu --test suite \
    -- determinism::streams_decode_identically --nocapture
