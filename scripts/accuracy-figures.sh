#!/bin/bash
# Re-measures the accuracy figures that docs/counting.md, docs/network.md, docs/pairs.md,
# docs/physics.md and README.md quote, with exactly the commands those documents give, the shipped
# models in assets/models and the shipped library in assets/events (or lib300.h5 where a document
# uses it). Run it after a change to the event physics, once the remade library and models
# (scripts/retrain-assets.sh) are in assets/, then copy the new figures from the files it lists at
# the end into the documents. Speed figures (docs/benchmarks.md) and the physics validation
# figures (cargo test) are not covered.
#
# Time on a quiet 2-core machine, CPU path (estimates; `eval isolated --events 2000 --device cpu`
# takes 0.1 s there):
#   lib300.h5 (100,000 events)                          ~10 s
#   docs/counting.md                                    ~30 s
#   docs/network.md                                     ~1.5 min
#   docs/pairs.md, eval pairs and eval dose             ~1.5 min
#   docs/pairs.md, training pair-reg (not shipped)      ~10 min
#   docs/physics.md                                     ~5 s
#   total                                               ~15 min
# Usage: bash scripts/accuracy-figures.sh [work-dir]     (default /tmp/emsim-figures)
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-/tmp/emsim-figures}
mkdir -p "$W"
E=${EMSIM:-$PWD/target/release/emsim}
[ -x "$E" ] || { echo "accuracy-figures: no binary at $E (run: cargo build --release)" >&2; exit 1; }
M=$PWD/assets/models
LIB=$PWD/assets/events/default-300kev.h5
log() { echo "[$(date -u +%H:%M:%S)] $*"; }
run() { local t0; t0=$(date +%s); log "$*"; "$@"; log "  took $(( $(date +%s) - t0 )) s"; }
OUTPUTS=()
# save FILE CMD...: runs CMD like `run`, its standard output also going to FILE.
save() {
    local out=$1 t0; shift; t0=$(date +%s)
    log "$* > $out"
    "$@" | tee "$out"
    log "  took $(( $(date +%s) - t0 )) s"
    OUTPUTS+=("$out")
}
# json FILE...: records JSON files written by --json (or a plots folder) for the final list.
json() { OUTPUTS+=("$@"); }
# frames, count, events and train refuse to overwrite their outputs: clear those of an earlier run.
fresh() { rm -rf -- "$@"; }

# The 300 keV library of docs/network.md and docs/pairs.md (the command of scripts/retrain-assets.sh).
fresh "$W/lib300.h5"
run "$E" events --preset seed --energy-kev 300 --count 100000 --seed 7 --out "$W/lib300.h5"

############################################################################ docs/counting.md

# docs/counting.md, "Default frames (576x576, 2927 +- 71 e-/frame, sigma 20 e-, 300 keV library,
# 5 um pitch)" table, and the true-electron count and recall in the text below it.
fresh "$W/f32.h5" "$W"/d-{max,c3x3,c5x5,c3x3t,c5x5t}.h5
run "$E" frames --frames 32 --seed 1 --out "$W/f32.h5"
run "$E" count "$W/f32.h5" --method max,c3x3,c5x5,c3x3t,c5x5t --out "$W/d-{method}.h5"
save "$W/counting-default.txt" "$E" eval "$W"/d-{max,c3x3,c5x5,c3x3t,c5x5t}.h5 --truth "$W/f32.h5" \
    --json "$W/counting-default.json" --plots "$W/counting-default-plots"
json "$W/counting-default.json" "$W/counting-default-plots"

# docs/counting.md, "The EMSim notes' isolated-event test (24 JUL 2021)" table, the detection and
# recall figures above it and the 5x5 centroid's largest error below it (--json prints JSON
# instead of the table, hence two runs).
save "$W/counting-isolated.txt" "$E" eval isolated --events 10000 --sigma-e 20 --seed 1
save "$W/counting-isolated.json" "$E" eval isolated --events 10000 --sigma-e 20 --seed 1 --json

