#!/usr/bin/env bash
# Times a new user's first hour: a fresh clone of this repository's HEAD with an empty cargo
# registry, no target/ and no libtorch venv, then `just demo` twice (cold, warm) and `just test`
# twice (right after the demo, warm). It downloads the crates and the PyTorch wheel again
# (about 5 GB) and takes 20 minutes or more on a 2-core machine.
# Usage: scripts/cold-start.sh [WORK_DIR]   (default: a new temporary folder; removed after)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d)}
mkdir -p "$work"
export CARGO_HOME="$work/cargo" XDG_CACHE_HOME="$work/cache"
export PATH="$HOME/.cargo/bin:$PATH"
export RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}"
unset CARGO_TARGET_DIR VIRTUAL_ENV
command -v just >/dev/null || { echo "error: install just first (cargo install just --locked)" >&2; exit 2; }
git clone -q "$repo" "$work/clone"
cd "$work/clone"
timed() {
  local name=$1 log=$2
  local start end
  start=$(date +%s.%N)
  if just "${name%% *}" >"$log" 2>&1; then rc=0; else rc=$?; fi
  end=$(date +%s.%N)
  printf '%-24s rc=%d %7.1f s (log: %s)\n' "$3" "$rc" "$(echo "$end - $start" | bc)" "$log"
}
timed demo "$work/demo-cold.log" "cold just demo"
timed demo "$work/demo-warm.log" "warm just demo"
timed demo "$work/demo-warm2.log" "warm just demo"
timed test "$work/test-after-demo.log" "just test after demo"
timed test "$work/test-warm.log" "warm just test"
if [ $# -eq 0 ]; then rm -rf "$work"; fi
