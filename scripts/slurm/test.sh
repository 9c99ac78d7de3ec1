#!/usr/bin/env bash
# Tests the SLURM recipe for real: installs SLURM and munge from the distribution's packages when
# missing (Debian/Ubuntu; root or sudo), starts a one-node cluster on this machine (munged,
# slurmctld, slurmd, on ports of its own, state in a temporary folder), submits
# scripts/slurm/submit.sh with 4 shards, waits, and checks that the merged file equals a
# one-machine run exactly (frames and every truth column, with h5diff), and that counting the
# merged file, or merging the counts the array tasks made, gives the single file's electrons. Stops its daemons and removes its files on the way out.
# Run by scripts/test.sh (and so by CI). Usage: bash scripts/slurm/test.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
log() { echo "slurm-test: $*" >&2; }
need=()
command -v slurmctld >/dev/null || need+=(slurm-wlm)
command -v munged >/dev/null || need+=(munge)
command -v h5diff >/dev/null || need+=(hdf5-tools)
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
cargo build --quiet --bin emsim
export EMSIM=$repo/target/debug/emsim

D=$(mktemp -d /tmp/emsim-slurm.XXXXXX)
chmod 755 "$D"
cleanup() {
    local rc=$?
    [ -f "$D/slurm.conf" ] && SLURM_CONF=$D/slurm.conf scontrol shutdown >/dev/null 2>&1 || true
    local pids=() p pid
    for p in slurmd slurmctld; do
        if [ -f "$D/$p.pid" ]; then pids+=("$(cat "$D/$p.pid")"); fi
    done
    for pid in "${pids[@]}"; do $SUDO kill "$pid" 2>/dev/null || true; done
    # the daemons save their state on the way down: wait for them before removing their folder
    for _ in $(seq 100); do
        local alive=0
        for pid in "${pids[@]}"; do if $SUDO kill -0 "$pid" 2>/dev/null; then alive=1; fi; done
        [ $alive = 0 ] && break
        sleep 0.2
    done
    if [ -n "${started_munge:-}" ]; then $SUDO pkill -x munged 2>/dev/null || true; fi
    if [ $rc != 0 ]; then
        log "failed; the daemons' logs:"
        tail -n 20 "$D"/*.log "$D"/run/logs/* 2>/dev/null >&2 || true
    fi
    if [ -n "${KEEP:-}" ]; then
        log "kept $D"
    else
        for _ in 1 2 3 4 5; do $SUDO rm -rf "$D" 2>/dev/null && break; sleep 1; done
        if [ -e "$D" ]; then log "could not remove $D (a daemon still writing there); remove it by hand"; fi
    fi
    exit $rc
}
trap cleanup EXIT

# munge authenticates the cluster's messages: start it unless it runs
if ! pgrep -x munged >/dev/null; then
    $SUDO mkdir -p /run/munge
    $SUDO chown munge:munge /run/munge
    if [ ! -f /etc/munge/munge.key ]; then $SUDO mungekey --create 2>/dev/null || $SUDO /usr/sbin/create-munge-key -f; fi
    $SUDO runuser -u munge -- /usr/sbin/munged
    started_munge=1
fi

host=$(hostname -s)
mkdir -p "$D/state" "$D/spool"
cat > "$D/slurm.conf" <<CONF
ClusterName=emsimtest
SlurmctldHost=$host
SlurmUser=$(id -un)
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/slurmctld.log
SlurmdLogFile=$D/slurmd.log
SlurmctldPort=16817
SlurmdPort=16818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName=$host CPUs=$(nproc) State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$D/slurm.conf
$SUDO env SLURM_CONF="$SLURM_CONF" slurmctld -f "$SLURM_CONF"
$SUDO env SLURM_CONF="$SLURM_CONF" slurmd -f "$SLURM_CONF"
for _ in $(seq 60); do
    sinfo -h -o %t 2>/dev/null | grep -Eq '^idle' && break
    sleep 1
done
sinfo -h -o %t | grep -Eq '^idle' || { log "the node did not come up"; exit 1; }
log "one-node cluster up ($host)"

args=(--frames 12 --size 96x80 --seed 11 --device cpu -q)
"$EMSIM" frames "${args[@]}" --out "$D/one.h5"
read -r array merge < <(COUNT_ARGS="--sigma-e 20 --device cpu -q" scripts/slurm/submit.sh 4 "$D/run" "${args[@]}")
log "submitted array job $array and merge job $merge"
for _ in $(seq 300); do
    [ -z "$(squeue -h -j "$array,$merge" 2>/dev/null)" ] && break
    sleep 1
done
for j in "$array" "$merge"; do
    state=$(scontrol show job "$j" | grep -o 'JobState=[A-Z_]*' | sort -u | tr '\n' ' ')
    [ "$state" = "JobState=COMPLETED " ] || { log "job $j: $state"; exit 1; }
done
ls "$D/run"/shard{0,1,2,3}.h5 "$D/run"/counts{0,1,2,3}.h5 "$D/run/all.h5" "$D/run/counts-all.h5" >/dev/null

# the merged file equals the one-machine run, dataset by dataset
for ds in /frames /truth/offsets /truth/frame /truth/x_px /truth/y_px /truth/event /truth/deposit_kev; do
    h5diff -q "$D/one.h5" "$D/run/all.h5" "$ds" "$ds" || { log "$ds differs"; exit 1; }
done
# counting the merged file gives what counting the single file gives
# and so does merging the counts the array tasks made of their shards
"$EMSIM" count "$D/one.h5" --sigma-e 20 --out "$D/c-one.h5" --device cpu -q
"$EMSIM" count "$D/run/all.h5" --sigma-e 20 --out "$D/c-all.h5" --device cpu -q
for ds in /electrons/offsets /electrons/frame /electrons/x_px /electrons/y_px /counted_image; do
    h5diff -q "$D/c-one.h5" "$D/c-all.h5" "$ds" "$ds" || { log "counts of the merged file: $ds differs"; exit 1; }
    h5diff -q "$D/c-one.h5" "$D/run/counts-all.h5" "$ds" "$ds" || { log "merged counts: $ds differs"; exit 1; }
done
log "ok: 4 shards from the SLURM array, merged, equal the one-machine run (frames, truth, counts)"
