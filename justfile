# collapse-probe tasks. Every recipe that builds Rust first makes sure libtorch is set up.
# `just test` is exactly what CI runs (.ci/run).

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

# Build the collapse-probe binary.
build: setup
    cargo build -p collapse-probe

# Run every test (what CI runs).
test: setup
    cargo test --workspace --no-fail-fast

# Probe the bundled fixture model and write the records under reports/demo/.
demo: build
    scripts/demo.sh

# Benchmarks (figures are printed; see README "Performance").
bench: setup
    cargo bench --workspace

# Print a shell snippet that sets up the same environment for plain cargo: eval "$(just env)".
env:
    @echo 'export VIRTUAL_ENV="{{venv}}" PATH="{{venv}}/bin:$PATH" LIBTORCH_USE_PYTORCH=1'
