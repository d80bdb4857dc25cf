# Shared by cluster/slurm-up.sh and cluster/slurm-down.sh: where the local Slurm lives and how its
# daemons are found. Source it; do not run it.

SLURM_STATE=${SLURM_STATE:-$PWD/cluster/.slurm}
SLURMCTLD_PORT=${SLURMCTLD_PORT:-6817}
SLURMD_PORT=${SLURMD_PORT:-6818}

# Whether the process of pid file $1 runs (and is not a zombie).
slurm_alive() {
    [[ -s $1 ]] || return 1
    local pid state
    pid=$(cat "$1")
    state=$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null) || return 1
    [[ -n $state && $state != Z ]]
}

# Stops the daemons of $SLURM_STATE's pid files: slurmd, slurmctld, then munged; each gets TERM,
# and KILL if it has not ended 10 s later. Only the processes these files name are touched.
slurm_stop_daemons() {
    local file pid waited
    for file in "$SLURM_STATE"/run/slurmd-*.pid "$SLURM_STATE/run/slurmctld.pid" "$SLURM_STATE/run/munged.pid"; do
        [[ -e $file ]] || continue
        if slurm_alive "$file"; then
            pid=$(cat "$file")
            kill -TERM "$pid" 2>/dev/null || true
            for ((waited = 0; waited < 100; waited++)); do
                slurm_alive "$file" || break
                sleep 0.1
            done
            slurm_alive "$file" && kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$file"
    done
}
