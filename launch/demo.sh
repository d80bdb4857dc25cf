#!/usr/bin/env bash
# Installs what is missing, builds release, trains the character-level GPT on 2 MPI ranks
# (embedded Tiny Shakespeare, nanoGPT's CPU configuration, global batch 2 × 12), then samples
# text from the checkpoint it wrote.
#
#   ./launch/demo.sh                 # 2 ranks on this machine, 2000 steps (about 2-3 minutes)
#   RANKS=4 STEPS=500 ./launch/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source launch/common.sh
replica_install_dependencies
RANKS=${RANKS:-2}
STEPS=${STEPS:-2000}
RUN_DIR=${RUN_DIR:-runs/demo-charlm}

swift build -c release --product replica
read -r -a flags <<<"$(replica_mpirun_flags)"
rm -rf "$RUN_DIR"
set -x
mpirun "${flags[@]}" -np "$RANKS" .build/release/replica train charlm --steps "$STEPS" \
    --checkpoint-dir "$RUN_DIR" --metrics "$RUN_DIR/metrics.jsonl"
.build/release/replica generate --checkpoint "$RUN_DIR" --prompt "ROMEO:" --tokens 300 --temperature 0.8
