#!/usr/bin/env bash
# The test command (README): set up the machine, then run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/xdg-runtime-$(id -u)}"
mkdir -p -m 700 "$XDG_RUNTIME_DIR"
cargo test --all-targets "$@"
# the SLURM recipe on a one-node cluster started here (scripts/slurm/test.sh)
bash scripts/slurm/test.sh
# the Python package, built into a fresh virtual environment, and its tests (docs/python.md)
bash scripts/python-test.sh
# the API docs build without warnings (broken links, bad markup)
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --quiet