# docs/counting.md, "Beside stempy's counter": the table (stempy itself through
# scripts/baselines/score_counts.py when the stempy venv of scripts/baselines/README.md is there)
# and the optimal-matching figures with --method stempy below it.
fresh "$W"/d-{net,split,sum3-c3x3t,stempy}.h5
run "$E" count "$W/f32.h5" --method net --out "$W/d-net.h5"
run "$E" count "$W/f32.h5" --method net --split-pairs --out "$W/d-split.h5"
run "$E" count "$W/f32.h5" --finder sum3 --method c3x3t --out "$W/d-sum3-c3x3t.h5"
run "$E" count "$W/f32.h5" --method stempy --out "$W/d-stempy.h5"
save "$W/counting-vs-stempy.txt" "$E" eval "$W"/d-{stempy,c3x3t,net,split,sum3-c3x3t}.h5 --truth "$W/f32.h5"
STEMPY_PY=${STEMPY_PY:-/tmp/stempy-venv/bin/python}
if [ -x "$STEMPY_PY" ]; then
    save "$W/counting-score-counts.txt" "$STEMPY_PY" scripts/baselines/score_counts.py "$W/f32.h5" \
        --emsim "$W"/d-{c3x3t,net,split,sum3-c3x3t}.h5 --stempy
else
    log "no stempy venv at $STEMPY_PY: the stempy row of docs/counting.md is not re-measured"
fi
# docs/counting.md, "Against dose" table and recall_vs_dose.png (docs/counting/).
save "$W/counting-dose.txt" "$E" eval dose --doses 0.001,0.005,0.01,0.02,0.05 --frames 20 --size 256x256 --seed 3 \
    --device cpu --json "$W/counting-dose.json" --plots "$W/counting-dose-plots"
json "$W/counting-dose.json" "$W/counting-dose-plots"

############################################################################ docs/network.md

# docs/network.md, "Results: the trained `seed` model ..." table and its sigma knob figures
# (the shipped seed model).
save "$W/network-seed.txt" "$E" eval net --model "$M/seed.safetensors" --library "$W/lib300.h5" --events 20000 \
    --device cpu --json "$W/network-seed.json"
json "$W/network-seed.json"

# docs/network.md, "Results: the trained `fast` model ...", "Held-out events" table and its sigma
# knob figures.
save "$W/network-fast.txt" "$E" eval net --model "$M/fast.safetensors" --library "$W/lib300.h5" --events 20000 \
    --device cpu --json "$W/network-fast.json"
json "$W/network-fast.json"

# docs/network.md, "Results: the trained `fast` model ...", "Default frames" table and the ratios
# to the best centroid at 100 % and 80 % efficiency below it (the count line with the `fast`
# model, as the note under the table asks).
fresh "$W/f20.h5" "$W"/f20-{max,c3x3,c5x5,c3x3t,c5x5t,net}.h5
run "$E" frames --frames 20 --seed 5 --out "$W/f20.h5" --device cpu
run "$E" count "$W/f20.h5" --method max,c3x3,c5x5,c3x3t,c5x5t,net --model "$M/fast.safetensors" \
    --out "$W/f20-{method}.h5" --device cpu
save "$W/network-fast-frames.txt" "$E" eval "$W"/f20-{max,c3x3,c5x5,c3x3t,c5x5t,net}.h5 --truth "$W/f20.h5" \
    --plots "$W/network-fast-frames-plots" --json "$W/network-fast-frames.json"
json "$W/network-fast-frames.json" "$W/network-fast-frames-plots"

# docs/network.md, "Results: `fast-neighbours` ..." table (the same 20 frames) and the ratios at
# 100 %, 80 % and 50 % efficiency below it.
fresh "$W"/f20nb-{c3x3t,net}.h5 "$W"/f20sum3-{c3x3t,c3x3,net}.h5
# ... and its rows on the 3x3-sum finder.
run "$E" count "$W/f20.h5" --finder sum3 --method c3x3,c3x3t,net --model "$M/fast.safetensors" \
    --out "$W/f20sum3-{method}.h5" --device cpu
