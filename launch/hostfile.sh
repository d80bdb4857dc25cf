#!/usr/bin/env bash
# Runs replica across the nodes of an MPI hostfile over TCP.
#
#   ./launch/hostfile.sh HOSTFILE RANKS REPLICA-ARGS...
#   ./launch/hostfile.sh hosts 4 train charlm --checkpoint-dir /nfs/runs/charlm
#
# The hostfile is Open MPI's: one node a line, "node1 slots=2". The binary and the data must be at
# the same path on every node (a shared folder, or the same checkout built on each).
# Knobs (environment): BINARY (default .build/release/replica), THREADS (BLAS threads per rank,
# default 1), IFACE (a subnet or interface for MPI traffic, e.g. 198.18.0.0/15 or eth1),
# MPIRUN_EXTRA (more mpirun arguments, passed through).
set -euo pipefail
cd "$(dirname "$0")/.."
source launch/common.sh
[[ $# -ge 3 && -r $1 && $2 =~ ^[1-9][0-9]*$ ]] || { echo "usage: launch/hostfile.sh HOSTFILE RANKS REPLICA-ARGS..." >&2; exit 1; }
hostfile=$1 ranks=$2
shift 2
BINARY=${BINARY:-.build/release/replica}
THREADS=${THREADS:-1}
[[ -x $BINARY ]] || swift build -c release --product replica
read -r -a flags <<<"$(replica_mpirun_flags)"
# TCP between nodes, shared memory within one; keep MPI on the named network if given.
mca=(--mca btl tcp,vader,self --mca oob_tcp_if_include "${IFACE:-0.0.0.0/0}")
[[ -n ${IFACE:-} ]] && mca+=(--mca btl_tcp_if_include "$IFACE")
read -r -a extra <<<"${MPIRUN_EXTRA:-}"
command=(mpirun "${flags[@]}" --hostfile "$hostfile" -np "$ranks" --map-by slot --bind-to none "${mca[@]}" "${extra[@]}"
         "$BINARY" "$@" --threads "$THREADS")
echo "+ ${command[*]}" >&2
replica_run_stoppable "${command[@]}"
