#!/usr/bin/env python3
"""An α–β cost model of Replica's data-parallel step, checked against launch/scaling.sh's runs.

    python3 bench/cost_model.py scaling-results/ [--algorithm binomial|ring] [--cores N]

Inputs (written by launch/scaling.sh into the folder):
  allreduce-<link>.json, allreduce-<link>-oneway.json  `replica bench allreduce --json` on 2 ranks
      (link "local": one node; a rate: one rank on each of 2 simulated nodes), with Open MPI's ring
      forced (2(p-1)/p·n = n bytes each way at once: t = 2α + n·β_both) and with reduce-then-broadcast
      forced (n one way, then back: t = 2α + 2n·β_one). The two differ on a shaped link: TCP's
      acknowledgements queue behind the data of the opposite direction in the same token bucket.
  scaling.csv  the measured steps; the 1-rank `bench step` rows give the compute time (forward +
      backward) and the rest of a step (optimizer) at per-rank batches 12, 24 and 6.

Model of one step on p ranks (per-rank batch b):
  compute(b) + rest(b), both × max(1, ranks on this machine / cores) (the simulated nodes share cores),
  + exposed all-reduce + 2 small blocking all-reduces (the token count and the finiteness flag).
  Gradients (charlm: 804,096 floats) go in buckets built as Replica builds them (whole parameters,
  last first, ≤ --bucket-mb). Backward takes 2/3 of the compute (twice the forward's FLOPs) and
  finishes parameters at a rate proportional to their size.
  Progress only inside MPI calls (Open MPI has no progress thread for TCP or shared memory): during
  backward, the GradientReducer calls MPI_Test at 6 poll points (after the final LayerNorm, after
  each of the 4 blocks, at the end); after backward, MPI_Wait progresses all the time. With overlap
  a bucket is posted at the first poll after its parameters are final; without, all are posted when
  backward ends. Each round of an all-reduce's schedule is posted when the previous one is seen
  complete (at a poll); a message above the eager limit (TCP 64 KiB, shared memory 4 KiB) is a
  rendezvous: over TCP it needs the receiver's match and then the sender's sight of the
  acknowledgement (two more polls) before its data leaves; the receiver sees the data at its next
  poll. Data occupies its link for α + bytes·β; concurrent all-reduces queue on a link (a shaped link
  is one token bucket for both directions, see `simulate_allreduce`).
  Exposed = max(0, end of the last bucket's all-reduce − end of backward).
  One all-reduce of n bytes is simulated message by message on the rank placement (consecutive ranks
  on a node), each round lasting as long as its busiest link (α + bytes·β of that link):
    binomial: what Open MPI 4.1 runs for Replica's in-place MPI_Iallreduce (libnbc picks its binomial
      reduce + broadcast whenever the buffer is MPI_IN_PLACE): 2⌈log2 p⌉ rounds of n bytes;
    ring: 2(p−1) rounds of n/p bytes, 2(p−1)/p·n a rank: the bandwidth-optimal algorithm.
The table for 2..256 nodes assumes one rank a node with its own core (no sharing) and each node's
link at the given rate, α from the 2-node fit at that rate.
"""
import argparse
import csv
import json
import math
import os
import sys
from pathlib import Path

FLOAT = 4
# charlm's parameters in arena (forward) order, nanoGPT's default CPU configuration:
# 4 layers, 128 wide, vocabulary 65, block 64, no biases, tied lm_head.
C, LAYERS, VOCAB, BLOCK = 128, 4, 65, 64
PARAMETERS = [VOCAB * C, BLOCK * C] + [C, 3 * C * C, C * C, C, 4 * C * C, 4 * C * C] * LAYERS + [C]


def buckets(max_bytes):
    """Replica's ParameterArena.buckets: whole parameters from the last, each bucket ≤ max_bytes if it can.

    Returns (bytes, index of the bucket's first parameter in arena order), last layer first."""
    result, current, lowest = [], 0, len(PARAMETERS)
    for index in reversed(range(len(PARAMETERS))):
        size = PARAMETERS[index]
        if current and (current + size) * FLOAT > max_bytes:
            result.append((current * FLOAT, lowest))
            current = 0
        current += size
        lowest = index
    if current:
        result.append((current * FLOAT, lowest))
    return result


