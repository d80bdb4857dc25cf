#!/usr/bin/env python3
"""Where a training step's time goes: `perf record` on `replica bench step`, samples summed by kernel.

    python3 bench/perf_step.py [--replica .build/release/replica] [--delay-ms 5000] -- --model charlm --threads 1 --steps 300

Everything after `--` goes to `replica bench step`. perf (Debian's linux-perf) samples the process
at 1999 Hz from `--delay-ms` on, so that the start-up (data, the model, the 1-thread sgemm rate
that `mfu` is measured against, the warm-up steps) stays out; give enough steps that the timed
part lasts well past the delay. OpenBLAS is built without frame pointers, so samples are grouped
by the function they fall in, not by caller: the table says which kernels the step spends its
time in (sgemm's own kernel, its packing of operands, GELU, LayerNorm, ...), and the share of all
samples each has. Prints a Markdown table and `replica bench step`'s summary line.
"""
import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile

# (group, pattern on the symbol), first match wins.
GROUPS = [
    ("sgemm: kernel", r"sgemm_(small_)?kernel"),
    ("sgemm: packing operands, scaling C", r"sgemm_\w*copy|sgemm_beta|sgemm_small_matrix_permit"),
    ("GELU", r"GELU|gelu"),
    ("LayerNorm", r"LayerNorm"),
    ("attention's products (TileProduct)", r"TileProduct"),
    ("attention outside sgemm (softmax, masks)", r"AttentionKernel|SelfAttention|MultiHeadAttention"),
    ("optimizer, gradient norm and clipping", r"Adam|SGD|clipGradients|gradientSquaredSum|gradientNorm"),
    ("cross-entropy", r"CrossEntropy"),
    ("embeddings", r"Embedding"),
    ("memset, memcpy (zeroing, copies)", r"memset|memmove|memcpy"),
    ("allocation and Swift runtime", r"malloc|free|swift_|_int_|cfree|Array|Storage"),
    ("kernel (page faults, scheduling)", r"^\[k\]"),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replica", default=".build/release/replica")
    parser.add_argument("--delay-ms", type=int, default=5000)
    parser.add_argument("bench_args", nargs=argparse.REMAINDER)
    options = parser.parse_args()
    bench_args = [a for a in options.bench_args if a != "--"] or ["--model", "charlm", "--threads", "1", "--steps", "300"]
    with tempfile.TemporaryDirectory() as scratch:
        data = os.path.join(scratch, "perf.data")
        run = subprocess.run(["perf", "record", "-q", "-F", "1999", "-D", str(options.delay_ms), "-o", data, "--",
                              options.replica, "bench", "step", "--json", *bench_args],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if run.returncode != 0:
            sys.exit(f"perf record failed ({run.returncode}): {run.stderr.strip()}")
        report = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "sym", "--stdio", "-q",
                                 "--percent-limit", "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                check=True)
    shares = collections.Counter()
    top = collections.defaultdict(list)
    for line in report.stdout.splitlines():
        match = re.match(r"\s*([\d.]+)%\s+(\[[.k]\])\s+(.*\S)", line)
        if not match:
            continue
        share, kind, symbol = float(match.group(1)), match.group(2), match.group(3)
        name = f"{kind} {symbol}"
        group = next((g for g, pattern in GROUPS if re.search(pattern, name)), "other")
        shares[group] += share
        top[group].append((share, symbol))
    names = demangle(sorted({symbol for entries in top.values() for _, symbol in entries}))
    print("| where | share of the step | largest functions |")
    print("|---|---|---|")
    for group, share in shares.most_common():
        largest = ", ".join(f"{names[symbol]} {s:.1f}%" for s, symbol in sorted(top[group], reverse=True)[:3])
        print(f"| {group} | {share:.1f}% | {largest} |")
    summary = [line for line in run.stdout.splitlines() if line.startswith("{")]
    print(summary[-1] if summary else "(no summary line)")


def demangle(symbols):
    """Readable names of Swift's mangled symbols (`swift demangle --simplified`), the others as they are."""
    run = subprocess.run(["swift", "demangle", "--simplified", "--compact"], input="\n".join(symbols),
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    names = run.stdout.splitlines() if run.returncode == 0 else []
    if len(names) != len(symbols):
        return {symbol: symbol for symbol in symbols}
    return {symbol: re.sub(r"\(.*", "", name) for symbol, name in zip(symbols, names)}


if __name__ == "__main__":
    main()
