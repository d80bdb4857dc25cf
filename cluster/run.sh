#!/usr/bin/env bash
# Runs a command across the simulated cluster of cluster/up.sh with mpirun over its veth links.
#
#   cluster/run.sh -np 4 replica train gat --json
#   cluster/run.sh --show-traffic -np 2 replica bench allreduce --sizes 1M,16M
#   cluster/run.sh -np 4 --map-by node -- replica bench step --model charlm --json
#   cluster/run.sh -np 2 -- hostname                        # prints node1, node2
#
# Forms: "run.sh -np K COMMAND..." or "run.sh MPIRUN-ARGS... -- COMMAND...". The word "replica"
# as the command means the built binary: $REPLICA_BIN if set, else .build/release/replica (built
# if missing), as an absolute path (the nodes share this machine's file system).
# mpirun runs in the root namespace (address 198.18.0.254 on the bridge) and starts one orted a
# node through the rsh agent; ranks on one node talk through shared memory (vader), ranks on
# different nodes through TCP on 198.18.0.0/24 only. Ranks are spread evenly, consecutive ranks
# on one node (--map-by ppr:⌈K/N⌉:node) unless the arguments map them; no core binding (nodes
# share the cores). --show-traffic prints the bytes each node's link carried during the run.
# Knobs (environment): REPLICA_BIN, CLUSTER_STATE, MPIRUN_EXTRA (more mpirun arguments).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
source cluster/common.sh
source launch/common.sh

usage() { echo "usage: cluster/run.sh [--show-traffic] -np K COMMAND...   or   cluster/run.sh [--show-traffic] MPIRUN-ARGS... -- COMMAND..." >&2; exit 1; }
[[ -f $CLUSTER_STATE/hostfile && -x $CLUSTER_STATE/rsh-agent ]] \
    || { echo "error: no simulated cluster is up ($CLUSTER_STATE/hostfile missing); run cluster/up.sh N first" >&2; exit 1; }

show_traffic=0
mpirun_arguments=()
command=()
if printf '%s\n' "$@" | grep -qx -- "--"; then
    while (($#)) && [[ $1 != -- ]]; do
        if [[ $1 == --show-traffic ]]; then show_traffic=1; else mpirun_arguments+=("$1"); fi
        shift
    done
    shift
    command=("$@")
else
    [[ ${1:-} == --show-traffic ]] && { show_traffic=1; shift; }
    [[ $# -ge 3 && ($1 == -np || $1 == -n) && $2 =~ ^[1-9][0-9]*$ ]] || usage
    mpirun_arguments=("$1" "$2")
    shift 2
    command=("$@")
fi
((${#command[@]})) || usage

# The rank count and whether the caller chose a mapping.
ranks="" mapped=0
for ((i = 0; i < ${#mpirun_arguments[@]}; i++)); do
    case ${mpirun_arguments[i]} in
        -np | -n | --np | -c) ranks=${mpirun_arguments[i + 1]:-} ;;
        --map-by | -map-by | --npernode | -npernode | --ppr | --host | -H | --rankfile) mapped=1 ;;
    esac
done

if [[ ${command[0]} == replica ]]; then
    binary=${REPLICA_BIN:-$root/.build/release/replica}
    [[ -x $binary ]] || (cd "$root" && swift build -c release --product replica)
    command[0]=$(realpath "$binary")
fi

nodes=$(<"$CLUSTER_STATE/nodes")
read -r -a flags <<<"$(replica_mpirun_flags)"
mca=(--mca plm_rsh_agent "$CLUSTER_STATE/rsh-agent" --mca plm_rsh_no_tree_spawn 1
     --mca btl tcp,vader,self --mca btl_tcp_if_include "$CLUSTER_SUBNET" --mca oob_tcp_if_include "$CLUSTER_SUBNET")
placement=(--bind-to none)
if ((!mapped)) && [[ -n $ranks ]]; then
    placement+=(--map-by "ppr:$(((ranks + nodes - 1) / nodes)):node")
fi
# The nodes share this machine's cores, which Open MPI cannot see: with 2 slots a node it takes
# every rank to have a core and lets a rank waiting in MPI spin, holding a core that the rank it
# waits for needs. With more ranks than cores, waiting ranks yield instead (what mpirun does by
# itself when it knows it oversubscribes). Measured: 4 ranks on 2 nodes at 10 Gbit/s, 0.5 MiB
# buckets, 104 → 71 ms a step.
if [[ -n $ranks ]] && ((ranks > $(nproc))) && [[ " ${MPIRUN_EXTRA:-} ${mpirun_arguments[*]} " != *mpi_yield_when_idle* ]]; then
    placement+=(--mca mpi_yield_when_idle 1)
fi
read -r -a extra <<<"${MPIRUN_EXTRA:-}"
line=(mpirun "${flags[@]}" --hostfile "$CLUSTER_STATE/hostfile" "${mca[@]}" "${placement[@]}" "${extra[@]}"
      "${mpirun_arguments[@]}" "${command[@]}")
echo "+ ${line[*]}" >&2

# Per-link byte counters before and after (rx on rc-nodeK = bytes nodeK sent, tx = bytes it received).
link_counters() {
    local link
    for link in /sys/class/net/rc-node*; do
        [[ -e $link ]] && echo "$(basename "$link") $(<"$link/statistics/rx_bytes") $(<"$link/statistics/tx_bytes")"
    done
}
((show_traffic)) && before=$(link_counters)
status=0
"${line[@]}" || status=$?
if ((show_traffic)); then
    while read -r link rx tx; do
        read -r _ rx0 tx0 < <(grep "^$link " <<<"$before") || { rx0=0 tx0=0; }
        awk -v l="${link#rc-}" -v s=$((rx - rx0)) -v r=$((tx - tx0)) \
            'BEGIN { printf "traffic: %s sent %.2f MB, received %.2f MB\n", l, s / 1e6, r / 1e6 }' >&2
    done < <(link_counters)
fi
exit "$status"
