#!/usr/bin/env python3
"""Turns launch/scaling.sh's raw runs (DIR/raw.jsonl) into DIR/scaling.csv and DIR/scaling.png.

    bench/run.sh bench/scaling_plot.py scaling-results/   # (launch/scaling.sh runs it)

Each configuration keeps its fastest repeat. A configuration is the benchmark, the model (the GPT
preset: baby, gpt2-small), the mode, ranks, nodes, link, bucket size, overlap, the ZeRO stage
(0, or 1: the optimizer state sharded), the per-rank batch, and how gradients travel: the
compression (none, bf16, powersgd), the requested --allreduce (auto, ring, binomial) and
--hierarchical; the CSV's `allreduce` is the schedule the run reported for its largest bucket
("ring", "binomial", "hierarchical ring"). raw.jsonl files written before `model` and `zero`
existed count as baby and ZeRO 0, before the communication fields as uncompressed, flat
binomial (Open MPI's own, all there was). Efficiency = tokens/s on p ranks / (p *
tokens/s on one rank) for the same benchmark, model and mode, whatever the ZeRO stage (on one rank
ZeRO 1 is plain data parallelism): the 1-rank baseline has batch 12 (baby weak scaling, and
`replica train`), 24 (baby strong scaling, a global batch of 24 split over the ranks) or 1
(gpt2-small, weak).
The plot has one column a model: scaling efficiency against ranks (top) and where a 2-rank
weak-scaling step spends its time (bottom): forward+backward compute, and the rest of the step
(gradient communication not hidden behind backward, the optimizer, and with ZeRO 1 the
all-gather of the parameters; the 1-rank bar shows the optimizer alone); bars are labelled with
the link, the bucket size, overlap on/off and the ZeRO stage.
"""
import csv
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLUMNS = ["benchmark", "model", "mode", "ranks", "nodes", "bandwidth", "bucket_mb", "overlap", "zero", "batch_per_rank",
           "compression", "allreduce_option", "hierarchical", "allreduce",
           "oversubscribed", "tokens_per_s", "efficiency", "ms_per_step", "compute_ms", "exposed_ms", "comm_ms",
           "overlap_fraction", "load"]
CONFIG = ["benchmark", "model", "mode", "ranks", "nodes", "bandwidth", "bucket_mb", "overlap", "zero", "batch_per_rank",
          "compression", "allreduce_option", "hierarchical"]
RATE_ORDER = {"local": 0, "100mbit": 1, "1gbit": 2, "10gbit": 3}
MODEL_ORDER = {"baby": 0, "gpt2-small": 1}


def with_defaults(config):
    """The configuration with the fields older raw.jsonl files lack: baby, ZeRO 0, uncompressed, flat binomial."""
    return {"model": "baby", "zero": 0, "compression": "none", "allreduce_option": "binomial", "hierarchical": False, **config}


def default_communication(r):
    """Whether a row is of the sweep proper (uncompressed, flat, --allreduce as it defaults)."""
    return r["compression"] == "none" and not r["hierarchical"] and r["allreduce_option"] in ("auto", "binomial")


def load_rows(directory):
    best = {}
    for line in (directory / "raw.jsonl").read_text().splitlines():
        if not line.strip():
            continue
        run = json.loads(line)
        config, result = with_defaults(run["config"]), run["result"]
        k = tuple(config[name] for name in CONFIG)
        if k not in best or result["tokens_per_s"] > best[k][1]["tokens_per_s"]:
            best[k] = (config, result)
    baselines = {}
    for config, result in best.values():
        if config["ranks"] == 1 and config["mode"] in ("weak", "strong"):
            k = (config["benchmark"], config["model"], config["mode"])
            baselines[k] = max(baselines.get(k, 0), result["tokens_per_s"])
    rows = []
    for config, result in best.values():
        base = baselines.get((config["benchmark"], config["model"], config["mode"]))
        row = {k: config[k] for k in CONFIG + ["oversubscribed", "load"]}
        row["allreduce"] = result.get("allreduce", "binomial" if config["ranks"] > 1 else "")
        row["tokens_per_s"] = round(result["tokens_per_s"], 1)
        row["efficiency"] = round(result["tokens_per_s"] / (config["ranks"] * base), 4) if base else ""
        for name in ("ms_per_step", "compute_ms", "comm_ms"):
            row[name] = round(result[name], 3) if name in result else ""
        row["exposed_ms"] = round(result["ms_per_step"] - result["compute_ms"], 3) if "compute_ms" in result else ""
        row["overlap_fraction"] = round(result["overlap_fraction"], 4) if "overlap_fraction" in result else ""
        rows.append(row)
    rows.sort(key=lambda r: (r["benchmark"], MODEL_ORDER.get(r["model"], 9), r["mode"], r["nodes"],
                             RATE_ORDER.get(r["bandwidth"], 9), r["ranks"], -float(r["bucket_mb"]), r["overlap"], r["zero"]))
    return rows


def where(r):
    return "1 node" if r["nodes"] == 1 else f"{r['nodes']} nodes, {r['bandwidth']}"


