#!/usr/bin/env bash
# Soak test of exact resume: trains charlm on 2 ranks, kills a rank at a random step CYCLES times
# (resuming with --resume after each), lets the run finish, and compares the final parameters
# and optimizer state with an uninterrupted run's, bit for bit. Prints PASS or FAIL; exits 1 on
# a mismatch (or a cycle that hangs or never finishes).
#
#   ./launch/soak.sh                 # 5 kill + resume cycles over a 60-step run
#   ./launch/soak.sh 10 120          # CYCLES STEPS
#   SOAK_SEED=7 OUT=/tmp/soak ./launch/soak.sh
#
# Cycles take turns: (1) REPLICA_FAULT=kill:rank=R:step=S, the rank sends itself SIGKILL before
# step S; (2) kill -9 of rank R's process from outside once rank 0 has logged step S-1 (so it
# lands in a step, an all-reduce or a checkpoint write); (3) REPLICA_FAULT=crash-during-checkpoint:
# step=S, rank 0 dies midway through writing checkpoint S, which must then not exist (resume
# uses the one before); (4) preemption: the job runs under launch/local.sh, which gets SIGTERM once
# step S-1 is logged (rank R stalls 2 s before step S meanwhile, REPLICA_FAULT=stall) (passed to mpirun as SIGUSR1, see launch/common.sh); every rank must stop
# after one step, the job must end with status 3, and the newest checkpoint must be the last
# step logged. R and S are random (SOAK_SEED), S after the step the cycle resumes
# from. Each cycle reports mpirun's exit status and how long the job took to end after the rank
# died; it fails if that took longer than END_WITHIN or left a rank process behind.
#
# Then the elastic cycle (ELASTIC=0 skips it): a run with a global batch of 12 on 2 ranks × 6 is
# killed at a random step, resumed on 1 rank × 6 × --grad-accum 2, killed again, and finished on
# 3 ranks × 4. Its final parameters and optimizer state must be within 1e-5 (global relative L2)
# of an uninterrupted 2-rank run's: every split draws the same 12 sequences a step, and only the
# order in which Float gradients are summed differs.
#
# Knobs: BINARY (.build/release/replica), OUT (a new temporary folder), RANKS (2),
# CHECKPOINT_EVERY (5), SOAK_SEED (random), END_WITHIN (seconds a killed job may take to end, 60),
# MODEL_ARGS (a small charlm); the comparison's numpy comes from launch/python.sh's venv
# (REPLICA_VENV). One machine only: the outside kill finds the ranks as mpirun's
# child processes.
set -euo pipefail
cd "$(dirname "$0")/.."
source launch/common.sh
source launch/python.sh

CYCLES=${1:-5}
STEPS=${2:-60}
BINARY=${BINARY:-.build/release/replica}
RANKS=${RANKS:-2}
CHECKPOINT_EVERY=${CHECKPOINT_EVERY:-5}
END_WITHIN=${END_WITHIN:-60}
SOAK_SEED=${SOAK_SEED:-$((RANDOM * 32768 + RANDOM))}
OUT=${OUT:-$(mktemp -d /tmp/replica-soak.XXXXXX)}
MODEL_ARGS=${MODEL_ARGS:---layers 2 --heads 2 --embedding 32 --block-size 32 --batch-size 4 --warmup 10}
[[ $CYCLES =~ ^[0-9]+$ && $STEPS =~ ^[1-9][0-9]*$ ]] || { echo "usage: launch/soak.sh [CYCLES] [STEPS]" >&2; exit 1; }
python=$(replica_python_env "${REPLICA_PYTHON_SOAK[@]}") # the final comparison
[[ -x $BINARY ]] || swift build -c release --product replica
read -r -a flags <<<"$(replica_mpirun_flags)"
read -r -a model <<<"$MODEL_ARGS"
export OPENBLAS_NUM_THREADS=1
RANDOM=$SOAK_SEED
mkdir -p "$OUT"
echo "soak: $CYCLES kill (or preemption) + resume cycles over $STEPS steps on $RANKS ranks, seed $SOAK_SEED, in $OUT"

# Runs one training job into checkpoint folder $1 (log $2, metrics $3, then extra options);
# in the background, its mpirun's pid in $job.
start_job() {
    local directory=$1 log=$2 metrics=$3
    shift 3
    local ranks=${JOB_RANKS:-$RANKS}
    local launcher=(mpirun "${flags[@]}" -np "$ranks" "$BINARY")
    [[ -n ${VIA_SCRIPT:-} ]] && launcher=(env BINARY="$BINARY" launch/local.sh "$ranks")
    local command=("${launcher[@]}" train charlm --steps "$STEPS" "${model[@]}"
        --checkpoint-every "$CHECKPOINT_EVERY" --checkpoint-dir "$directory" --metrics "$metrics" --quiet "$@")
    echo "+ ${REPLICA_FAULT:+REPLICA_FAULT=$REPLICA_FAULT }${command[*]}" >>"$log"
    "${command[@]}" >>"$log" 2>&1 &
    job=$!
}