def poll_points(compute, backward):
    """When GradientReducer polls (MPI_Test) during backward: [(time, lowest finished parameter index)].

    GPT.backward reports after the final LayerNorm (with the tied head), after each block, and at the
    end (the embeddings); backward finishes parameters at a rate proportional to their size."""
    total, start = sum(PARAMETERS), compute - backward
    per_block = len(PARAMETERS[2:-1]) // LAYERS
    points, finished = [], 0
    for lowest in [len(PARAMETERS) - 1] + [2 + per_block * layer for layer in reversed(range(LAYERS))] + [0]:
        finished = sum(PARAMETERS[lowest:])
        points.append((start + backward * finished / total, lowest))
    return points


def fit_link(path, messages_per_byte):
    """(α seconds, β seconds/byte, worst relative error, rows) from a p = 2 all-reduce benchmark.

    t = 2α + messages_per_byte·n·β: the ring moves n each way at once (1), reduce-then-broadcast
    moves n one way and then back (2). β is the least-squares slope over messages of 256 KiB and
    more; α comes from the fastest small message (≤ 16 KiB): on a shared, loaded machine the
    minimum is the least disturbed figure.
    """
    rows = json.loads(Path(path).read_text())["results"]
    large = [(r["bytes"], r["seconds"]) for r in rows if r["bytes"] >= 256 << 10]
    mx = sum(x for x, _ in large) / len(large)
    my = sum(t for _, t in large) / len(large)
    slope = sum((x - mx) * (t - my) for x, t in large) / sum((x - mx) ** 2 for x, _ in large)
    beta = max(slope, 1e-15) / messages_per_byte
    small = min((r["seconds"] - messages_per_byte * r["bytes"] * beta for r in rows if r["bytes"] <= 16 << 10), default=0)
    alpha = max(small / 2, 1e-7)
    worst = max(abs(2 * alpha + messages_per_byte * r["bytes"] * beta - r["seconds"]) / r["seconds"] for r in rows)
    return alpha, beta, worst, rows


def rounds_binomial(p, n):
    """libnbc's allred_sched_diss with root 0: binomial reduce to 0, then binomial broadcast."""
    rounds, maxr = [], math.ceil(math.log2(p))
    for r in range(1, maxr + 1):
        rounds.append([(v + (1 << (r - 1)), v, n) for v in range(0, p, 1 << r) if v + (1 << (r - 1)) < p])
    for r in range(maxr):
        rounds.append([(v, v + (1 << r), n) for v in range(min(1 << r, p)) if v + (1 << r) < p])
    return rounds


def rounds_ring(p, n):
    """Reduce-scatter then all-gather around the ring: 2(p-1) rounds of n/p bytes from each rank to the next."""
    return [[(v, (v + 1) % p, n / p) for v in range(p)] for _ in range(2 * (p - 1))]


# Open MPI 4.1's eager limits: shared memory (vader) 4 KiB, TCP 64 KiB. A larger message is a rendezvous:
# the receiver must match it inside an MPI call; over TCP the sender then needs the receiver's
# acknowledgement (another MPI call) before the rest of the data leaves; vader's receiver copies it itself.
EAGER_BYTES = {"local": 4 << 10, "link": 64 << 10}


def simulate_allreduce(n, p, node_of, links, algorithm, posted, poll, link_free):
    """End time of one non-blocking all-reduce of n bytes posted at `posted`.

    Progress happens only inside MPI calls: `poll(t)` is the first time ≥ t at which the ranks are in
    one (during backward the GradientReducer's MPI_Test calls; after it, MPI_Wait: any time). Each
    round of the schedule is posted when the previous one is seen complete; a message's data occupies
    its channel (a link direction, or a node's memory) for α + bytes·β, after what its protocol needs.
    `link_free` (channel -> time) is shared by the concurrent all-reduces and updated."""
    if p == 1:
        return posted
    beta_index = 2 if algorithm == "ring" else 1   # the ring sends and receives on every link at once
    rounds = rounds_binomial(p, n) if algorithm == "binomial" else rounds_ring(p, n)
    now = posted
    for messages in rounds:
        channels = {}
        for source, target, size in messages:
            a, b = node_of(source), node_of(target)
            # A shaped link is one token bucket: data one way slows the other (its acknowledgements
            # queue behind it), so concurrent binomial all-reduces share the link whichever way they go;
            # the ring's β is already its both-ways rate, per direction.
            ends = (a, b) if algorithm == "ring" else (min(a, b), max(a, b))
            channel = ("local", a) if a == b else ("link", *ends)
            channels[channel] = channels.get(channel, 0) + size
        done = now
        for channel, size in channels.items():
            kind = channel[0]
            alpha, beta = links[kind][0], links[kind][beta_index]
            if size <= EAGER_BYTES[kind]:
                ready = now
            elif kind == "local":
                ready = poll(now + alpha)                    # the receiver matches, then copies
            else:
                ready = poll(poll(now + alpha) + alpha)      # match, then the sender sees the acknowledgement
            start = max(ready, link_free.get(channel, 0.0))
            link_free[channel] = start + alpha + size * beta
            arrived = link_free[channel]
            # vader's receiver copies inside its own MPI call; otherwise it sees the data at its next call.
            done = max(done, arrived if (kind == "local" and size > EAGER_BYTES[kind]) else poll(arrived))
        now = done
    return now


