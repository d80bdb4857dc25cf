# Shared by the launch/ scripts: dependency install and the mpirun flags this machine needs.
# Source it; do not run it.

# iproute2 (ip, tc) is for the simulated cluster in cluster/; librsvg2-bin (rsvg-convert) renders
# `replica plot`'s SVGs in its test.
REPLICA_APT_PACKAGES=(libopenmpi-dev openmpi-bin libopenblas-dev pkg-config zlib1g-dev iproute2 librsvg2-bin)

# Debian's Slurm, for cluster/slurm-up.sh and its integration test (SlurmTests).
REPLICA_SLURM_APT_PACKAGES=(slurmctld slurmd slurm-client munge)

# Installs the Debian packages given that are missing (as root, or with sudo); messages on stderr.
replica_apt_install() {
    local missing=() package
    for package in "$@"; do
        dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
    done
    if ((${#missing[@]})); then
        local sudo=""
        [[ $(id -u) -eq 0 ]] || sudo="sudo"
        echo "installing: ${missing[*]}" >&2
        $sudo apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# Installs the Debian packages Replica builds and runs with, if any is missing.
replica_install_dependencies() {
    replica_apt_install "${REPLICA_APT_PACKAGES[@]}"
    command -v swift >/dev/null || { echo "error: swift is not on PATH; install Swift 6 (swift.org) first" >&2; exit 1; }
}

# Runs a launcher command (mpirun, srun) and returns its status. SIGTERM and SIGINT to this script
# reach the job as SIGUSR1: Open MPI's mpirun passes USR1 on to every rank at once and then returns
# the ranks' status (3: stopped on request, checkpoint written), where on TERM or INT it ends the
# job itself, sending the ranks TERM only after odls_base_sigkill_timeout (1 s) and KILL 1 s later,
# and returns 1 (docs/robustness.md). USR1 to this script is passed on as it is.
replica_run_stoppable() {
    "$@" &
    local job=$! status=0
    trap 'kill -USR1 "$job" 2>/dev/null || true' TERM INT USR1
    # A trapped signal ends `wait` early: wait again until the launcher has ended.
    while true; do
        wait "$job" && status=0 || status=$?
        kill -0 "$job" 2>/dev/null || break
    done
    trap - TERM INT USR1
    return "$status"
}

# mpirun flags: root needs --allow-run-as-root; --oversubscribe lets ranks exceed cores.
replica_mpirun_flags() {
    local flags=(--oversubscribe)
    [[ $(id -u) -eq 0 ]] && flags+=(--allow-run-as-root)
    echo "${flags[@]}"
}
