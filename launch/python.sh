# The repository's own Python virtual environment, for bench/, launch/scaling.sh, launch/soak.sh
# and the tests: made once, and a package pip-installed into it only when it does not import.
#
#   source launch/python.sh; python=$(replica_python_env numpy matplotlib)   # in a script
#   bash launch/python.sh sacrebleu                                          # prints the venv's python
#
# A package's import name is its name lower-cased with - as _ (torch-geometric: torch_geometric).
# "torch" means the CPU wheel $REPLICA_TORCH with --no-deps (PyPI's plain torch is a CUDA build
# that does not import here) and its pure-Python dependencies. The packages of
# REPLICA_TORCH_EXTENSIONS have no wheel for this torch on PyPI: they are compiled from PyPI's
# source distribution against the venv's torch (pip --no-build-isolation, MAX_JOBS=2 by default,
# with Debian's g++ and, where the python has no Python.h, python3-dev; torch-scatter and
# torch-sparse: about 20 minutes on 2 cores the first time, then pip's wheel cache). Messages go to stderr.
# Knobs: REPLICA_VENV (the venv, default .venv at the repository root), REPLICA_PYTHON (the
# python3 it is made from, default python3), REPLICA_TORCH (torch==2.13.0+cpu), REPLICA_TORCH_INDEX
# (where pip looks for that wheel when its configured indexes do not have it; PyPI has no +cpu
# builds: https://download.pytorch.org/whl/cpu).

# What each use needs; the one place the package lists live.
REPLICA_PYTHON_PLOT=(numpy matplotlib)
REPLICA_PYTHON_SOAK=(numpy)
REPLICA_PYTHON_BENCH=(torch numpy torch-geometric sacrebleu safetensors)
# bench/gat_pyg_sampled.py: PyG's NeighborLoader needs pyg-lib (not on PyPI) or torch-sparse.
REPLICA_PYTHON_SAMPLED=("${REPLICA_PYTHON_BENCH[@]}" torch-scatter torch-sparse)
REPLICA_TORCH_EXTENSIONS=(torch-scatter torch-sparse)
REPLICA_TORCH_DEPS=(filelock typing-extensions sympy networkx jinja2 fsspec mpmath MarkupSafe setuptools)

_replica_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$_replica_root/launch/common.sh"

# Prints the path of the venv's python once the packages given import in it.
replica_python_env() (
    set -euo pipefail
    venv=${REPLICA_VENV:-$_replica_root/.venv} base=${REPLICA_PYTHON:-python3}
    torch=${REPLICA_TORCH:-torch==2.13.0+cpu}
    index=${REPLICA_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}
    python=$venv/bin/python
    packages=() seen=" "
    for package in "$@"; do
        [[ $package == torch ]] && set -- "${REPLICA_TORCH_DEPS[@]}" "$@"
    done
    for package in "$@"; do
        [[ $seen == *" $package "* ]] || packages+=("$package") seen+="$package "
    done
    # Prints the packages given whose import fails in the venv, one a line.
    failing_imports() {
        "$python" - "$@" <<'PYTHON' || printf '%s\n' "$@"
import importlib, re, sys
for package in sys.argv[1:]:
    try:
        importlib.import_module(re.split(r"[=<>!~\[; ]", package)[0].lower().replace("-", "_"))
    except Exception:
        print(package)
PYTHON
    }
    mkdir -p "$venv"
    exec 9>"$venv/.replica-lock"
    flock 9 # one installer at a time
    if ! "$python" -c "" 2>/dev/null; then
        if ! command -v "$base" >/dev/null || ! "$base" -c "import venv, ensurepip" 2>/dev/null; then
            # Debian's python3 has venv's pip in python3-venv.
            command -v apt-get >/dev/null || { echo "error: $base with the venv module is needed" >&2; exit 1; }
            replica_apt_install python3 python3-venv
            base=/usr/bin/python3
        fi
        echo "creating the Python environment $venv ($("$base" --version))" >&2
        "$base" -m venv --upgrade-deps "$venv" >&2 # torch wants a newer setuptools than 3.11's
    fi
    ((${#packages[@]})) || { echo "$python"; exit 0; }
    mapfile -t missing < <(failing_imports "${packages[@]}")
    if ((${#missing[@]})); then
        echo "installing into $venv: ${missing[*]}" >&2
        rest=() extensions=()
        for package in "${missing[@]}"; do
            if [[ $package == torch ]]; then
                "$python" -m pip install --no-deps "$torch" >&2 \
                    || { echo "trying $index" >&2; "$python" -m pip install --no-deps --extra-index-url "$index" "$torch" >&2; }
            elif [[ " ${REPLICA_TORCH_EXTENSIONS[*]} " == *" $package "* ]]; then
                extensions+=("$package")
            else
                rest+=("$package")
            fi
        done
        ((${#rest[@]} == 0)) || "$python" -m pip install "${rest[@]}" >&2
        if ((${#extensions[@]})); then
            command -v g++ >/dev/null || replica_apt_install g++
            "$python" -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(sysconfig.get_path("include") + "/Python.h"))' \
                || replica_apt_install python3-dev
            echo "compiling ${extensions[*]} against torch $("$python" -c 'import torch; print(torch.__version__)') (about 20 minutes for torch-scatter and torch-sparse)" >&2
            "$python" -m pip install ninja >&2   # lets torch's extension builder compile MAX_JOBS files at once
            MAX_JOBS=${MAX_JOBS:-2} "$python" -m pip install --no-build-isolation "${extensions[@]}" >&2
            # A wheel cached for another torch installs but does not import: compile afresh.
            mapfile -t extensions < <(failing_imports "${extensions[@]}")
            ((${#extensions[@]} == 0)) || MAX_JOBS=${MAX_JOBS:-2} "$python" -m pip install --no-build-isolation \
                --force-reinstall --no-deps --no-cache-dir "${extensions[@]}" >&2
        fi
        mapfile -t missing < <(failing_imports "${packages[@]}")
        ((${#missing[@]} == 0)) || { echo "error: installed but does not import: ${missing[*]}" >&2; exit 1; }
    fi
    echo "$python"
)

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    set -euo pipefail
    replica_python_env "$@"
fi