save "$W/network-fast-frames-sum3.txt" "$E" eval "$W"/f20sum3-{c3x3,c3x3t,net}.h5 --truth "$W/f20.h5"
fresh "$W/f20sum3nb-net.h5"
run "$E" count "$W/f20.h5" --finder sum3 --method net --out "$W/f20sum3nb-net.h5" --device cpu
save "$W/network-fast-neighbours-frames-sum3.txt" "$E" eval "$W/f20sum3nb-net.h5" --truth "$W/f20.h5"
run "$E" count "$W/f20.h5" --method c3x3t,net --model "$M/fast-neighbours.safetensors" \
    --out "$W/f20nb-{method}.h5" --device cpu
save "$W/network-fast-neighbours-frames.txt" "$E" eval "$W"/f20nb-{c3x3t,net}.h5 --truth "$W/f20.h5" \
    --json "$W/network-fast-neighbours-frames.json"
json "$W/network-fast-neighbours-frames.json"

# docs/network.md, "Results: `fast-neighbours` ...", the held-out figure in the last sentence
# ("as good as `fast`").
save "$W/network-fast-neighbours.txt" "$E" eval net --model "$M/fast-neighbours.safetensors" \
    --library "$W/lib300.h5" --events 20000 --json "$W/network-fast-neighbours.json"
json "$W/network-fast-neighbours.json"

# docs/network.md, "Training from a frames dataset with truth": the trial model's figures are not
# re-measured here. The model is not shipped, and the document gives its training command only in
# part (the `fast` recipe by reference, no output name) and not the count and eval commands.

# docs/network.md, "f16 activations (`--net-precision f16`)", accuracy table (default library).
for m in fast fast-neighbours seed; do
    n=(); [ "$m" = seed ] && n=(--events 2000)
    for p in f32 f16; do
        save "$W/network-f16-$m-$p.txt" "$E" eval net --model "$M/$m.safetensors" --net-precision "$p" ${n[@]+"${n[@]}"} \
            --device cpu --json "$W/network-f16-$m-$p.json"
        json "$W/network-f16-$m-$p.json"
    done
done

############################################################################ docs/pairs.md

# docs/pairs.md, "Classifier accuracy": `pair-seed` accuracy, confusion matrix, one/two-electron,
# easy/hard and by-separation figures; also "Data: the separation distribution and "easy vs hard""
# (the hard fraction and the separation table: the by-separation counts of this run).
save "$W/pairs-pair-seed.txt" "$E" eval pairs --model "$M/pair-seed.safetensors" --library "$W/lib300.h5" \
    --samples 20000 --device cpu --json "$W/pairs-pair-seed.json"
json "$W/pairs-pair-seed.json"
# ... and the accuracy "with `--seed 2`".
save "$W/pairs-pair-seed-seed2.txt" "$E" eval pairs --model "$M/pair-seed.safetensors" --library "$W/lib300.h5" \
    --samples 20000 --device cpu --seed 2 --json "$W/pairs-pair-seed-seed2.json"
json "$W/pairs-pair-seed-seed2.json"

# docs/pairs.md, "Classifier accuracy": the `pair-compact` paragraph (the same commands).
save "$W/pairs-pair-compact.txt" "$E" eval pairs --model "$M/pair-compact.safetensors" --library "$W/lib300.h5" \
    --samples 20000 --device cpu --json "$W/pairs-pair-compact.json"
json "$W/pairs-pair-compact.json"
save "$W/pairs-pair-compact-seed2.txt" "$E" eval pairs --model "$M/pair-compact.safetensors" \
    --library "$W/lib300.h5" --samples 20000 --device cpu --seed 2 --json "$W/pairs-pair-compact-seed2.json"
json "$W/pairs-pair-compact-seed2.json"

# docs/pairs.md, "The notebook's single-electron regression vs random guessing" table. `pair-reg`
# is not shipped: it is trained here with the document's command (about 10 minutes).
fresh "$W/pair-reg.safetensors"
run "$E" train --preset pair-reg --library "$W/lib300.h5" --epochs 6 --batch 128 --train-samples 64000 \
    --val-samples 10240 --lr 1e-3 --lr-schedule cosine:0.05 --weight-decay 0 --seed 1 --device cpu \
    --out "$W/pair-reg.safetensors"