def allreduce_seconds(n, p, node_of, links, algorithm):
    """Time of one blocking all-reduce of n bytes (progress all the time)."""
    return simulate_allreduce(n, p, node_of, links, algorithm, 0.0, lambda t: t, {})


def step_model(compute, rest, p, nodes, bucket_mb, overlap, links, algorithm):
    """Predicted seconds per step, and the exposed all-reduce seconds (compute and rest as the ranks see them).

    With overlap, a bucket is posted at the first poll after backward has finished its parameters
    and advances only at the polls until backward ends; without, all are posted after backward."""
    ppn = math.ceil(p / nodes)
    node_of = lambda rank: rank // ppn  # noqa: E731
    backward = compute * 2 / 3
    points = poll_points(compute, backward) if overlap else [(compute, 0)]
    times = [t for t, _ in points]

    def poll(t):
        if t >= compute:
            return t
        return next(q for q in times if q >= t)

    link_free, end = {}, compute
    for size, lowest in buckets(bucket_mb * 1024 * 1024):
        posted = next(t for t, finished in points if finished <= lowest)
        end = max(end, simulate_allreduce(size, p, node_of, links, algorithm, posted, poll, link_free))
    exposed = end - compute if p > 1 else 0.0
    small = 2 * allreduce_seconds(16, p, node_of, links, algorithm)
    return compute + rest + exposed + small, exposed


