#!/usr/bin/env bash
# The README's demo: probe -> decode (two schedules) -> analyze -> report on a bundled model.
# It uses the trained KJV fixture (fixtures/text-llada) when present, else the tiny
# random-initialised LLaDA of fixtures/parity (real layout, pre-tokenized prompts; random
# weights show the mechanics, not the collapse).
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${CARGO_TARGET_DIR:-target}/debug/collapse-probe"
out=reports/demo
if [ -f fixtures/text-llada/model.safetensors ]; then
  model=fixtures/text-llada
  prompts=(--prompts probes/prompts/kjv.txt --chat-template none)
  gen=32
else
  model=fixtures/parity/llada-tiny
  prompts=(--prompts probes/prompts/parity-ids.jsonl)
  gen=16
fi

"$bin" probe --model "$model" "${prompts[@]}" --masks 64 --top-k 3 --batch-size 8 --out "$out/probe"
"$bin" decode --model "$model" "${prompts[@]}" --schedule "llada:steps=$gen,gen_length=$gen,block_length=$gen" --out "$out/decode/one-per-step"
"$bin" decode --model "$model" "${prompts[@]}" --schedule "fixed:gen_length=$gen,k=all" --out "$out/decode/parallel"
"$bin" analyze --records "$out/probe" --records "$out/decode/one-per-step" --records "$out/decode/parallel" --out "$out/analysis"
"$bin" report --analysis "$out/analysis" --out "$out/report"
echo "demo report: $out/report/report.html" >&2
