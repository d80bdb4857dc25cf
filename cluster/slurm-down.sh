#!/usr/bin/env bash
# Stops the local Slurm of cluster/slurm-up.sh and removes what it made: its daemons (slurmd,
# slurmctld, munged, found by their pid files in $SLURM_STATE), the /etc/slurm/slurm.conf link if
# it points at its own slurm.conf, and the state folder. Jobs still running end with their slurmd.
# Safe to repeat, and after a crash. Knobs: SLURM_STATE (cluster/.slurm), KEEP_LOGS=1 keeps the
# log folder.
set -euo pipefail
cd "$(dirname "$0")/.."
source cluster/slurm-common.sh

[[ -d $SLURM_STATE ]] || { echo "slurm: nothing to remove ($SLURM_STATE does not exist)"; exit 0; }
# Jobs first (while slurmctld can still end them), then the daemons.
export SLURM_CONF=$SLURM_STATE/slurm.conf
if slurm_alive "$SLURM_STATE/run/slurmctld.pid"; then
    jobs=$(squeue --noheader -o %A 2>/dev/null || true)
    if [[ -n $jobs ]]; then
        scancel $jobs 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            [[ -z $(squeue --noheader -o %A 2>/dev/null || true) ]] && break
            sleep 0.1
        done
    fi
fi
slurm_stop_daemons
# A job step's slurmstepd that outlived its slurmd: one with its working folder or an open file
# in this Slurm's state folder.
for pid in $(pgrep -x slurmstepd 2>/dev/null || true); do
    if [[ $(readlink "/proc/$pid/cwd" 2>/dev/null) == "$SLURM_STATE"* ]] \
        || ls -l "/proc/$pid/fd" 2>/dev/null | grep -qF "$SLURM_STATE"; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
done
if [[ -L /etc/slurm/slurm.conf && $(readlink /etc/slurm/slurm.conf) == "$SLURM_STATE/slurm.conf" ]]; then
    rm -f /etc/slurm/slurm.conf
fi
if [[ ${KEEP_LOGS:-0} == 1 ]]; then
    find "$SLURM_STATE" -mindepth 1 -maxdepth 1 ! -name log -exec rm -rf {} +
    echo "slurm: stopped; logs kept in $SLURM_STATE/log"
else
    rm -rf "$SLURM_STATE"
    echo "slurm: stopped and removed $SLURM_STATE"
fi