def plot_efficiency(axis, rows, model):
    """Efficiency against ranks for one model: bench step at its smallest bucket with overlap on, and train."""
    mine = [r for r in rows if r["model"] == model]
    buckets = sorted({float(r["bucket_mb"]) for r in mine if r["benchmark"] == "bench-step" and r["ranks"] > 1})
    small = buckets[0] if buckets else None
    series = {}
    for r in mine:
        if r["efficiency"] == "" or r["ranks"] == 1 or not default_communication(r):
            continue
        if r["benchmark"] == "bench-step" and (float(r["bucket_mb"]) != small or r["overlap"] != "on"):
            continue
        zero = f", ZeRO {r['zero']}" if r["benchmark"] == "bench-step" else ""
        label = f"{r['benchmark']} {r['mode']}, {where(r)}{zero}"
        series.setdefault((r["benchmark"], r["mode"], r["nodes"], RATE_ORDER.get(r["bandwidth"], 9), r["zero"], label), []).append(r)
    # The 1-rank baseline (efficiency 1) starts every line of its benchmark and mode.
    for (benchmark, mode, _, _, _, _), points in series.items():
        points += [r for r in mine if r["benchmark"] == benchmark and r["mode"] == mode and r["ranks"] == 1]
    for (benchmark, mode, nodes, _, zero, label), points in sorted(series.items()):
        points.sort(key=lambda r: r["ranks"])
        style = ":" if benchmark == "train" else ("-" if mode == "weak" else "--")
        if zero:
            style = "-."
        line, = axis.plot([r["ranks"] for r in points], [r["efficiency"] for r in points], style,
                          marker="s" if zero else "o", label=label)
        over = [r for r in points if r["oversubscribed"]]
        axis.scatter([r["ranks"] for r in over], [r["efficiency"] for r in over], s=120, facecolors="none",
                     edgecolors=line.get_color())
    ranks = sorted({r["ranks"] for r in mine})
    axis.axhline(1.0, color="grey", linewidth=0.8)
    if any(r["oversubscribed"] for r in mine):
        axis.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
        axis.text(max(ranks) - 0.95, 0.52, "4 ranks on 2 cores: at most 0.5", fontsize=8, color="grey")
    axis.set_xticks(ranks)
    axis.set_xlabel("ranks (circled: oversubscribed, more ranks than cores)")
    axis.set_ylabel("scaling efficiency = tokens/s ÷ (ranks × 1-rank tokens/s)")
    axis.set_title(f"{model}: scaling efficiency (bench step: bucket {small} MiB, overlap on)", fontsize=10)
    highest = max((r["efficiency"] for r in mine if r["efficiency"] != ""), default=1.0)
    axis.set_ylim(0, max(1.15, 1.05 * highest))
    axis.legend(fontsize=6, loc="lower left")


def plot_breakdown(axis, rows, model):
    """The 1-rank and 2-rank weak-scaling bench steps of one model: compute and the rest."""
    bars = [r for r in rows if r["model"] == model and r["benchmark"] == "bench-step" and r["mode"] == "weak"
            and r["ranks"] in (1, 2) and r["ms_per_step"] != "" and default_communication(r) and r["nodes"] <= 2]
    bars.sort(key=lambda r: (r["ranks"], r["nodes"], RATE_ORDER.get(r["bandwidth"], 9), -float(r["bucket_mb"]), r["overlap"], r["zero"]))
    labels, compute, rest = [], [], []
    for r in bars:
        place = "1 rank" if r["ranks"] == 1 else ("1 node" if r["nodes"] == 1 else r["bandwidth"])
        labels.append(f"{place}\n{r['bucket_mb']} MiB\n{r['overlap']}\nZeRO {r['zero']}" if r["ranks"] > 1 else place)
        compute.append(r["compute_ms"])
        rest.append(max(0.0, r["exposed_ms"]))
    x = range(len(bars))
    axis.bar(x, compute, label="forward + backward (compute)")
    axis.bar(x, rest, bottom=compute, label="rest: communication not hidden + optimizer (ZeRO 1: + all-gather)")
    for i, r in enumerate(bars):
        if r["ranks"] > 1 and r["overlap_fraction"] != "":
            axis.text(i, r["ms_per_step"] * 1.02, f"{100 * r['overlap_fraction']:.0f}%", ha="center", fontsize=7)
    axis.set_xticks(list(x))
    axis.set_xticklabels(labels, fontsize=5 if len(bars) > 12 else 7)
    axis.set_ylabel("ms per step")
    axis.set_title(f"{model}, 2 ranks, weak scaling: step time (label: share of gradient communication hidden)", fontsize=9)
    axis.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=1)


def plot(rows, path):
    models = sorted({r["model"] for r in rows}, key=lambda m: MODEL_ORDER.get(m, 9))
    figure, axes = plt.subplots(2, len(models), figsize=(8 * len(models), 10), squeeze=False)
    for column, model in enumerate(models):
        plot_efficiency(axes[0][column], rows, model)
        plot_breakdown(axes[1][column], rows, model)
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
