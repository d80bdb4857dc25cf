#!/usr/bin/env bash
# Strong and weak scaling of the training step on 1, 2, 4 ranks, on one node and across 2
# simulated nodes (cluster/) at several link rates, with overlap on and off and two bucket sizes,
# for the baby GPT (charlm's default, 0.8 M parameters), with and without ZeRO-1 (--zero 1); then
# a few configurations of GPT-2 small (85.8 M parameters) with and without ZeRO-1; then the
# all-reduce α/β runs for the cost model; at each baby rate, how gradients travel (Open MPI's
# binomial against Replica's ring, 16-bit and PowerSGD compression, the hierarchical all-reduce on 2
# nodes × 2 ranks), and at 1 Gbit/s the ring against the binomial on 4 simulated nodes. Writes DIR/scaling.csv, DIR/scaling.png,
# DIR/raw.jsonl (every run), DIR/allreduce-*.json (the links, for the cost model) and DIR/cost_model.txt.
#
#   launch/scaling.sh                      # default DIR scaling-results/, about 20-25 minutes (gpt2-small 6-8 of them)
#   launch/scaling.sh --quick --out /tmp/s # baby only (MODELS overrides): 1gbit, one small bucket, fewer steps: ~3 minutes
#
# baby, weak scaling: 12 sequences of 64 tokens per rank (the default batch), so the global batch
# grows with the ranks. Strong scaling: a global batch of 24 sequences split over the ranks (24, 12, 6).
# Every baby configuration runs with ZeRO 0; with 1 in ZERO, the weak-scaling bench steps with
# overlap on run again with --zero 1 (each bucket and rank count, each placement).
# gpt2-small (bench step --preset gpt2-small), weak scaling at 1 sequence of 1024 tokens per rank,
# 25 MiB buckets, overlap on, each stage of ZERO: 1 rank (ZeRO 0 only: on one rank ZeRO 1 is the
# same step) and 2 ranks on one node, and 2 ranks on 2 simulated nodes (one a node) at each rate of
# GPT_RATES. A step takes about 8 s on one thread, so GPT_STEPS timed steps after GPT_WARMUP_STEPS.
# Efficiency = tokens/s on p ranks ÷ (p × tokens/s on 1 rank) for the same model and mode (for strong
# scaling that is speed-up ÷ p). 4 ranks on this 2-core machine share cores (oversubscribed,
# marked in the CSV), which halves their efficiency by construction; the simulated nodes also
# share the same cores. The cross-node runs need root (network namespaces); without it they are
# left out and the CSV says so by their absence.
# Knobs (environment): REPLICA_BIN (default .build/release/replica), MODELS ("baby gpt2-small"; with
# --quick "baby"), ZERO ("0 1"), RATES ("100mbit 1gbit 10gbit", baby's), BUCKETS ("25 0.5", MiB, baby's:
# 25 is one bucket for the 3.2 MB of baby's gradients, 0.5 gives 7), STEPS (baby's timed bench steps,
# 20), REPEATS (runs of each configuration, the fastest kept; 1), LOCAL_REPEATS (the same for baby's
# one-node runs, which take seconds and whose ranks share the cores with the OS and each other, so
# one run can catch a disturbance; 3), GPT_RATES ("1gbit 10gbit"), GPT_LOCAL_RANKS ("1 2": gpt2-small's
# one-node rank counts), GPT_STEPS (3), GPT_WARMUP_STEPS (1), GPT_REPEATS (1). Python (numpy,
# matplotlib) runs in the repository's venv, made and filled by launch/python.sh (REPLICA_VENV).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
source launch/common.sh
source launch/python.sh
source cluster/common.sh

