# Shared by cluster/slurm-up.sh and cluster/slurm-down.sh: where the local Slurm lives and how its
# daemons are found. Source it; do not run it.

SLURM_STATE=${SLURM_STATE:-$PWD/cluster/.slurm}
SLURMCTLD_PORT=${SLURMCTLD_PORT:-6817}
SLURMD_PORT=${SLURMD_PORT:-6818}

# Whether process $1 runs (and is not a zombie).
slurm_pid_alive() {
    local state
    state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n $state && $state != Z ]]
}

# Whether the process of pid file $1 runs.
slurm_alive() {
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 1
    [[ -n $pid ]] && slurm_pid_alive "$pid"
}

# Stops the daemons of $SLURM_STATE's pid files: slurmd, slurmctld, then munged; each gets TERM,
# and KILL if it has not ended 10 s later. Only the processes these files name are touched.
slurm_stop_daemons() {
    local file pid waited
    for file in "$SLURM_STATE"/run/slurmd-*.pid "$SLURM_STATE/run/slurmctld.pid" "$SLURM_STATE/run/munged.pid"; do
        pid=$(cat "$file" 2>/dev/null) || continue
        if [[ -n $pid ]] && slurm_pid_alive "$pid"; then
            kill -TERM "$pid" 2>/dev/null || true
            for ((waited = 0; waited < 100; waited++)); do
                slurm_pid_alive "$pid" || break
                sleep 0.1
            done
            if slurm_pid_alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
        fi
        rm -f "$file"
    done
}
