#!/bin/bash
# Runs on the bare GPU machine, from the repository root, after prepare.sh (see there). Unpacks the
# Vulkan loader and the libraries, then runs the test binaries and/or the benchmarks, writing
# everything under $OUT (the device tool brings that folder back).
# Usage: bash .dev/run.sh [tests|bench|kernels|files|all] or a comma list such as tests,files
# (default all; each part takes minutes, so a session with little device time picks what it needs)
what=,${1:-all},
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/emsim-out}; mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
T0=$(date +%s); el() { echo "[t=$(( $(date +%s) - T0 ))s] $*"; }
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
# the binary finds assets/ through EMSIM_ASSETS; the test binaries read other files (docs/, the
# emsim binary) through the path they were built in, /work/main
export EMSIM_ASSETS=$PWD/assets
mkdir -p /work; [ -e /work/main ] || ln -s "$PWD" /work/main
mkdir -p /tmp/devlib /tmp/t && tar xJf .dev/lib.tar.xz -C /tmp/devlib
export LD_LIBRARY_PATH=/tmp/devlib XDG_RUNTIME_DIR=/tmp/xdg; mkdir -p -m 700 /tmp/xdg
E=/work/main/target/release/emsim
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv 2>/dev/null
$E devices | tee /tmp/dev.txt
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if ! grep -qi -E "nvidia|amd|radeon|intel" /tmp/dev.txt && [ -f "$icd" ]; then
    export VK_DRIVER_FILES=$icd
    el "no GPU adapter by default; retrying with VK_DRIVER_FILES=$VK_DRIVER_FILES"; $E devices
fi
$E devices --json >"$OUT/devices.json"
if [[ $what == *,tests,* || $what == *,all,* ]]; then
    tar xJf .dev/tests.tar.xz -C /tmp/t
    for t in /tmp/t/*; do
        timeout 120 "$t" >/tmp/o.txt 2>&1; rc=$?
        echo "$(basename "$t") rc=$rc $(grep -E '^test result' /tmp/o.txt)"
        grep -E "panicked|FAILED" -A4 /tmp/o.txt | head -12
    done | tee "$OUT/tests.log"
    el "tests done"
fi
if [[ $what == *,bench,* || $what == *,all,* ]]; then
    timeout 120 $E bench --quick --json >"$OUT/bench_quick.json"; el "quick rc $?"
    timeout 180 $E bench --json --gpu-only >"$OUT/bench_gpu_full.json"; el "full gpu rc $?"
    timeout 120 $E bench --quick --json --gpu-only --stages frames,count,net_infer --frames 2048 \
        --frame-batches 64,256,1024 --net-batches 4000,16384,65536 >"$OUT/bench_gpu_sweep.json"; el "sweep rc $?"
fi
if [[ $what == *,files,* || $what == *,all,* ]]; then
    # End to end on the machine's own disk: `emsim frames` to HDF5 with the defaults and counted
    # back, on the GPU path with every core encoding (the goal: 10,000 frames/s of 576x576 to
    # HDF5), then the command itself on 20,000 frames.
    timeout 240 $E bench --gpu-only --stages frames_file,count_file --frames 8192 --dir /tmp --json \
        >"$OUT/bench_gpu_files.json"; el "files rc $?"
    timeout 120 $E frames --frames 20000 --out /tmp/f20k.h5 --force -q --json >"$OUT/frames_20k.json"
    el "frames 20k rc $?"
    timeout 120 $E count /tmp/f20k.h5 --out /tmp/c20k.h5 --force -q --json >"$OUT/count_20k.json"
    el "count 20k rc $?"
fi
if [[ $what == *,kernels,* || $what == *,all,* ]]; then
    # Where the GPU time goes, kernel by kernel (timestamps around every pass), for the 87,000
    # frames/s work; f16 and f32 network records and u16-input counting side by side; frames in
    # GPU memory counted with and without the network (count_net_fused comes with count_net).
    timeout 150 $E bench --quick --gpu-only --kernel-times --stages frames,count,frames_count,count_resident,count_net_resident,count_net,net_infer \
        --frames 512 --json >"$OUT/bench_gpu_kernels.json"; el "kernel times rc $?"
    nvidia-smi --query-gpu=clocks.sm,clocks.max.sm --format=csv 2>/dev/null
fi