out=scaling-results quick=0
while (($#)); do
    case $1 in
        --out) [[ $# -ge 2 ]] || { echo "usage: launch/scaling.sh [--out DIR] [--quick]" >&2; exit 1; }; out=$2; shift 2 ;;
        --quick) quick=1; shift ;;
        *) echo "usage: launch/scaling.sh [--out DIR] [--quick]" >&2; exit 1 ;;
    esac
done
models_default="baby gpt2-small"
((quick)) && models_default=baby
MODELS=${MODELS:-$models_default}
ZERO=${ZERO:-"0 1"}
RATES=${RATES:-"100mbit 1gbit 10gbit"}
BUCKETS=${BUCKETS:-"25 0.5"}
STEPS=${STEPS:-20}
REPEATS=${REPEATS:-1}
LOCAL_REPEATS=${LOCAL_REPEATS:-3}
GPT_RATES=${GPT_RATES:-"1gbit 10gbit"}
GPT_LOCAL_RANKS=${GPT_LOCAL_RANKS:-"1 2"}
GPT_STEPS=${GPT_STEPS:-3}
GPT_WARMUP_STEPS=${GPT_WARMUP_STEPS:-1}
GPT_REPEATS=${GPT_REPEATS:-1}
COMPRESSION=${COMPRESSION:-"bf16 powersgd"}
COMMUNICATION=${COMMUNICATION:-1}
FOUR_NODES=${FOUR_NODES:-1}
if ((quick)); then RATES=${QUICK_RATES:-1gbit} BUCKETS=0.5 STEPS=8 LOCAL_REPEATS=1; fi
for word in $MODELS; do
    [[ $word == baby || $word == gpt2-small ]] || { echo "error: MODELS: $word is not baby or gpt2-small" >&2; exit 1; }
done
for word in $ZERO; do
    [[ $word == 0 || $word == 1 ]] || { echo "error: ZERO: $word is not 0 or 1" >&2; exit 1; }
done
# Whether word $1 is in the list $2.
has() { [[ " $2 " == *" $1 "* ]]; }
python=$(replica_python_env "${REPLICA_PYTHON_PLOT[@]}") # the CSV and plot
BINARY=$(realpath "${REPLICA_BIN:-.build/release/replica}" 2>/dev/null || true)
[[ -x $BINARY ]] || { swift build -c release --product replica; BINARY=$root/.build/release/replica; }
export REPLICA_BIN=$BINARY
mkdir -p "$out"
raw=$out/raw.jsonl
: >"$raw"
cores=$(nproc)
read -r -a flags <<<"$(replica_mpirun_flags)"

# Runs one configuration: where (one-node or the cluster), ranks, then replica's arguments; appends
# {"config": {...}, "result": <replica's JSON summary>} to raw.jsonl.
# Config fields come from the environment of the call: nodes, bandwidth, mode, benchmark, model
# (the GPT preset, passed as --preset), zero (passed as --zero when not 0), compression (as
# --grad-compression, PowerSGD from step 0), allreduce_option (--allreduce) and hierarchical.
model=baby zero=0 compression=none allreduce_option=auto hierarchical=false
run() {
    local ranks=$1 batch=$2 bucket=$3 overlap=$4
    shift 4
    local arguments=("$@" --preset "$model" --batch-size "$batch" --bucket-mb "$bucket" --threads 1 --json --allreduce "$allreduce_option")
    [[ $overlap == off ]] && arguments+=(--no-overlap)
    [[ $zero == 0 ]] || arguments+=(--zero "$zero")
    [[ $compression == none ]] || arguments+=(--grad-compression "$compression")
    [[ $compression == powersgd ]] && arguments+=(--powersgd-start-step 0)
    [[ $hierarchical == true ]] && arguments+=(--hierarchical)
    local attempt line repeats=$REPEATS
    [[ $nodes == 1 ]] && repeats=$LOCAL_REPEATS
    for ((attempt = 1; attempt <= repeats; attempt++)); do
        if [[ $nodes == 1 ]]; then
            line=$(mpirun "${flags[@]}" --bind-to none -np "$ranks" "$BINARY" "${arguments[@]}" 2>/dev/null | tail -n 1)
        else
            line=$(cluster/run.sh -np "$ranks" replica "${arguments[@]}" 2>/dev/null | tail -n 1)
        fi
        [[ $line == \{* ]] || { echo "error: no JSON summary from ranks=$ranks nodes=$nodes ${arguments[*]}" >&2; exit 2; }
        local oversubscribed=false
        ((ranks > cores)) && oversubscribed=true
        printf '{"config": {"benchmark": "%s", "model": "%s", "mode": "%s", "ranks": %d, "nodes": %d, "bandwidth": "%s", "bucket_mb": %s, "overlap": "%s", "zero": %d, "batch_per_rank": %d, "compression": "%s", "allreduce_option": "%s", "hierarchical": %s, "oversubscribed": %s, "load": %s}, "result": %s}\n' \
            "$benchmark" "$model" "$mode" "$ranks" "$nodes" "$bandwidth" "$bucket" "$overlap" "$zero" "$batch" "$compression" \
            "$allreduce_option" "$hierarchical" "$oversubscribed" "$(cut -d' ' -f1 /proc/loadavg)" "$line" >>"$raw"
        echo "  $benchmark $model $mode ranks=$ranks nodes=$nodes $bandwidth bucket=${bucket}MB overlap=$overlap zero=$zero compression=$compression allreduce=$allreduce_option hierarchical=$hierarchical: $("$python" -c 'import json,sys; r=json.loads(sys.argv[1]); print("%.1f ms/step, %.0f tokens/s, comm %.1f ms, %.0f%% hidden" % (r.get("ms_per_step", 0), r["tokens_per_s"], r.get("comm_ms", 0), 100 * r.get("overlap_fraction", 0)))' "$line")"
    done
}

# Every multi-rank baby configuration of one placement: modes × ranks × overlap × buckets, bench
# step; then the weak-scaling ones with overlap on again with each ZeRO stage of ZERO above 0.
sweep() {
    local ranks_list=$1 steps=$2
    local mode ranks batch bucket overlap stage
    benchmark=bench-step model=baby
    for mode in weak strong; do
        for ranks in $ranks_list; do
            if [[ $mode == weak ]]; then batch=12; else batch=$((24 / ranks)); fi
            for bucket in $BUCKETS; do
                for overlap in on off; do
                    zero=0 run "$ranks" "$batch" "$bucket" "$overlap" bench step --model charlm --steps "$steps" --warmup-steps 3
                done
                [[ $mode == weak ]] || continue
                for stage in $ZERO; do
                    [[ $stage == 0 ]] && continue
                    zero=$stage run "$ranks" "$batch" "$bucket" on bench step --model charlm --steps "$steps" --warmup-steps 3
                done
            done
        done
    done
}

# gpt2-small at one placement: bench step, batch 1, 25 MiB buckets, overlap on, for each rank count
# of $1 and each ZeRO stage of ZERO (one rank: ZeRO 0 only).
gpt2_runs() {
    local ranks stage
    benchmark=bench-step model=gpt2-small mode=weak
    for ranks in $1; do
        for stage in $ZERO; do
            ((ranks == 1 && stage != 0)) && continue
            zero=$stage LOCAL_REPEATS=$GPT_REPEATS REPEATS=$GPT_REPEATS run "$ranks" 1 25 on \
                bench step --model charlm --steps "$GPT_STEPS" --warmup-steps "$GPT_WARMUP_STEPS"
        done
    done
    model=baby zero=0
}

# How gradients travel, baby, weak scaling, 0.5 MiB buckets, overlap on (the sweep's runs are
# uncompressed with --allreduce auto): 2 ranks one a node with Open MPI's binomial and with the
# ring, and compressed; 4 ranks, 2 a node, flat binomial and hierarchical with each leaders' algorithm.
communication_runs() {
    local steps=$1 c a
    benchmark=bench-step model=baby mode=weak zero=0
    for a in binomial ring; do allreduce_option=$a run 2 12 0.5 on bench step --model charlm --steps "$steps" --warmup-steps 3; done
    for c in $COMPRESSION; do compression=$c run 2 12 0.5 on bench step --model charlm --steps "$steps" --warmup-steps 3; done
    allreduce_option=binomial run 4 12 0.5 on bench step --model charlm --steps "$steps" --warmup-steps 3
    for a in binomial ring; do
        hierarchical=true allreduce_option=$a run 4 12 0.5 on bench step --model charlm --steps "$steps" --warmup-steps 3
    done
}

nodes=1 bandwidth=local
if has baby "$MODELS"; then
    echo "== one node: bench step (baby, $STEPS timed steps), 1/2/4 ranks"
    benchmark=bench-step model=baby zero=0
    # 1-rank baselines: batch 12 (weak), 24 (strong); 6 is the per-rank compute of strong scaling on 4 ranks.
    # Every efficiency divides by these, so they run one more time than the rest (the fastest is kept).
    for batch in 12 24 6; do
        mode=weak
        [[ $batch == 24 ]] && mode=strong
        [[ $batch == 6 ]] && mode=compute
        LOCAL_REPEATS=$((LOCAL_REPEATS + 1)) run 1 "$batch" 25 on bench step --model charlm --steps "$STEPS" --warmup-steps 3
    done
    sweep "2 4" "$STEPS"
    echo "== one node: replica train charlm (baby, 30 steps, weak)"
    benchmark=train mode=weak
    for ranks in 1 2 4; do run "$ranks" 12 25 on train charlm --steps 30 --eval-interval 0 --quiet; done
fi
if has gpt2-small "$MODELS"; then
    echo "== one node: bench step (gpt2-small, batch 1, $GPT_STEPS timed steps), ranks $GPT_LOCAL_RANKS, ZeRO $ZERO"
    gpt2_runs "$GPT_LOCAL_RANKS"
fi
# The cost model's links: Open MPI's ring (both directions of a link at once) and reduce-then-broadcast
# (one direction at a time, as the binomial all-reduce behind Replica's MPI_Iallreduce uses a link).
ring=(--mca coll_tuned_use_dynamic_rules 1 --mca coll_tuned_allreduce_algorithm 4)
oneway=(--mca coll_tuned_use_dynamic_rules 1 --mca coll_tuned_allreduce_algorithm 2)
echo "== one node: all-reduce (2 ranks, ring and reduce-then-broadcast)"
mpirun "${flags[@]}" --bind-to none "${ring[@]}" -np 2 "$BINARY" bench allreduce --iters 3 --json 2>/dev/null | tail -n 1 >"$out/allreduce-local.json"
mpirun "${flags[@]}" --bind-to none "${oneway[@]}" -np 2 "$BINARY" bench allreduce --iters 3 --json 2>/dev/null | tail -n 1 >"$out/allreduce-local-oneway.json"

if [[ $(id -u) -eq 0 ]] && command -v ip >/dev/null; then
    # The cluster goes, whatever happens from here.
    trap 'cluster/down.sh >/dev/null 2>&1 || true' EXIT
    cluster/down.sh >/dev/null
    nodes=2
    # Every rate some model runs at: baby's RATES, then gpt2-small's GPT_RATES.
    rates=()
    has baby "$MODELS" && rates+=($RATES)
    if has gpt2-small "$MODELS"; then
        for bandwidth in $GPT_RATES; do has "$bandwidth" "${rates[*]}" || rates+=("$bandwidth"); done
    fi
    for bandwidth in "${rates[@]}"; do
        echo "== 2 simulated nodes at $bandwidth"
        cluster/up.sh 2 --rate "$bandwidth" >/dev/null
        steps=$STEPS
        # At 100 Mbit/s a step is mostly waiting: fewer steps keep the sweep short.
        (($(cluster_rate_bits "$bandwidth") < 1000000000)) && steps=$(((STEPS + 1) / 2))
        if has baby "$MODELS" && has "$bandwidth" "$RATES"; then
            sweep "2 4" "$steps"
            if [[ $bandwidth == 1gbit ]]; then
                benchmark=train mode=weak
                for ranks in 2 4; do run "$ranks" 12 25 on train charlm --steps 30 --eval-interval 0 --quiet; done
            fi
        fi
        if has baby "$MODELS" && has "$bandwidth" "$RATES" && ((COMMUNICATION)); then
            echo "== 2 simulated nodes at $bandwidth: binomial, ring, compression, hierarchical"
            communication_runs "$steps"
        fi
        # gpt2-small: 2 ranks, one a node (cluster/run.sh maps ⌈2/2⌉ = 1 rank a node).
        has gpt2-small "$MODELS" && has "$bandwidth" "$GPT_RATES" && gpt2_runs 2
        # α and β of the link: 2 ranks, one a node, tuned ring all-reduce; big messages only where they are quick.
        sizes=4K,16K,64K,256K,1M,4M
        [[ $steps == "$STEPS" ]] && sizes=$sizes,16M
        cluster/run.sh -np 2 --map-by ppr:1:node "${ring[@]}" -- replica bench allreduce --sizes "$sizes" --iters 2 --json \
            2>/dev/null | tail -n 1 >"$out/allreduce-$bandwidth.json"
        cluster/run.sh -np 2 --map-by ppr:1:node "${oneway[@]}" -- replica bench allreduce --sizes "$sizes" --iters 2 --json \
            2>/dev/null | tail -n 1 >"$out/allreduce-$bandwidth-oneway.json"
    done
    if has baby "$MODELS" && has 1gbit "$RATES" && ((FOUR_NODES)); then
        echo "== 4 simulated nodes at 1gbit: 4 ranks, one a node, binomial and ring"
        cluster/up.sh 4 --rate 1gbit >/dev/null
        nodes=4 bandwidth=1gbit benchmark=bench-step model=baby mode=weak zero=0
        for a in binomial ring; do allreduce_option=$a run 4 12 0.5 on bench step --model charlm --steps "$STEPS" --warmup-steps 3; done
        allreduce_option=auto
    fi
    cluster/down.sh >/dev/null
    trap - EXIT
else
    echo "== not root: the cross-node configurations (network namespaces) are left out" >&2
fi

"$python" bench/scaling_plot.py "$out"
"$python" bench/cost_model.py "$out" | tee "$out/cost_model.txt"
echo "wrote $out/scaling.csv, $out/scaling.png, $out/cost_model.txt"
