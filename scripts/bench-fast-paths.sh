#!/usr/bin/env bash
# What each CPU fast path of the decode engine saves, end to end: the decode_overhead bench on
# the 60M-parameter LLaDA-layout model (d_model 512, 8 layers, vocab 32000; 4 prompts of 32
# ids, 64 new tokens, 64 calls), for each fast path a schedule that takes it, run with every
# path on and with that path off (COLLAPSE_PROBE_CPU_FAST_PATHS), alternating, twice.
# Prints one line per run: path, setting, schedule, forward ms, loop ms.
#
#   scripts/bench-fast-paths.sh            (after `cargo bench --workspace --profile dev --no-run`)
#
# The paths that measured under 10 % (docs/performance.md, "CPU fast paths") were removed
# afterwards, and LLaDA's schedules moved onto the parts; the two that remain are listed.
set -euo pipefail
cd "$(dirname "$0")/.."
bench=$(ls -t "${CARGO_TARGET_DIR:-target}"/debug/deps/decode_overhead-* | grep -v '\.d$' | head -1)
export CP_BENCH_D_MODEL=512 CP_BENCH_LAYERS=8 CP_BENCH_VOCAB=32000 CP_BENCH_SAME_LENGTH=1
export CP_BENCH_PROMPTS=4 CP_BENCH_PROMPT_LEN=32 CP_BENCH_GEN=64
# Each entry: the path, the paths off in both runs, the schedule.
paths=(
  "inverse_cdf||dream:max_new_tokens=64,steps=64,alg=maskgit_plus,temperature=1"
  "dream_support||dream:max_new_tokens=64,steps=64,alg=entropy,top_k=50"
)
for round in 1 2; do
  for entry in "${paths[@]}"; do
    IFS='|' read -r path base spec <<< "$entry"
    for setting in on off; do
      if [ "$setting" = off ]; then off="$base${base:+,}$path"; else off="$base"; fi
      line=$(COLLAPSE_PROBE_CPU_FAST_PATHS="$off" CP_BENCH_SCHEDULES="$spec" "$bench" --bench | tail -1)
      echo "round $round  $path  $setting  $line"
    done
  done
done