save "$W/pairs-pair-reg.txt" "$E" eval net --model "$W/pair-reg.safetensors" --library "$W/lib300.h5" \
    --events 20000 --device cpu --json "$W/pairs-pair-reg.json"
json "$W/pairs-pair-reg.json"

# docs/pairs.md, "The pipeline models": `pair-split` accuracy, one-electron / pair, easy / hard
# and hard-fraction figures.
save "$W/pairs-pair-split.txt" "$E" eval pairs --model "$M/pair-split.safetensors" --library "$W/lib300.h5" \
    --samples 20000 --device cpu --json "$W/pairs-pair-split.json"
json "$W/pairs-pair-split.json"
# ... and the `pair-loc` error per electron, overall and by separation.
save "$W/pairs-pair-loc.txt" "$E" eval pairs --model "$M/pair-loc.safetensors" --library "$W/lib300.h5" \
    --samples 20000 --device cpu --json "$W/pairs-pair-loc.json"
json "$W/pairs-pair-loc.json"

# docs/pairs.md, "Recall and precision against dose ..." table and the text below it (README.md's
# "overlapping electrons" row quotes the same figures).
save "$W/pairs-dose.txt" "$E" eval dose --doses 0.001,0.0025,0.005,0.01,0.02 --frames 100 --size 256x256 --seed 3 --finder sum3 \
    --device cpu --json "$W/pairs-dose.json" --plots "$W/pairs-dose-plots"
json "$W/pairs-dose.json" "$W/pairs-dose-plots"
# ... and the paragraph on the default pixel finder below the table.
save "$W/pairs-dose-pixel.txt" "$E" eval dose --doses 0.001,0.0025,0.005,0.01,0.02 --frames 100 --size 256x256 --seed 3 \
    --device cpu --json "$W/pairs-dose-pixel.json"
json "$W/pairs-dose-pixel.json"
# ... and the sentence on threshold 0.9 ("the same models recover ... at doses 0.005 / 0.01 / 0.02").
save "$W/pairs-dose-threshold-0.9.txt" "$E" eval dose --doses 0.001,0.0025,0.005,0.01,0.02 --frames 100 \
    --size 256x256 --seed 3 --finder sum3 --device cpu --split-threshold 0.9 --json "$W/pairs-dose-threshold-0.9.json"
json "$W/pairs-dose-threshold-0.9.json"

############################################################################ docs/physics.md

# docs/physics.md, section "What the validation does and does not establish": the tables of the
# shipped library before and after a physics change ("Backscatter" and "Thin-layer straggling"
# bullets). These commands measure the shipped library with the shipped `fast-neighbours` model:
# run this block on the library before the change (before copying the remade assets over) and on
# the remade one to fill both columns.
save "$W/physics-library-info.txt" "$E" events info "$LIB"
save "$W/physics-library-info.json" "$E" events info "$LIB" --json
save "$W/physics-isolated.txt" "$E" eval isolated --events 5000 --library "$LIB" --device cpu
save "$W/physics-isolated.json" "$E" eval isolated --events 5000 --library "$LIB" --device cpu --json
save "$W/physics-fast-neighbours.txt" "$E" eval net --model "$M/fast-neighbours.safetensors" --events 5000 \
    --library "$LIB" --device cpu --json "$W/physics-fast-neighbours.json"
json "$W/physics-fast-neighbours.json"

############################################################################ README.md

# README.md, "Status" table: its accuracy figures (rows `train` and "overlapping electrons") are
# those of docs/network.md and docs/pairs.md: network-seed.txt (0.77x the 3x3 centroid),
# network-fast-neighbours-frames.txt (0.71x / 0.56x), network-fast-frames.txt (0.79x),
# pairs-pair-seed.txt and pairs-pair-compact.txt (accuracy), pairs-dose.txt (recovery and
# precision change at doses 0.005, 0.01 and 0.02).

log "done; the figures are in:"
for f in "${OUTPUTS[@]}"; do echo "  $f"; done
