#!/usr/bin/env bash
# Builds the libFuzzer targets for Replica's loaders and runs each for SECONDS (default 60).
# Prints the executions per target and whether it ran clean; exits 1 if any target found a crash,
# a hang (-timeout), an out-of-memory input (-rss_limit_mb) or an internal error.
#
#   Tests/fuzz/run.sh                  # every target, 60 s each, one at a time
#   Tests/fuzz/run.sh 600              # 10 minutes each
#   JOBS=2 Tests/fuzz/run.sh 600       # two targets at a time
#   TARGETS="safetensors text" Tests/fuzz/run.sh 30
#   Tests/fuzz/run.sh 0                # build only
#
# Knobs: TARGETS (default: all), JOBS (1), OUT (.build-fuzz/fuzz), RSS_LIMIT_MB (2048),
# TIMEOUT (10 s per input), SANITIZERS (fuzzer,address). Artifacts (inputs that failed) land in
# OUT/artifacts/TARGET/, logs in OUT/logs/TARGET.log, the growing corpus in OUT/corpus/TARGET/;
# the committed seeds in Tests/fuzz/corpus/TARGET/ are read, never written.
set -euo pipefail
cd "$(dirname "$0")/../.."

SECONDS_EACH=${1:-60}
ALL_TARGETS="safetensors gzip-lines node-csv text translation bpe-vocabulary"
TARGETS=${TARGETS:-$ALL_TARGETS}
JOBS=${JOBS:-1}
OUT=${OUT:-.build-fuzz/fuzz}
RSS_LIMIT_MB=${RSS_LIMIT_MB:-2048}
TIMEOUT=${TIMEOUT:-10}
SANITIZERS=${SANITIZERS:-fuzzer,address}
FUZZ=Tests/fuzz

# The largest input libFuzzer makes for each target (the seeds are at most 64 KiB).
max_len() {
    case $1 in
        safetensors) echo 65536 ;;
        node-csv | translation) echo 32768 ;;
        *) echo 16384 ;;
    esac
}

# --- Build --------------------------------------------------------------------------------------
# The library sources are compiled with swiftc (not SwiftPM) so that they carry libFuzzer's
# coverage instrumentation and AddressSanitizer; the C modules come from their module maps and
# pkg-config, as SwiftPM finds them.
mkdir -p "$OUT/modules" "$OUT/bin" "$OUT/logs"
read -r -a cflags <<<"$(pkg-config --cflags zlib openblas)"
read -r -a libs <<<"$(pkg-config --libs zlib openblas)"
xcc=()
for flag in "${cflags[@]}"; do xcc+=(-Xcc "$flag"); done
common=(-O -g -swift-version 5 -parse-as-library -sanitize="$SANITIZERS"
    -I "$OUT/modules" -I Sources/CBLAS -I Sources/CZlib "${xcc[@]}")

# Whether $1 is missing or older than any of the remaining files.
stale() {
    local target=$1
    shift
    [[ ! -e $target ]] && return 0
    for file in "$@"; do [[ $file -nt $target ]] && return 0; done
    return 1
}

build_module() {   # name, extra flags..., -- sources...
    local name=$1
    shift
    local flags=()
    while [[ $1 != -- ]]; do flags+=("$1"); shift; done
    shift
    if stale "$OUT/$name.o" "$@" "$0"; then
        echo "== building $name (instrumented)"
        swiftc "${common[@]}" "${flags[@]}" -module-name "$name" -wmo -c "$@" -o "$OUT/$name.o" \
            -emit-module -emit-module-path "$OUT/modules/$name.swiftmodule"
        touch "$OUT/$name.o"   # swiftc leaves an unchanged object file's time alone
    fi
}

