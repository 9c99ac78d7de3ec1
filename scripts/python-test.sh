#!/usr/bin/env bash
# Builds the Python package (`pip install .`, maturin + PyO3, python/) into a fresh virtual
# environment, target/py-venv, and runs its tests (python/tests) with pytest. A development build
# sharing target/ with the command's, so that it reuses what `cargo test` built; `pip install .`
# alone makes the release build users get. Installs Debian's python3-venv when the venv module is
# missing. Run by scripts/test.sh; usage: bash scripts/python-test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
py=${PYTHON:-python3}
if ! "$py" -m venv --help >/dev/null 2>&1 || ! "$py" -c "import ensurepip" >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    echo "python-test: installing python3-venv" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null
fi
venv=$repo/target/py-venv
rm -rf "$venv"
"$py" -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q "maturin>=1.5,<2" pytest h5py numpy
# stempy, for the check of `count(method="stempy")` against stempy itself: its 3.6.0 wheels exist
# for some Pythons only (3.11 among them); elsewhere pytest reports that check as skipped.
"$venv/bin/pip" install -q stempy==3.6.0 ||
    echo "python-test: no stempy 3.6.0 wheel for this Python: the check against stempy itself is skipped" >&2
PATH=$venv/bin:$PATH CARGO_TARGET_DIR=$repo/target MATURIN_PEP517_ARGS="--profile dev" \
    "$venv/bin/pip" install -q --no-build-isolation "$repo"
cargo build --quiet --bin emsim
cd "$venv"
EMSIM=$repo/target/debug/emsim "$venv/bin/python" -m pytest -q "$repo/python/tests" "$@"
