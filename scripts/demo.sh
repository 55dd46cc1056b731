#!/usr/bin/env bash
# The README's demo: probe -> decode (two schedules) -> analyze -> report on a bundled checkpoint.
# Until the trained fixture models are committed, the bundled checkpoint is the tiny
# random-initialised LLaDA of fixtures/parity (real LLaDA layout; no tokenizer, so the prompts
# are pre-tokenized). Random weights show the mechanics, not the collapse.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${CARGO_TARGET_DIR:-target}/debug/collapse-probe"
model=fixtures/parity/llada-tiny
prompts=probes/prompts/parity-ids.jsonl
out=reports/demo

"$bin" probe --model "$model" --prompts "$prompts" --masks 64 --top-k 3 --batch-size 8 --out "$out/probe"
"$bin" decode --model "$model" --prompts "$prompts" --schedule "llada:steps=16,gen_length=16,block_length=16" --out "$out/decode/one-per-step"
"$bin" decode --model "$model" --prompts "$prompts" --schedule "fixed:gen_length=16,k=all" --out "$out/decode/parallel"
"$bin" analyze --records "$out/probe" --records "$out/decode/one-per-step" --records "$out/decode/parallel" --out "$out/analysis"
"$bin" report --analysis "$out/analysis" --out "$out/report"
echo "demo report: $out/report/report.html" >&2