def read_csv(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("directory", nargs="?", default="scaling-results")
    parser.add_argument("--algorithm", choices=["binomial", "ring"], default="binomial",
                        help="all-reduce for the measured configurations (default: what Open MPI 4.1 runs for Replica)")
    parser.add_argument("--cores", type=int, default=os.cpu_count(), help="cores the measured ranks shared")
    arguments = parser.parse_args()
    directory = Path(arguments.directory)

    # Links: one way from reduce-then-broadcast, both ways from the ring.
    def link(name):
        oneway = fit_link(directory / f"allreduce-{name}-oneway.json", 2)
        ring = fit_link(directory / f"allreduce-{name}.json", 1)
        print(f"  {name:<10} {oneway[0] * 1e6:9.1f} {1e-6 / oneway[1]:12.1f} {100 * oneway[2]:6.0f}% "
              f"{ring[0] * 1e6:9.1f} {1e-6 / ring[1]:12.1f} {100 * ring[2]:6.0f}%")
        return oneway[0], oneway[1], ring[1]

    print("Links: `replica bench allreduce` on 2 ranks, t = 2α + k·n·β; one way: Open MPI's reduce then broadcast")
    print("(k = 2, one direction at a time, as libnbc's binomial all-reduce uses a link); ring: both directions at once (k = 1)")
    print(f"  {'link':<10} {'α (µs)':>9} {'one way MB/s':>12} {'worst':>6} {'α ring':>9} {'ring MB/s':>12} {'worst':>6}")
    local = link("local")
    links_by_rate = {}
    for path in sorted(directory.glob("allreduce-*bit.json"), key=lambda p: p.stat().st_mtime):
        rate = path.stem.split("-", 1)[1]
        links_by_rate[rate] = {"local": local, "link": link(rate)}

    # Compute per step, 1 rank.
    rows = read_csv(directory / "scaling.csv")
    single = {int(r["batch_per_rank"]): r for r in rows if r["benchmark"] == "bench-step" and r["ranks"] == "1"}
    compute = {b: float(r["compute_ms"]) / 1e3 for b, r in single.items()}
    rest = {b: (float(r["ms_per_step"]) - float(r["compute_ms"])) / 1e3 for b, r in single.items()}
    print("\nCompute on 1 rank (bench step): " + ", ".join(
        f"batch {b}: {1e3 * compute[b]:.1f} ms forward+backward + {1e3 * rest[b]:.1f} ms optimizer" for b in sorted(compute)))

    # Prediction next to measurement.
    print(f"\nMeasured vs predicted step time ({arguments.algorithm} all-reduce; {arguments.cores} cores shared by all ranks)")
    print("  A: compute from the 1-rank run (a prediction); B: compute as measured in the run itself (tests the")
    print("     communication and overlap part alone). Exposed = step − compute − optimizer, measured / model A.")
    header = (f"  {'mode':<6} {'p':>2} {'nodes':>5} {'link':>8} {'bucket':>6} {'ovl':>3} | {'measured':>8} {'A':>7} {'err A':>6}"
              f" {'B':>7} {'err B':>6} | {'exposed m/A (ms)':>17} | {'eff m/A':>9}")
    print(header)
    errors = {"A": [], "B": []}
    for r in rows:
        if r["benchmark"] != "bench-step" or r["ranks"] == "1":
            continue
        p, nodes, batch = int(r["ranks"]), int(r["nodes"]), int(r["batch_per_rank"])
        if batch not in compute:
            continue
        links = links_by_rate.get(r["bandwidth"]) if nodes > 1 else {"local": local, "link": local}
        if links is None:
            continue
        share = max(1.0, p / arguments.cores)
        shape = (p, nodes, float(r["bucket_mb"]), r["overlap"] == "on", links, arguments.algorithm)
        predicted, exposed = step_model(compute[batch] * share, rest[batch] * share, *shape)
        own, _ = step_model(float(r["compute_ms"]) / 1e3, rest[batch] * share, *shape)
        measured = float(r["ms_per_step"]) / 1e3
        error, own_error = (predicted - measured) / measured, (own - measured) / measured
        errors["A"].append(abs(error))
        errors["B"].append(abs(own_error))
        base = compute[12 if r["mode"] == "weak" else 24] + rest[12 if r["mode"] == "weak" else 24]
        # Weak: tokens/s(p) / (p · tokens/s(1)) = T1 / Tp; strong (same global batch): T1 / (p · Tp).
        efficiency = base / predicted if r["mode"] == "weak" else base / (p * predicted)
        measured_exposed = float(r["exposed_ms"]) - 1e3 * rest[batch] * share
        print(f"  {r['mode']:<6} {p:>2} {nodes:>5} {r['bandwidth']:>8} {r['bucket_mb']:>6} {r['overlap']:>3} | "
              f"{1e3 * measured:8.1f} {1e3 * predicted:7.1f} {100 * error:+5.0f}% {1e3 * own:7.1f} {100 * own_error:+5.0f}% | "
              f"{max(0, measured_exposed):7.1f} / {1e3 * exposed:7.1f} | {float(r['efficiency']):.2f}/{efficiency:.2f}")
    for name, values in errors.items():
        if values:
            values.sort()
            print(f"  {name}: {sum(1 for e in values if e <= 0.25)} of {len(values)} configurations within 25% "
                  f"(median |error| {100 * values[len(values) // 2]:.0f}%, worst {100 * values[-1]:.0f}%)")

    # Table for sizes not measurable here: weak scaling, batch 12, one rank a node.
    if 12 in compute:
        print("\nPredicted weak scaling, 1 rank a node with its own core, batch 12, bucket 0.5 MiB overlap on"
              " (ms/step and efficiency)")
        rates = list(links_by_rate)
        print(f"  {'nodes':>5} | " + " | ".join(f"{rate + ' ring':>16} {rate + ' binomial':>20}" for rate in rates))
        base = compute[12] + rest[12]
        for p in [2, 4, 8, 16, 32, 64, 128, 256]:
            cells = []
            for rate in rates:
                for algorithm in ("ring", "binomial"):
                    t, _ = step_model(compute[12], rest[12], p, p, 0.5, True, links_by_rate[rate], algorithm)
                    width = 16 if algorithm == "ring" else 20
                    cells.append(f"{f'{1e3 * t:.0f} ms {base / t:.2f}':>{width}}")
            print(f"  {p:>5} | " + " | ".join(" ".join(cells[i:i + 2]) for i in range(0, len(cells), 2)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
