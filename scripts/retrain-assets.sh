#!/bin/bash
# Remakes everything in assets/ that derives from the physics: the default event library and the
# eight shipped networks, with exactly the commands docs/formats.md, docs/network.md and
# docs/pairs.md give. Run it after a change to the event physics, then copy the results over
# (see the last lines it prints) and rerun the evaluations those documents quote.
# Takes about 70 minutes on a quiet 2-core machine (CPU path throughout).
# Usage: bash scripts/retrain-assets.sh [work-dir]     (default /tmp/emsim-retrain)
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-/tmp/emsim-retrain}
mkdir -p "$W"
E=${EMSIM:-$PWD/target/release/emsim}
[ -x "$E" ] || { echo "retrain-assets: no binary at $E (run: cargo build --release)" >&2; exit 1; }
log() { echo "[$(date -u +%H:%M:%S)] $*"; }
run() { local t0; t0=$(date +%s); log "$*"; "$@"; log "  took $(( $(date +%s) - t0 )) s"; }

run "$E" events --preset seed --energy-kev 300 --count 20000 --seed 7 --out "$W/default-300kev.h5"
run "$E" events --preset seed --energy-kev 300 --count 100000 --seed 7 --out "$W/lib300.h5"
"$E" events info "$W/lib300.h5" --json >"$W/lib300-info.json"

common=(--library "$W/lib300.h5" --val-samples 10240 --seed 1 --device cpu)
adamw=(--lr 2e-3 --lr-schedule cosine:0.05 --optimizer adamw --weight-decay 0.01)
train() { # name, then the preset's own flags
    local name=$1; shift
    run "$E" train --preset "$name" "${common[@]}" "$@" --quiet --out "$W/$name.safetensors"
}
train seed --epochs 10 --batch 128 --train-samples 64000 --lr 2e-3 --lr-schedule steps:7:0.1 --weight-decay 0
train fast --epochs 12 --batch 256 --train-samples 204800 "${adamw[@]}"
train fast-neighbours --epochs 12 --batch 256 --train-samples 204800 "${adamw[@]}"
train pair-seed --epochs 10 --batch 256 --train-samples 102400 "${adamw[@]}"
train pair-compact --epochs 20 --batch 256 --train-samples 102400 "${adamw[@]}"
train pair-split --epochs 16 --batch 256 --train-samples 204800 "${adamw[@]}"
train pair-loc --epochs 16 --batch 256 --train-samples 204800 "${adamw[@]}"
# The default network of counting: trained on the counter's own centres in default frames made
# with the new default library (frames seed 11; docs/network.md evaluates on seed 5).
run "$E" frames --library "$W/default-300kev.h5" --frames 400 --seed 11 --dtype f32 --compression none \
    --device cpu -q --out "$W/frames-train.h5"
run "$E" train --preset tiny --frames "$W/frames-train.h5" --crop-centres found --holdout 0.05 --epochs 24 \
    --batch 256 --train-samples 409600 --val-samples 10240 "${adamw[@]}" --seed 1 --device cpu --quiet \
    --out "$W/tiny.safetensors"

log "done; to ship: cp $W/default-300kev.h5 assets/events/ && for m in seed fast fast-neighbours tiny pair-seed pair-compact pair-split pair-loc; do cp $W/\$m.safetensors $W/\$m.csv assets/models/; done"
