#!/usr/bin/env bash
# A frames dataset made on a SLURM cluster: a job array of N shards (`emsim frames --shard k/N`,
# one array task each, which also counts its shard when COUNT_ARGS is set), then a merge job that
# runs when every task has succeeded (--dependency=afterok), giving OUTDIR/all.h5, the same frames
# and truth as one machine's run (and OUTDIR/counts-all.h5, the counts of the whole dataset).
#
#   scripts/slurm/submit.sh N OUTDIR [emsim frames flags...]
#   scripts/slurm/submit.sh 16 /scratch/run --frames 100000 --seed 7
#   SBATCH_ARGS="--gres=gpu:1 --partition=gpu" scripts/slurm/submit.sh 16 /scratch/run --frames 100000
#
# Environment: EMSIM (the emsim binary, default emsim on the PATH), SBATCH_ARGS (extra sbatch
# options of the array tasks: partition, GPUs, time), COUNT_ARGS (count each shard with these
# `emsim count` flags, e.g. "--sigma-e 20": give the noise sigma, so that every shard is counted
# with the same threshold), MERGE_ARGS (extra `emsim merge` flags, e.g. --copy). Prints the two
# job ids. Logs go to OUTDIR/logs/.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 N OUTDIR [emsim frames flags...]" >&2
    exit 2
fi
n=$1
out=$(realpath -m "$2")
shift 2
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out/logs"
# shellcheck disable=SC2086 # SBATCH_ARGS and MERGE_ARGS are lists of options
array=$(sbatch --parsable --array="0-$((n - 1))" ${SBATCH_ARGS:-} --output="$out/logs/frames-%A_%a.log" \
    "$here/frames-array.sbatch" "$n" "$out" "$@")
array=${array%%;*}
# shellcheck disable=SC2086
merge=$(sbatch --parsable --dependency="afterok:$array" --kill-on-invalid-dep=yes \
    --output="$out/logs/merge-%j.log" "$here/merge.sbatch" "$n" "$out" ${MERGE_ARGS:-})
merge=${merge%%;*}
echo "$array $merge"
