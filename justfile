# collapse-probe tasks. Every recipe that builds Rust first makes sure libtorch is set up.
# `just test` is exactly what CI runs (.ci/run): a green local run means a green CI.

set shell := ["bash", "-euo", "pipefail", "-c"]

cache := env_var_or_default("XDG_CACHE_HOME", home_directory() / ".cache") / "collapse-probe"
venv := env_var_or_default("COLLAPSE_PROBE_VENV", cache / "torch-2.13.0")

# tch's build script finds libtorch through the venv's python (LIBTORCH_USE_PYTORCH).
export VIRTUAL_ENV := venv
export PATH := venv / "bin" + ":" + env_var("PATH")
export LIBTORCH_USE_PYTORCH := "1"

# List the recipes.
default:
    @just --list

# Create the libtorch venv (once; about 5 GB under ~/.cache/collapse-probe).
setup:
    @scripts/setup-libtorch.sh "{{venv}}"

# Build the collapse-probe binary; on a first run the libtorch venv is created while cargo
# compiles the crates that do not need it (scripts/build.sh).
build:
    @scripts/build.sh "{{venv}}"

# Every check CI runs (.ci/run calls this): formatting, clippy, the tests with the browser
# test required (Chromium is installed when missing, or the command to install it is printed),
# the custom-schedule example (built by cargo test), the Python tests (the recorder's, and polars
# reading a sharded run; with the venv's Python, into which polars is installed when missing,
# against the binary cargo test built), and the fixture specs against their baselines.
test: setup
    scripts/require-chromium.sh
    cargo fmt --all --check
    cargo clippy --workspace --all-targets --quiet -- -D warnings
    COLLAPSE_PROBE_REQUIRE_CHROMIUM=1 cargo test --workspace --no-fail-fast
    "${CARGO_TARGET_DIR:-target}/debug/examples/custom_schedule" > /dev/null
    # polars reads a sharded run's Parquet folders as one dataset (test_shard_dataset.py).
    python -c "import polars" 2>/dev/null || python -m pip install --quiet --progress-bar off polars
    COLLAPSE_PROBE="${CARGO_TARGET_DIR:-target}/debug/collapse-probe" PYTHONDONTWRITEBYTECODE=1 \
        python -m unittest discover -s python/tests -t python
    just gate

# Probe -> decode -> analyze -> report on the bundled checkpoint, under reports/demo/.
demo: build
    scripts/demo.sh

# Dog-food the CI gate: run the fixture specs and check them against their committed baselines
# (exit 1 on a regression). Run folders go to runs/, JUnit reports to runs/<name>.junit.xml.
gate: build
    #!/usr/bin/env bash
    set -euo pipefail
    bin="${CARGO_TARGET_DIR:-target}/debug/collapse-probe"
    status=0
    for name in toy-trap text-llada text-llada-chat text-llada-samplers imported-sampler; do
        "$bin" run "probes/$name.toml" --out "runs/$name" --quiet
        "$bin" check --run "runs/$name" --baseline "probes/baselines/$name.toml" \
            --junit "runs/$name.junit.xml" || status=$?
    done
    exit $status

# Benchmarks (figures are printed; see docs/performance.md).
bench: setup
    cargo bench --workspace --profile dev

# Print a shell snippet that sets up the same environment for plain cargo: eval "$(just env)".
env:
    @echo 'export VIRTUAL_ENV="{{venv}}" PATH="{{venv}}/bin:$PATH" LIBTORCH_USE_PYTORCH=1'

# Rebuild the fixture models from scratch (fixtures/README.md): installs Debian's bible-kjv when missing.
fixtures: setup
    #!/usr/bin/env bash
    set -euo pipefail
    if ! command -v bible >/dev/null; then
        echo "bible-kjv is not installed; installing it with apt-get" >&2
        if ! { { apt-get update -qq && apt-get install -y bible-kjv; } || sudo -n apt-get install -y bible-kjv; } >&2; then
            echo "error: could not install the Debian package bible-kjv (the King James Bible text the text fixture is trained on); install it (apt-get install bible-kjv) and rerun 'just fixtures'" >&2
            exit 2
        fi
    fi
    mkdir -p target/fixtures
    bible -f "Gen1:1-Rev22:21" > target/fixtures/kjv.txt
    if ! echo "cd45f0c9cedab8e4439bd6486c8952c77cc8b0ecc5d1f6ae3513f2039f47229d  target/fixtures/kjv.txt" | sha256sum -c --quiet; then
        echo "warning: the corpus differs from the one the committed fixture was trained on (bible-kjv 4.38); the rebuilt weights will differ" >&2
    fi
    # The dev profile optimises every dependency (libtorch does the work) and is shared with `just test`.
    cargo build -p cp-fixtures --bin build-fixtures
    target/debug/build-fixtures toy-trap --out fixtures/toy-trap
    target/debug/build-fixtures toy-report --model fixtures/toy-trap
    target/debug/build-fixtures text-llada --corpus target/fixtures/kjv.txt --out fixtures/text-llada
    # The reference corpus of probes/text-llada.toml: the training verses without their references,
    # one per line, a blank line between books (so n-grams never cross a book, as in training).
    awk 'NF { ref=$1; body=substr($0, length(ref)+2); head=substr(ref,1,index(ref,":")-1); book=head; sub(/[0-9]+$/,"",book); if (n++ && book!=prev) print ""; prev=book; gsub(/^[ \t]+|[ \t]+$/,"",body); print body }' target/fixtures/kjv.txt > fixtures/text-llada/corpus.txt
    target/debug/build-fixtures measure --model fixtures/text-llada --prompts probes/prompts/kjv.txt --masks 64
