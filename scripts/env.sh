# Sourced by Ember's scripts: makes LibTorch (burn-tch) buildable and runnable.
#
# LibTorch comes from PyPI's torch wheel, pinned to 2.11.0 (tch 0.22 expects 2.9.0; 2.11.0
# compiles and runs with the version check bypassed). Installing it is idempotent. A different
# torch version breaks the link: after any torch change run `cargo clean -p torch-sys`.
set -euo pipefail
EMBER_TORCH_VERSION=2.11.0
PYTHON=${PYTHON:-python3}

torch_version() { "$PYTHON" -W ignore -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null || true; }

if [ "$(torch_version)" != "$EMBER_TORCH_VERSION" ]; then
    echo "ember: installing torch==$EMBER_TORCH_VERSION from PyPI (LibTorch for the tch backend; ~4.6 GB)" >&2
    "$PYTHON" -m pip install --quiet --disable-pip-version-check "torch==$EMBER_TORCH_VERSION" >&2
fi
TORCH_LIB="$("$PYTHON" -W ignore -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
export LIBTORCH_USE_PYTORCH=1 LIBTORCH_BYPASS_VERSION_CHECK=1
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# Every script builds the same feature set, so cargo reuses one set of artefacts.
EMBER_FEATURES="codec/tch,train/tch"
export EMBER_FEATURES
