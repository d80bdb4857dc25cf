#!/usr/bin/env bash
# Installs what is missing, builds release, and runs Replica on 2 MPI ranks.
#
#   ./launch/demo.sh            # this machine, 2 ranks
#   RANKS=4 ./launch/demo.sh    # more ranks (oversubscribed if the cores are fewer)
set -euo pipefail
cd "$(dirname "$0")/.."
source launch/common.sh
replica_install_dependencies
RANKS=${RANKS:-2}

swift build -c release --product replica
read -r -a flags <<<"$(replica_mpirun_flags)"
set -x
mpirun "${flags[@]}" -np "$RANKS" .build/release/replica bench allreduce --sizes 4K,64K,1M,16M