# The step of the newest complete checkpoint in $1, or 0.
checkpoint_step() {
    local latest=$1/latest
    [[ -f $latest ]] || { echo 0; return; }
    local name
    name=$(basename "$(cat "$latest")")
    echo $((10#${name#step-}))
}

# The last step rank 0 logged in metrics file $1, or 0.
logged_step() {
    [[ -s $1 ]] || { echo 0; return; }
    local step
    step=$(tail -n 1 "$1" | sed -n 's/.*"step" *: *\([0-9]*\).*/\1/p')
    echo "${step:-0}"
}

# Whether process $1 exists and is not a zombie.
running() {
    local state
    state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n $state && $state != Z ]]
}

# Waits for $job to end, at most END_WITHIN seconds after $1 (epoch seconds, with fractions);
# sets status (mpirun's exit status, or "hang": still running then, and killed) and seconds.
wait_job() {
    local since=$1
    status=0
    while kill -0 "$job" 2>/dev/null; do
        if (($(date +%s) - ${since%.*} > END_WITHIN)); then
            kill -9 "$job" 2>/dev/null || true
            wait "$job" 2>/dev/null || true
            status=hang
            seconds=$END_WITHIN
            return
        fi
        sleep 0.1
    done
    wait "$job" || status=$?
    seconds=$(awk -v now="$(date +%s.%N)" -v since="$since" 'BEGIN { printf "%.1f", now - since }')
}

# Compares checkpoint folders $1 and $2: bit for bit, or within relative L2 tolerance $3.
compare() {
    "$python" - "$@" <<'PYTHON'
# Compares two checkpoints' safetensors files tensor by tensor: bit for bit, or within a global
# relative L2 tolerance when one is given (numpy only).
import json, struct, sys
import numpy as np

def tensors(path):
    data = open(path, "rb").read()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    header.pop("__metadata__", None)
    body = data[8 + length:]
    return {name: np.frombuffer(body[e["data_offsets"][0]:e["data_offsets"][1]], dtype="<u4")
            for name, e in header.items()}

reference, resumed = sys.argv[1], sys.argv[2]
tolerance = float(sys.argv[3]) if len(sys.argv) > 3 else None
ok = True
for file in ["model.safetensors", "optimizer.safetensors"]:
    a, b = tensors(f"{reference}/{file}"), tensors(f"{resumed}/{file}")
    if a.keys() != b.keys():
        print(f"{file}: tensor names differ: {sorted(a.keys() ^ b.keys())}")
        ok = False
        continue
    if tolerance is not None:
        x = np.concatenate([a[n].view("<f4").astype(np.float64) for n in sorted(a)])
        y = np.concatenate([b[n].view("<f4").astype(np.float64) for n in sorted(a)])
        relative = np.linalg.norm(y - x) / np.linalg.norm(x)
        print(f"{file}: {len(a)} tensors, relative L2 difference {relative:.2e} (at most {tolerance:g})")
        ok = ok and bool(relative <= tolerance)
        continue
    differing = [name for name in a if a[name].shape != b[name].shape or not np.array_equal(a[name], b[name])]
    count = sum(x.size for x in a.values())
    if differing:
        worst = max(differing, key=lambda n: np.abs(a[n].view("<f4") - b[n].view("<f4")).max() if a[n].shape == b[n].shape else np.inf)
        print(f"{file}: {len(differing)} of {len(a)} tensors differ (e.g. {worst})")
        ok = False
    else:
        print(f"{file}: {len(a)} tensors, {count} values, bitwise equal")
sys.exit(0 if ok else 1)
PYTHON
}

# --- The uninterrupted reference run ---
reference=$OUT/reference
echo "reference: an uninterrupted run"
start_job "$reference" "$OUT/reference.log" "$OUT/reference-metrics.jsonl"
wait_job "$(date +%s.%N)"
[[ $status == 0 ]] || { cat "$OUT/reference.log"; echo "FAIL: the reference run ended with $status" >&2; exit 1; }

