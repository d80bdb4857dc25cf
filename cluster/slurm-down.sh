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
slurm_stop_daemons
# Job steps that outlived their slurmd (slurmstepd) of this Slurm: named by the spool folder.
for pid in $(pgrep -f "slurmstepd" 2>/dev/null || true); do
    tr '\0' '\n' 2>/dev/null </proc/"$pid"/cmdline | grep -q "$SLURM_STATE" && kill -KILL "$pid" 2>/dev/null || true
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
