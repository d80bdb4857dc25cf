#!/usr/bin/env bash
# Runs replica on N ranks of this machine with the flags it needs.
#
#   ./launch/local.sh 2 train charlm --steps 200
#   ./launch/local.sh 4 bench allreduce --json
set -euo pipefail
cd "$(dirname "$0")/.."
source launch/common.sh
[[ $# -ge 1 && $1 =~ ^[1-9][0-9]*$ ]] || { echo "usage: launch/local.sh RANKS REPLICA-ARGS..." >&2; exit 1; }
ranks=$1
shift
BINARY=${BINARY:-.build/release/replica}
[[ -x $BINARY ]] || swift build -c release --product replica
read -r -a flags <<<"$(replica_mpirun_flags)"
echo "+ mpirun ${flags[*]} -np $ranks $BINARY $*" >&2
# SIGTERM or Ctrl-C: every rank stops after its step with a checkpoint, and the status is 3.
replica_run_stoppable mpirun "${flags[@]}" -np "$ranks" "$BINARY" "$@"