build_module ReplicaCore -- Sources/ReplicaCore/*.swift
build_module ReplicaData -enable-testing -- Sources/ReplicaData/*.swift "$FUZZ/Support/ResourceBundle.swift"
for target in $TARGETS; do
    source=$FUZZ/Targets/$target.swift
    [[ -f $source ]] || { echo "no such fuzz target: $target (have: $ALL_TARGETS)" >&2; exit 1; }
    if stale "$OUT/bin/$target" "$source" "$FUZZ/Support/FuzzSupport.swift" "$OUT/ReplicaCore.o" "$OUT/ReplicaData.o"; then
        echo "== building fuzz target $target"
        swiftc "${common[@]}" -module-name "Fuzz_${target//-/_}" "$FUZZ/Support/FuzzSupport.swift" "$source" \
            "$OUT/ReplicaCore.o" "$OUT/ReplicaData.o" "${libs[@]}" -use-ld=lld -o "$OUT/bin/$target"
    fi
done
[[ $SECONDS_EACH -gt 0 ]] || { echo "built: $OUT/bin/{${TARGETS// /,}}"; exit 0; }

# --- Run ----------------------------------------------------------------------------------------
run_target() {
    local target=$1
    mkdir -p "$OUT/corpus/$target" "$OUT/artifacts/$target"
    local dict=()
    [[ -f $FUZZ/dict/$target.dict ]] && dict=(-dict="$FUZZ/dict/$target.dict")
    local seeds=()
    [[ -d $FUZZ/corpus/$target ]] && seeds=("$FUZZ/corpus/$target")
    # SWIFT_BACKTRACE off: libFuzzer, not Swift's backtracer, must see a trap to save the input.
    # One BLAS thread: OpenBLAS's idle pool would spin on the cores the fuzzers share.
    OPENBLAS_NUM_THREADS=1 SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=0} \
        "$OUT/bin/$target" -max_total_time="$SECONDS_EACH" -rss_limit_mb="$RSS_LIMIT_MB" -timeout="$TIMEOUT" \
        -max_len="$(max_len "$target")" -print_final_stats=1 -artifact_prefix="$OUT/artifacts/$target/" \
        "${dict[@]}" "$OUT/corpus/$target" "${seeds[@]}" >"$OUT/logs/$target.log" 2>&1
}

echo "== fuzzing ${TARGETS// /, } for $SECONDS_EACH s each, $JOBS at a time (logs in $OUT/logs/)"
declare -A status
running=()
for target in $TARGETS; do
    rm -f "$OUT/artifacts/$target"/* 2>/dev/null || true
    run_target "$target" &
    running+=("$!:$target")
    while ((${#running[@]} >= JOBS)); do
        still=()
        for entry in "${running[@]}"; do
            if kill -0 "${entry%%:*}" 2>/dev/null; then still+=("$entry"); else
                wait "${entry%%:*}" && status[${entry#*:}]=0 || status[${entry#*:}]=$?
            fi
        done
        running=("${still[@]}")
        ((${#running[@]} >= JOBS)) && sleep 1
    done
done
for entry in "${running[@]}"; do
    wait "${entry%%:*}" && status[${entry#*:}]=0 || status[${entry#*:}]=$?
done

failed=0
printf '%-16s %14s %10s %8s  %s\n' target executions exec/s rss_mb result
for target in $TARGETS; do
    log=$OUT/logs/$target.log
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    [[ -n $runs ]] || runs=$( (grep -o '^#[0-9]*' "$log" || true) | tail -1 | tr -d '#')
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)
    artifacts=$(find "$OUT/artifacts/$target" -type f | head -3 | tr '\n' ' ')
    if [[ ${status[$target]} -eq 0 && -z $artifacts ]]; then
        result=clean
    else
        result="FAILED (exit ${status[$target]}) $(grep -m1 -E 'ERROR: libFuzzer|SUMMARY|Fatal error|fuzz invariant' "$log" || true) ${artifacts}"
        failed=1
    fi
    printf '%-16s %14s %10s %8s  %s\n' "$target" "${runs:-?}" "${rate:-?}" "${rss:-?}" "$result"
done
if ((failed)); then
    echo "fuzzing found a failure; reproduce with: SWIFT_BACKTRACE=enable=no $OUT/bin/TARGET ARTIFACT" >&2
    exit 1
fi
echo "all targets ran clean"