# --- Kill + resume cycles ---
soak=$OUT/soak
failures=0
for ((cycle = 1; cycle <= CYCLES; cycle++)); do
    from=$(checkpoint_step "$soak")
    resume=()
    ((from > 0)) && resume=(--resume)
    if ((from >= STEPS - 1)); then
        echo "cycle $cycle: the run is at step $from of $STEPS; no step left to kill at"
        break
    fi
    rank=$((RANDOM % RANKS))
    # S in from+2 ... STEPS (at least one step runs), early enough to leave room for the cycles after.
    left_steps=$((STEPS - from - 1))
    window=$((2 * left_steps / (CYCLES - cycle + 2)))
    ((window >= 1)) || window=1
    step=$((from + 2 + RANDOM % window))
    log=$OUT/cycle-$cycle.log
    metrics=$OUT/cycle-$cycle-metrics.jsonl
    rm -f "$metrics"
    kind=$((cycle % 4))   # 1: REPLICA_FAULT kill, 2: kill -9 from outside, 3: SIGTERM to mpirun, 0: crash during a checkpoint write
    if ((kind == 0)); then   # the checkpoint at or after S (the last step's counts too)
        every=$CHECKPOINT_EVERY
        step=$(((step + every - 1) / every * every))
        ((step <= STEPS)) || step=$STEPS
        ((step > from)) || { kind=1; step=$((from + 2)); }
    fi
    if ((kind == 1)); then
        how="REPLICA_FAULT=kill:rank=$rank:step=$step"
        REPLICA_FAULT="kill:rank=$rank:step=$step" start_job "$soak" "$log" "$metrics" "${resume[@]}"
    elif ((kind == 2)); then
        how="kill -9 of rank $rank once step $((step - 1)) is logged"
        start_job "$soak" "$log" "$metrics" "${resume[@]}"
    elif ((kind == 3)); then
        # Rank R stalls 2 s before step S, so that the signal lands in step S whatever the step's speed.
        how="SIGTERM to launch/local.sh once step $((step - 1)) is logged (rank $rank stalls before step $step)"
        REPLICA_FAULT="stall:rank=$rank:step=$step:seconds=2" VIA_SCRIPT=1 start_job "$soak" "$log" "$metrics" "${resume[@]}"
    else
        how="REPLICA_FAULT=crash-during-checkpoint:step=$step"
        REPLICA_FAULT="crash-during-checkpoint:step=$step" start_job "$soak" "$log" "$metrics" "${resume[@]}"
    fi
    # Until the kill: note the rank processes (mpirun's children) and the moment the rank died.
    killed_at=""
    ranks_seen=()
    while [[ -z $killed_at ]] && kill -0 "$job" 2>/dev/null; do
        # mpirun's children supervise the rank workers (their children): note both.
        for pid in $(pgrep -P "$job" || true); do
            for p in "$pid" $(pgrep -P "$pid" || true); do
                [[ " ${ranks_seen[*]} " == *" $p "* ]] || ranks_seen+=("$p")
            done
        done
        if ((kind == 3)); then
            (($(logged_step "$metrics") >= step - 1)) && kill -TERM "$job" && killed_at=$(date +%s.%N)
        elif ((kind != 2)); then
            grep -qE "REPLICA_FAULT: (killing myself|dying midway)" "$log" && killed_at=$(date +%s.%N)
        elif (($(logged_step "$metrics") >= step - 1)); then
            for pid in "${ranks_seen[@]}"; do   # rank r's process has OMPI_COMM_WORLD_RANK=r
                if tr '\0' '\n' 2>/dev/null <"/proc/$pid/environ" | grep -qx "OMPI_COMM_WORLD_RANK=$rank"; then
                    kill -9 "$pid" && killed_at=$(date +%s.%N)
                fi
            done
        fi
        sleep 0.02
    done
    [[ -n $killed_at ]] || killed_at=$(date +%s.%N)
    wait_job "$killed_at"
    reached=$(checkpoint_step "$soak")
    echo "cycle $cycle: resumed from step $from, $how: mpirun exit $status after ${seconds} s, newest checkpoint step $reached"
    if ((kind == 3)) && [[ $status != 0 ]] && { [[ $status != 3 ]] || ((reached != $(logged_step "$metrics"))); }; then
        echo "  stopped by SIGTERM: status $status (3 expected), newest checkpoint step $reached, last step logged $(logged_step "$metrics")"
        failures=$((failures + 1))
    fi
    if ((kind == 0)) && [[ -e $soak/$(printf 'step-%08d' "$step") ]]; then
        echo "  the checkpoint of step $step exists although rank 0 died while writing it"
        failures=$((failures + 1))
    fi
    left=("${ranks_seen[@]}")
    for _ in 1 2 3 4 5; do   # a killed rank is a zombie until init reaps it: give it a moment
        still=()
        for pid in "${left[@]}"; do running "$pid" && still+=("$pid"); done
        left=("${still[@]}")
        ((${#left[@]})) || break
        sleep 1
    done
    if ((${#left[@]})); then
        echo "  rank processes still running 5 s after mpirun ended: ${left[*]} (killed now)"
        kill -9 "${left[@]}" 2>/dev/null || true
        failures=$((failures + 1))
    fi
    if [[ $status == hang ]]; then
        echo "  the job did not end within $END_WITHIN s of the kill (see $log)"
        failures=$((failures + 1))
    elif [[ $status == 0 ]]; then
        echo "  the run finished before the kill took effect"
    fi
done

# --- Finish, then compare ---
from=$(checkpoint_step "$soak")
resume=()
((from > 0)) && resume=(--resume)
start_job "$soak" "$OUT/final.log" "$OUT/final-metrics.jsonl" "${resume[@]}"
wait_job "$(date +%s.%N)"
echo "final: resumed from step $from, mpirun exit $status after ${seconds} s"
[[ $status == 0 ]] || { tail -n 20 "$OUT/final.log"; echo "FAIL: the resumed run did not finish" >&2; exit 1; }

partial=$(find "$soak" -maxdepth 1 -name '.tmp-*' | wc -l)
((partial == 0)) || echo "note: $partial partly written checkpoint folder(s) left in $soak (.tmp-*), not used by --resume"
last=$(printf 'step-%08d' "$STEPS")
compare "$reference/$last" "$soak/$last" || failures=$((failures + 1))

# --- Elastic: 2 ranks × 6, then 1 rank × 6 × 2 micro-steps, then 3 ranks × 4 (a global batch of 12) ---
if [[ ${ELASTIC:-1} == 1 ]]; then
    every=$CHECKPOINT_EVERY third=$((STEPS / 3))
    first=$((every + 2 + RANDOM % (third > 0 ? third : 1)))
    second=$((first + every + 1 + RANDOM % (third > 0 ? third : 1)))
    if ((second >= STEPS)); then
        echo "elastic: $STEPS steps leave no room for two stops $every steps apart; skipped (more STEPS)"
    else
        elastic_reference=$OUT/elastic-reference elastic=$OUT/elastic
        JOB_RANKS=2 start_job "$elastic_reference" "$OUT/elastic-reference.log" "$OUT/elastic-reference-metrics.jsonl" --batch-size 6
        wait_job "$(date +%s.%N)"
        [[ $status == 0 ]] || { tail -n 20 "$OUT/elastic-reference.log"; echo "FAIL: the elastic reference run ended with $status" >&2; exit 1; }
        # One leg: ranks $1, a kill before step $2 (0: none), then options; checks the status and the resume line.
        elastic_leg() {
            local ranks=$1 kill_at=$2 leg=$3
            shift 3
            local log=$OUT/elastic-$leg.log
            if ((kill_at > 0)); then
                REPLICA_FAULT="kill:rank=$((RANDOM % ranks)):step=$kill_at" JOB_RANKS=$ranks start_job "$elastic" "$log" "$OUT/elastic-$leg-metrics.jsonl" "$@"
            else
                JOB_RANKS=$ranks start_job "$elastic" "$log" "$OUT/elastic-$leg-metrics.jsonl" "$@"
            fi
            wait_job "$(date +%s.%N)"
            local killed=""
            ((kill_at > 0)) && killed=", killed before step $kill_at"
            echo "elastic $leg: $ranks rank(s) $*$killed: exit $status, newest checkpoint step $(checkpoint_step "$elastic")"
            if { ((kill_at > 0)) && [[ $status == 0 || $status == hang ]]; } || { ((kill_at == 0)) && [[ $status != 0 ]]; }; then
                echo "  unexpected exit status $status (see $log)"
                failures=$((failures + 1))
            fi
            if [[ " $* " == *" --resume "* ]] && ! grep -q "elastic resume" "$log"; then
                echo "  no 'elastic resume' line in $log"
                failures=$((failures + 1))
            fi
        }
        elastic_leg 2 "$first" 1 --batch-size 6
        elastic_leg 1 "$second" 2 --batch-size 6 --grad-accum 2 --resume
        elastic_leg 3 0 3 --batch-size 4 --resume
        if compare "$elastic_reference/$last" "$elastic/$last" 1e-5; then
            ELASTIC_DONE=", and the 2 → 1 → 3-rank elastic run is within 1e-5 of its uninterrupted reference"
        else
            failures=$((failures + 1))
        fi
    fi
fi

if ((failures)); then
    echo "FAIL: $failures problem(s); logs in $OUT"
    exit 1
fi
echo "PASS: after $CYCLES kill + resume cycles the final parameters equal the uninterrupted run's${ELASTIC_DONE:-} (logs in $OUT)"
