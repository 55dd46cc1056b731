#!/usr/bin/env bash
# The README's demo: the whole pipeline of probes/text-llada.toml on the bundled KJV fixture
# (index the training text -> probe 128 masks -> decode two schedules -> analyze -> sweep tokens
# per step -> report), then the CI gate against its committed baseline.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${CARGO_TARGET_DIR:-target}/debug/collapse-probe"
out=reports/demo
"$bin" run probes/text-llada.toml --out "$out"
"$bin" check --run "$out" --baseline probes/baselines/text-llada.toml
echo "demo report: $out/report/report.html" >&2
