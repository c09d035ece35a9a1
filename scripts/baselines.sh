#!/usr/bin/env bash
# Installs the classical codecs `ember eval --codec …` runs (Debian's packages) and the font the
# RD plots use. Idempotent: does nothing when every tool is already there.
set -euo pipefail
need=()
for pair in cjpeg:libjpeg-turbo-progs cwebp:webp avifenc:libavif-bin cjxl:libjxl-tools \
            ffmpeg:ffmpeg; do
    command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
if [ ${#need[@]} -gt 0 ]; then
    echo "ember: installing ${need[*]}" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >&2
fi
