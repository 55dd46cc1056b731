#!/usr/bin/env bash
# Index build throughput side by side with EleutherAI's tokengrams (`MemmapIndex.build`, a Rust
# suffix-array builder): the same 20 M tokens (the synthetic text-like corpus of
# crates/analysis/benches/index.rs, raw u16, every document ended by the id 50000 as in the
# corpora language models train on), whole processes, 2 threads, alternating, two rounds.
# collapse-probe is told that id ends documents (`--doc-separator`, so no n-gram crosses one);
# tokengrams indexes it as a token. tokengrams is installed from PyPI into a bench venv (not
# the libtorch one).
#
#   just build && scripts/bench-tokengrams.sh
#
# Prints one line per run: tool, round, seconds, million tokens per second. CP_BENCH_ROUNDS
# sets the number of rounds (2).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${COLLAPSE_PROBE_BENCH_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/collapse-probe/bench-venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q tokengrams numpy
bin="${CARGO_TARGET_DIR:-target}/debug/collapse-probe"
[ -x "$bin" ] || { echo "error: $bin is missing; run 'just build' first" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tokens="${CP_BENCH_TOKENS:-20000000}"
CP_BENCH_TOKENS="$tokens" CP_BENCH_DUMP="$work/tokens.bin" \
    cargo bench -q -p cp-analysis --profile dev --bench index
n=$(( $(stat -c %s "$work/tokens.bin") / 2 ))
# `index build` checks ids against a tokenizer's vocabulary: a word-level one of 2^16 ids.
python3 - "$work/tokenizer.json" <<'PY'
import json, sys
vocab = {f"t{i}": i for i in range(1 << 16)}
json.dump({"version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
           "normalizer": None, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": None,
           "decoder": None, "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "t0"}},
          open(sys.argv[1], "w"))
PY
export RAYON_NUM_THREADS=2
rate() { echo "scale=2; $n / $1 / 1000000" | bc; }
# Each run starts with the previous one's output flushed to disk: both write about 160 MB, and
# writing into a backlog of dirty pages slows a run by a varying amount.
for round in $(seq "${CP_BENCH_ROUNDS:-2}"); do
    rm -rf "$work/ours" "$work/theirs.idx"
    sync
    start=$(date +%s.%N)
    "$bin" index build --tokens "$work/tokens.bin" --token-dtype u16 --doc-separator 50000 --threads 2 \
        --tokenizer "$work/tokenizer.json" --out "$work/ours" --quiet
    secs=$(echo "$(date +%s.%N) - $start" | bc)
    echo "collapse-probe  round $round  ${secs} s  $(rate "$secs") M tokens/s"
    sync
    start=$(date +%s.%N)
    # The build call alone is timed too: importing tokengrams (it imports transformers) takes
    # a share of the whole process.
    build=$("$venv/bin/python" -c "
import sys, time, tokengrams
t = time.perf_counter()
tokengrams.MemmapIndex.build(sys.argv[1], sys.argv[2], vocab=2**16, verbose=False)
print(time.perf_counter() - t)" "$work/tokens.bin" "$work/theirs.idx" 2>/dev/null | tail -1)
    secs=$(echo "$(date +%s.%N) - $start" | bc)
    echo "tokengrams      round $round  ${secs} s  $(rate "$secs") M tokens/s  (build call alone: ${build} s, $(rate "$build") M tokens/s)"
done
