#!/usr/bin/env bash
# Creates, once, the Python venv whose PyTorch wheel provides libtorch for tch.
# Usage: scripts/setup-libtorch.sh VENV_DIR
# Idempotent: an existing venv with the right torch is left alone.
set -euo pipefail
TORCH_VERSION=2.13.0
venv=${1:?usage: setup-libtorch.sh VENV_DIR}

have_torch() {
  [ -x "$venv/bin/python" ] &&
    "$venv/bin/python" -c "import sys, importlib.metadata as m; sys.exit(0 if m.version('torch').split('+')[0] == '$TORCH_VERSION' else 1)" 2>/dev/null
}

if have_torch; then
  echo "libtorch: using torch $TORCH_VERSION in $venv" >&2
  exit 0
fi

python=${PYTHON:-python3}
if ! command -v "$python" >/dev/null 2>&1; then
  echo "error: $python not found; install Python 3.9+ (for example: apt-get install python3 python3-venv) or set PYTHON" >&2
  exit 2
fi
if ! "$python" -c "import venv, ensurepip" >/dev/null 2>&1; then
  echo "error: $python has no venv/ensurepip module; install it (for example: apt-get install python3-venv)" >&2
  exit 2
fi

echo "libtorch: creating $venv with torch==$TORCH_VERSION from PyPI (about 5 GB, once)" >&2
mkdir -p "$(dirname "$venv")"
# An interrupted earlier attempt leaves a venv without torch: start it afresh.
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip >&2
"$venv/bin/python" -m pip install --no-cache-dir --progress-bar off "torch==$TORCH_VERSION" >&2
have_torch || { echo "error: torch $TORCH_VERSION did not import from $venv" >&2; exit 2; }
echo "libtorch: ready in $venv" >&2
