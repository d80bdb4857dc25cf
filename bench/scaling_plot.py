#!/usr/bin/env python3
"""Turns launch/scaling.sh's raw runs (DIR/raw.jsonl) into DIR/scaling.csv and DIR/scaling.png.

    bench/run.sh bench/scaling_plot.py scaling-results/   # (launch/scaling.sh runs it)

Each configuration keeps its fastest repeat. Efficiency = tokens/s on p ranks / (p * tokens/s on
one rank) for the same benchmark and mode: the 1-rank baseline has batch 12 (weak scaling, and
`replica train`) or 24 (strong scaling, a global batch of 24 split over the ranks).
The plot: scaling efficiency against ranks (left) and where a 2-rank weak-scaling step spends its
time (right): forward+backward compute, and the rest of the step (all-reduce time not hidden
behind backward, plus the optimizer, which the 1-rank bar shows alone); bars are labelled with
the link, the bucket size and overlap on/off.
"""
import csv
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLUMNS = ["benchmark", "mode", "ranks", "nodes", "bandwidth", "bucket_mb", "overlap", "batch_per_rank",
           "oversubscribed", "tokens_per_s", "efficiency", "ms_per_step", "compute_ms", "exposed_ms", "comm_ms",
           "overlap_fraction", "load"]
RATE_ORDER = {"local": 0, "100mbit": 1, "1gbit": 2, "10gbit": 3}


def key(config):
    return tuple(config[k] for k in ("benchmark", "mode", "ranks", "nodes", "bandwidth", "bucket_mb", "overlap",
                                     "batch_per_rank"))


def load_rows(directory):
    best = {}
    for line in (directory / "raw.jsonl").read_text().splitlines():
        if not line.strip():
            continue
        run = json.loads(line)
        config, result = run["config"], run["result"]
        k = key(config)
        if k not in best or result["tokens_per_s"] > best[k][1]["tokens_per_s"]:
            best[k] = (config, result)
    baselines = {}
    for config, result in best.values():
        if config["ranks"] == 1 and config["mode"] in ("weak", "strong"):
            baselines[(config["benchmark"], config["mode"])] = result["tokens_per_s"]
    rows = []
    for config, result in best.values():
        base = baselines.get((config["benchmark"], config["mode"]))
        row = {k: config[k] for k in ("benchmark", "mode", "ranks", "nodes", "bandwidth", "bucket_mb", "overlap",
                                      "batch_per_rank", "oversubscribed", "load")}
        row["tokens_per_s"] = round(result["tokens_per_s"], 1)
        row["efficiency"] = round(result["tokens_per_s"] / (config["ranks"] * base), 4) if base else ""
        for name in ("ms_per_step", "compute_ms", "comm_ms"):
            row[name] = round(result[name], 3) if name in result else ""
        row["exposed_ms"] = round(result["ms_per_step"] - result["compute_ms"], 3) if "compute_ms" in result else ""
        row["overlap_fraction"] = round(result["overlap_fraction"], 4) if "overlap_fraction" in result else ""
        rows.append(row)
    rows.sort(key=lambda r: (r["benchmark"], r["mode"], r["nodes"], RATE_ORDER.get(r["bandwidth"], 9), r["ranks"],
                             -float(r["bucket_mb"]), r["overlap"]))
    return rows


def plot(rows, path):
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    # Left: efficiency vs ranks; smallest bucket with overlap on for the bench-step lines.
    buckets = sorted({float(r["bucket_mb"]) for r in rows if r["benchmark"] == "bench-step" and r["ranks"] > 1})
    small = buckets[0] if buckets else None
    series = {}
    for r in rows:
        if r["efficiency"] == "":
            continue
        if r["benchmark"] == "bench-step" and r["ranks"] > 1 and (float(r["bucket_mb"]) != small or r["overlap"] != "on"):
            continue
        place = "1 node" if r["nodes"] == 1 else f"2 nodes, {r['bandwidth']}"
        label = f"{r['benchmark']} {r['mode']}, {place}"
        series.setdefault((r["benchmark"], r["mode"], r["nodes"], RATE_ORDER.get(r["bandwidth"], 9), label), []).append(r)
    # 1-rank baselines belong to every line of their mode.
    for (benchmark, mode, nodes, _, label), points in series.items():
        if nodes > 1:
            points += [r for r in rows if r["benchmark"] == benchmark and r["mode"] == mode and r["ranks"] == 1]
    for (benchmark, mode, nodes, _, label), points in sorted(series.items()):
        points.sort(key=lambda r: r["ranks"])
        style = "-" if mode == "weak" else "--"
        if benchmark == "train":
            style = ":"
        line, = left.plot([r["ranks"] for r in points], [r["efficiency"] for r in points], style, marker="o", label=label)
        over = [r for r in points if r["oversubscribed"]]
        left.scatter([r["ranks"] for r in over], [r["efficiency"] for r in over], s=120, facecolors="none",
                     edgecolors=line.get_color())
    left.axhline(1.0, color="grey", linewidth=0.8)
    left.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
    left.text(3.05, 0.52, "4 ranks on 2 cores: at most 0.5", fontsize=8, color="grey")
    left.set_xticks([1, 2, 4])
    left.set_xlabel("ranks (circled: oversubscribed, more ranks than cores)")
    left.set_ylabel("scaling efficiency = tokens/s ÷ (ranks × 1-rank tokens/s)")
    left.set_title(f"Scaling efficiency (bench step: bucket {small} MiB, overlap on)")
    highest = max((r["efficiency"] for r in rows if r["efficiency"] != ""), default=1.0)
    left.set_ylim(0, max(1.15, 1.05 * highest))
    left.legend(fontsize=7, loc="lower left")

    # Right: 2-rank weak-scaling step time, compute vs the rest.
    bars = [r for r in rows if r["benchmark"] == "bench-step" and r["mode"] == "weak" and r["ranks"] in (1, 2)
            and r["ms_per_step"] != ""]
    bars.sort(key=lambda r: (r["ranks"], r["nodes"], RATE_ORDER.get(r["bandwidth"], 9), -float(r["bucket_mb"]), r["overlap"]))
    labels, compute, rest = [], [], []
    for r in bars:
        where = "1 rank" if r["ranks"] == 1 else ("1 node" if r["nodes"] == 1 else r["bandwidth"])
        labels.append(f"{where}\n{r['bucket_mb']} MiB\n{r['overlap']}" if r["ranks"] > 1 else where)
        compute.append(r["compute_ms"])
        rest.append(max(0.0, r["exposed_ms"]))
    x = range(len(bars))
    right.bar(x, compute, label="forward + backward (compute)")
    right.bar(x, rest, bottom=compute, label="rest: exposed all-reduce + optimizer")
    for i, r in enumerate(bars):
        if r["ranks"] > 1 and r["overlap_fraction"] != "":
            right.text(i, r["ms_per_step"] * 1.02, f"{100 * r['overlap_fraction']:.0f}%", ha="center", fontsize=7)
    right.set_xticks(list(x))
    right.set_xticklabels(labels, fontsize=6)
    right.set_ylabel("ms per step")
    right.set_title("2 ranks, weak scaling: step time (label: share of all-reduce hidden)")
    right.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main():
    directory = Path(sys.argv[1] if len(sys.argv) > 1 else "scaling-results")
    rows = load_rows(directory)
    with open(directory / "scaling.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, directory / "scaling.png")
    print(f"{len(rows)} configurations -> {directory / 'scaling.csv'}, {directory / 'scaling.png'}")


if __name__ == "__main__":
    main()
