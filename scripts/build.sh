#!/usr/bin/env bash
# Builds the collapse-probe binary (`just build`). On a first run the libtorch venv
# (scripts/setup-libtorch.sh, about a minute of downloading and unpacking) is created while cargo
# compiles: only torch-sys' build script needs it, to ask Python where libtorch is, and the
# `python` it finds first on PATH (scripts/venv-wait/python) waits for the venv, then runs it.
# Usage: scripts/build.sh VENV_DIR [cargo build options]
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:?usage: build.sh VENV_DIR}
shift
status=$(mktemp -d)
trap 'rm -rf "$status"' EXIT
(
  if scripts/setup-libtorch.sh "$venv"; then rc=0; else rc=$?; fi
  echo "$rc" > "$status/rc.tmp" && mv "$status/rc.tmp" "$status/rc"
) &
setup=$!
if PATH="$PWD/scripts/venv-wait:$PATH" CP_VENV_STATUS="$status" CP_VENV="$venv" \
  cargo build -p collapse-probe "$@"; then
  built=0
else
  built=$?
fi
wait "$setup" || true
rc=$(cat "$status/rc" 2>/dev/null || echo 2)
# A failed venv is the cause to report (cargo then fails at torch-sys), not the build.
if [ "$rc" != 0 ]; then exit "$rc"; fi
exit "$built"
