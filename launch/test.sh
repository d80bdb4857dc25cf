#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test: swift test (unit tests and the
# mpirun integration tests of the binary) and the MPI unit tests under mpirun -np 2 and -np 3.
#
#   ./launch/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source launch/common.sh
replica_install_dependencies
# SlurmTests brings up a local Slurm (cluster/slurm-up.sh), which needs root; without root it is skipped.
if [[ $(id -u) -eq 0 ]]; then replica_apt_install "${REPLICA_SLURM_APT_PACKAGES[@]}"; fi

# Test suites run in parallel threads of one process; OpenBLAS's thread pool entered by several
# threads at once can deadlock, so each BLAS call runs on its caller's thread.
export OPENBLAS_NUM_THREADS=1

swift build --build-tests
read -r -a flags <<<"$(replica_mpirun_flags)"
for ranks in 2 3; do
    echo "== MPI unit tests on $ranks ranks: mpirun ${flags[*]} -np $ranks ... --filter ReplicaDistributedTests"
    mpirun "${flags[@]}" -np "$ranks" .build/debug/ReplicaPackageTests.xctest \
        --testing-library swift-testing --filter ReplicaDistributedTests >".build/mpi-tests-$ranks.log" 2>&1 \
        || { cat ".build/mpi-tests-$ranks.log"; echo "MPI unit tests failed on $ranks ranks" >&2; exit 1; }
    grep -h "Test run with" ".build/mpi-tests-$ranks.log" | sed "s/^/  /"
done
echo "== swift test"
swift test
