#!/usr/bin/env bash
# Runs a bench/ Python script with the repository's venv (launch/python.sh), installing what the
# scripts need into it first if it is missing: PyTorch's CPU wheel, numpy, PyTorch Geometric,
# sacreBLEU, safetensors (the first time: about 250 MB from PyPI); for gat_pyg_sampled.py also
# torch-scatter and torch-sparse, compiled from source the first time (launch/python.sh: g++, about
# 20 minutes on 2 cores); matplotlib for scaling_plot.py;
# nothing for cost_model.py and perf_step.py (the standard library). Arguments after the script go to it.
#
#   bench/run.sh bench/charlm_torch.py --threads 1 --steps 50
#   bench/run.sh gat_pyg.py --epochs 200          # a bare name is looked up in bench/
#
# Knobs: those of launch/python.sh (REPLICA_VENV, REPLICA_PYTHON, REPLICA_TORCH, REPLICA_TORCH_INDEX).
set -euo pipefail
bench=$(cd "$(dirname "$0")" && pwd)
source "$bench/../launch/python.sh"
(($#)) || { echo "usage: bench/run.sh SCRIPT.py [ARGS...]" >&2; exit 1; }
script=$1
shift
[[ -f $script ]] || script=$bench/$script
[[ -f $script ]] || { echo "error: no script $(basename "$script") here or in bench/" >&2; exit 1; }
case $(basename "$script") in
    scaling_plot.py) packages=("${REPLICA_PYTHON_PLOT[@]}") ;;
    gat_pyg_sampled.py) packages=("${REPLICA_PYTHON_SAMPLED[@]}") ;;
    cost_model.py | perf_step.py) packages=() ;;
    *) packages=("${REPLICA_PYTHON_BENCH[@]}") ;;
esac
python=$(replica_python_env "${packages[@]}")
exec "$python" "$script" "$@"
