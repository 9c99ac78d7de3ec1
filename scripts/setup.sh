#!/usr/bin/env bash
# Installs what emsim needs on a fresh Debian/Ubuntu machine that has only Rust:
#   - libhdf5-dev + pkg-config (the HDF5 C library that hdf5-metno links);
#   - Mesa's Vulkan driver (lavapipe) when wgpu finds no Vulkan/Metal/DX12 adapter.
# Safe to run again: it installs nothing that is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
apt_install() {
    echo "setup: installing $*" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

if ! pkg-config --exists hdf5 2>/dev/null; then
    apt_install libhdf5-dev pkg-config
fi

# wgpu's GL probe complains without a runtime dir; give it one.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/xdg-runtime-$(id -u)}"
mkdir -p -m 700 "$XDG_RUNTIME_DIR"

cargo build --quiet --bin emsim
if ! target/debug/emsim devices --json 2>/dev/null | grep -Eq '"backend": "(vulkan|metal|dx12)"'; then
    apt_install mesa-vulkan-drivers libvulkan1
fi
target/debug/emsim devices 2>/dev/null | sed 's/^/setup: adapter: /' >&2 || true
