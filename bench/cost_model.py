#!/usr/bin/env python3
"""An α–β cost model of Replica's data-parallel step, checked against launch/scaling.sh's runs.

    python3 bench/cost_model.py scaling-results/ [--algorithm binomial|ring] [--cores N]

Inputs (written by launch/scaling.sh into the folder):
  allreduce-<link>.json, allreduce-<link>-oneway.json  `replica bench allreduce --json` on 2 ranks
      (link "local": one node; a rate: one rank on each of 2 simulated nodes), with Open MPI's ring
      forced (2(p-1)/p·n = n bytes each way at once: t = 2α + n·β_both) and with reduce-then-broadcast
      forced (n one way, then back: t = 2α + 2n·β_one). The two differ on a shaped link: TCP's
      acknowledgements queue behind the data of the opposite direction in the same token bucket.
  scaling.csv  the measured steps; for each model (the `model` column: baby, gpt2-small; files
      without it are baby) the 1-rank `bench step` rows give the compute time (forward + backward)
      and the rest of a step (optimizer) at each per-rank batch (baby 12, 24 and 6; gpt2-small 1).

The models: Replica's GPT (Sources/ReplicaModels/GPT.swift) with the 65-character vocabulary, its
parameters in arena order wte, wpe, then per block ln_1, c_attn, c_proj, ln_2, c_fc, mlp c_proj,
then ln_f (no biases, the head tied to wte): baby (4 layers, 128 wide, block 64: 804,096
parameters) and gpt2-small (12 layers, 768 wide, block 1024: 85,790,208).

Model of one step on p ranks (per-rank batch b):
  compute(b) + rest(b), both × max(1, ranks on this machine / cores) (the simulated nodes share cores),
  + exposed gradient communication + small blocking all-reduces (the token count and the
  finiteness flag; with ZeRO 1 also the global gradient norm).
  Gradients go in buckets built as Replica builds them (whole parameters, last first, ≤ --bucket-mb).
  Backward takes 2/3 of the compute (twice the forward's FLOPs) and finishes parameters at a rate
  proportional to their size.
  Progress only inside MPI calls (Open MPI has no progress thread for TCP or shared memory): during
  backward, the GradientReducer calls MPI_Test at L + 2 poll points (GPT.backward's gradientsReady:
  after the final LayerNorm, after each of the L blocks, at the end); after backward, MPI_Wait
  progresses all the time. With overlap a bucket is posted at the first poll after its parameters
  are final; without, all are posted when backward ends. Each round of a schedule is posted when
  the previous one is seen complete (at a poll); a message above the eager limit (TCP 64 KiB,
  shared memory 4 KiB) is a rendezvous: over TCP it needs the receiver's match and then the
  sender's sight of the acknowledgement (two more polls) before its data leaves; the receiver sees
  the data at its next poll. Data occupies each node's link (its NIC) for α + bytes·β, the
  bytes of every message of the round through it; concurrent collectives queue on a NIC (a shaped
  link is one token bucket for both directions, see `simulate`).
  Exposed = max(0, end of the last bucket's collective − end of backward).
  Each collective is simulated message by message on the rank placement (consecutive ranks on a
  node), each round lasting as long as its busiest NIC. The schedules are libnbc's in Open MPI 4.1
  (ompi/mca/coll/libnbc/, the only component of 4.1 with these non-blocking collectives here):
    ZeRO 0, Replica's in-place MPI_Iallreduce (nbc_iallreduce.c: the binomial reduce + broadcast,
      allred_sched_diss, whenever the buffer is MPI_IN_PLACE): 2⌈log2 p⌉ rounds of n bytes;
    ZeRO 1, MPI_Ireduce_scatter during backward (nbc_ireduce_scatter.c, no algorithm choice):
      a binomial reduce of the whole bucket to rank 0 (⌈log2 p⌉ rounds of n bytes), then one round
      in which rank 0 sends each rank its piece (p − 1 messages of n/p: (p−1)/p·n out of rank 0);
      after the optimizer step on the shard (rest/p), MPI_Iallgatherv of every bucket at once
      (nbc_iallgatherv.c, no choice): one round in which every rank sends its piece to each of the
      p − 1 others ((p−1)/p·n out of and into every rank), waited for with nothing to overlap.
    ring (Replica's, --allreduce ring; --algorithm ring for rows that do not say): all-reduce
      2(p−1) rounds of n/p bytes, each direction of a link at its one-way rate (measured);
      reduce-scatter and all-gather p − 1 rounds each. A row's `allreduce` column (the schedule
      the run reported: binomial, ring, hierarchical binomial|ring) and `compression` column
      (none, bf16, powersgd) choose its schedules and bytes.
  The overlap fraction (bench step's overlap_fraction) is predicted as Replica measures it: each
  bucket's time from its start to when it is seen complete (at a poll during backward, else in
  finish()'s waits in bucket order), the part of it before backward ends over the whole.
The table for 2..256 nodes assumes one rank a node with its own core (no sharing) and each node's
link at the given rate, α from the 2-node fit at that rate.
"""
import argparse
import csv
import functools
import json
import math
import os
import sys
from pathlib import Path

FLOAT = 4
VOCAB = 65   # Tiny Shakespeare's characters


class Model:
    """A GPT's parameter sizes in arena (forward) order, and its layer count (for the poll points)."""

    def __init__(self, name, layers, embedding, block, vocab=VOCAB):
        self.name, self.layers = name, layers
        self.embedding, self.block, self.vocab = embedding, block, vocab
        c = embedding
        # wte, wpe; per block ln_1, c_attn, attn c_proj, ln_2, c_fc, mlp c_proj; ln_f. No biases, tied head.
        self.shapes = [(vocab, c), (block, c)] + [(c,), (3 * c, c), (c, c), (c,), (4 * c, c), (c, 4 * c)] * layers + [(c,)]
        self.parameters = [math.prod(shape) for shape in self.shapes]

    @property
    def count(self):
        return sum(self.parameters)


# Replica's GPTPreset (Sources/ReplicaModels/GPT.swift), with the character vocabulary.
MODELS = {
    "baby": Model("baby", layers=4, embedding=128, block=64),              # nanoGPT's CPU configuration
    "gpt2-small": Model("gpt2-small", layers=12, embedding=768, block=1024),
}
BABY = MODELS["baby"]
# The counts `replica bench step` reports (param_count) for these presets on Tiny Shakespeare.
assert (BABY.count, MODELS["gpt2-small"].count) == (804_096, 85_790_208)


def buckets(max_bytes, model=BABY):
    """Replica's ParameterArena.buckets: whole parameters from the last, each bucket ≤ max_bytes if it can.

    Returns (bytes, index of the bucket's first parameter in arena order), last layer first."""
    parameters = model.parameters
    result, current, lowest = [], 0, len(parameters)
    for index in reversed(range(len(parameters))):
        size = parameters[index]
        if current and (current + size) * FLOAT > max_bytes:
            result.append((current * FLOAT, lowest))
            current = 0
        current += size
        lowest = index
    if current:
        result.append((current * FLOAT, lowest))
    return result


def bucket_parameters(max_bytes, model=BABY):
    """The parameter indices of each of `buckets`' buckets, in the same order."""
    result, index = [], len(model.parameters)
    for _, lowest in buckets(max_bytes, model):
        result.append(list(range(lowest, index)))
        index = lowest
    return result


POWERSGD_RANK = 4


def powersgd_factors(shape, rank=POWERSGD_RANK):
    """(P floats, Q floats) of a parameter PowerSGD compresses (its first dimension by the rest, rank
    min(r, n, m), only if (n + m)·r·2 < n·m: PyTorch's min_compression_rate), else None (sent whole)."""
    if len(shape) < 2:
        return None
    n = shape[0]
    m = math.prod(shape) // n
    r = min(rank, n, m)
    return (n * r, m * r) if (n + m) * r * 2 < n * m else None


def bucket_messages(max_bytes, model=BABY, compression="none"):
    """Each bucket's all-reduces as (bytes of the first, bytes of the second or 0, lowest parameter):
    float32; 16 bits (half the bytes); PowerSGD (Sources/ReplicaTrain/PowerSGD.swift): the vectors and
    every P, then every Q, the second started after backward."""
    result = []
    for (size, lowest), indices in zip(buckets(max_bytes, model), bucket_parameters(max_bytes, model)):
        if compression in ("bf16", "fp16"):
            result.append((size // 2, 0, lowest))
        elif compression == "powersgd":
            first = second = 0
            for i in indices:
                factors = powersgd_factors(model.shapes[i])
                if factors is None:
                    first += model.parameters[i]
                else:
                    first += factors[0]
                    second += factors[1]
            result.append((FLOAT * first, FLOAT * second, lowest))
        else:
            result.append((size, 0, lowest))
    return result


def backward_polls(model=BABY):
    """GPT.backward's polls (gradientsReady) in order: [(share of backward's matrix FLOPs done before it,
    index of the lowest parameter whose gradient is final)].

    After the tied head's two products and ln_f; in each block, last first, after mlp.c_proj's weight
    gradient and its input gradient, c_fc's two, ln_2, attn.c_proj's weight gradient, the attention
    kernel (after c_proj's input gradient), c_attn's weight gradient, and ln_1 (after c_attn's input
    gradient): 9 a block (TransformerBlock.backward); then the embeddings. FLOPs per token, as
    MatmulFLOPs.swift counts them: a C×K product's weight or input gradient 2CK, causal attention's
    backward 4TC (half of the four T×T·C products)."""
    c, t, v = model.embedding, model.block, model.vocab
    steps = [(4 * v * c, len(model.parameters) - 1)]
    for layer in reversed(range(model.layers)):
        ln1 = 2 + 6 * layer
        steps += [(8 * c * c, ln1 + 5), (8 * c * c, ln1 + 5), (8 * c * c, ln1 + 4), (8 * c * c, ln1 + 4), (0, ln1 + 3),
                  (2 * c * c, ln1 + 2), (2 * c * c + 4 * t * c, ln1 + 2), (6 * c * c, ln1 + 1), (6 * c * c, ln1)]
    steps.append((0, 0))
    total, done, polls = sum(f for f, _ in steps), 0, []
    for flops, lowest in steps:
        done += flops
        polls.append((done / total, lowest))
    return polls


def poll_points(compute, backward, model=BABY):
    """When GradientReducer polls (MPI_Test) during backward: [(time, lowest finished parameter index)],
    backward's time spread over its polls in proportion to the matrix FLOPs between them."""
    start = compute - backward
    return [(start + backward * share, lowest) for share, lowest in backward_polls(model)]


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


def pieces(n, p):
    """Bytes of each rank's piece of an n-byte bucket (OptimizerSharding.pieces: the remainder to the first ranks)."""
    count = n // FLOAT
    return [FLOAT * (count // p + (1 if r < count % p else 0)) for r in range(p)]


def rounds_binomial(p, n):
    """libnbc's allred_sched_diss with root 0: binomial reduce to 0, then binomial broadcast."""
    return rounds_binomial_reduce(p, n) + [
        [(v, v + (1 << r), n) for v in range(min(1 << r, p)) if v + (1 << r) < p] for r in range(math.ceil(math.log2(p)))]


def rounds_binomial_reduce(p, n):
    """The binomial reduce to rank 0: in round r, rank v + 2^(r−1) sends its partial sum to v (v a multiple of 2^r)."""
    return [[(v + (1 << (r - 1)), v, n) for v in range(0, p, 1 << r) if v + (1 << (r - 1)) < p]
            for r in range(1, math.ceil(math.log2(p)) + 1)]


def rounds_ring(p, n):
    """Reduce-scatter then all-gather around the ring: 2(p-1) rounds of n/p bytes from each rank to the next."""
    return [[(v, (v + 1) % p, n / p) for v in range(p)] for _ in range(2 * (p - 1))]


def rounds_reduce_scatter(p, n):
    """libnbc's nbc_ireduce_scatter.c: binomial reduce of the whole buffer to rank 0, then rank 0 sends each piece."""
    return rounds_binomial_reduce(p, n) + [[(0, r, size) for r, size in enumerate(pieces(n, p)) if r > 0]]


def rounds_allgather(p, n):
    """libnbc's nbc_iallgatherv.c: one round, every rank's piece to each of the others (no barrier between its sends)."""
    sizes = pieces(n, p)
    return [[(s, (s + k) % p, sizes[s]) for s in range(p) for k in range(1, p)]]


def rounds_ring_half(p, n):
    """A ring reduce-scatter or all-gather: p − 1 rounds of n/p bytes from each rank to the next."""
    return [[(v, (v + 1) % p, n / p) for v in range(p)] for _ in range(p - 1)]


def rounds_hierarchical(p, n, ppn, leaders):
    """--hierarchical (hierarchy.c): each node's binomial reduce to its first rank, the leaders'
    all-reduce (`leaders`: "ring" or "binomial") over one rank a node, each node's binomial broadcast."""
    nodes = math.ceil(p / ppn)
    local = [[(node * ppn + a, node * ppn + b, size) for node in range(nodes) for a, b, size in round_ if node * ppn + max(a, b) < p]
             for round_ in rounds_binomial_reduce(ppn, n)] if ppn > 1 else []
    across = ROUNDS["allreduce", leaders](nodes, n) if nodes > 1 else []
    across = [[(a * ppn, b * ppn, size) for a, b, size in round_] for round_ in across]
    broadcast = [[(b, a, size) for a, b, size in round_] for round_ in reversed(local)]
    return local + across + broadcast


# Open MPI 4.1's eager limits: shared memory (vader) 4 KiB, TCP 64 KiB. A larger message is a rendezvous:
# the receiver must match it inside an MPI call; over TCP the sender then needs the receiver's
# acknowledgement (another MPI call) before the rest of the data leaves; vader's receiver copies it itself.
EAGER_BYTES = {"local": 4 << 10, "link": 64 << 10}

# The schedules by collective and --algorithm ("binomial": libnbc's, what Open MPI 4.1 runs).
ROUNDS = {
    ("allreduce", "binomial"): rounds_binomial, ("allreduce", "ring"): rounds_ring,
    ("reduce-scatter", "binomial"): rounds_reduce_scatter, ("reduce-scatter", "ring"): rounds_ring_half,
    ("allgather", "binomial"): rounds_allgather, ("allgather", "ring"): rounds_ring_half,
}


@functools.lru_cache(maxsize=None)
def schedule(collective, algorithm, p, n, ppn):
    """The rounds of a collective of n bytes on p ranks, ppn consecutive ranks a node, as the load of
    each channel: a tuple of rounds, each a tuple of (channel, bytes, largest message, messages,
    partners). Partners: for a node's outgoing direction, the outgoing channels of the nodes it sends
    to (their rendezvous acknowledgements come back through them); for an incoming one, the outgoing
    channels of the nodes it receives from.

    A channel is a node's memory ("local", node) or one direction of a node's link, ("out", node) and
    ("in", node): the two directions of a shaped link carry data independently (measured: ZeRO-1's
    all-gather, the same bytes each way at once, takes the one-way time of one direction; see
    `simulate` for the rates and for what couples the two directions). With one rank a node the ring and the linear all-gather load every
    node's link alike, so one channel a direction stands for all of them (exact: they start and stay
    equal), which keeps 256 nodes quick."""
    if p == 1:
        return ()
    if algorithm.startswith("hierarchical"):
        leaders = algorithm.split()[-1]
        if ppn == 1:
            return schedule(collective, leaders, p, n, ppn)
        message_rounds = rounds_hierarchical(p, n, ppn, leaders)
    else:
        message_rounds = None
    if ppn == 1 and algorithm == "ring":
        size = n / p
        return (((("out",), size, size, 1, (("out",),)), (("in",), size, size, 1, (("out",),))),) * (
            2 * (p - 1) if collective == "allreduce" else p - 1)
    if ppn == 1 and collective == "allgather":
        largest = max(pieces(n, p))
        return (((("out",), (p - 1) * largest, largest, p - 1, (("out",),)),
                 (("in",), (p - 1) * largest, largest, p - 1, (("out",),))),)
    result = []
    for messages in message_rounds if message_rounds is not None else ROUNDS[collective, algorithm](p, n):
        channels = {}
        for source, target, size in messages:
            a, b = source // ppn, target // ppn
            pairs = [(("local", a), None)] if a == b else [(("out", a), ("out", b)), (("in", b), ("out", a))]
            for key, partner in pairs:
                entry = channels.setdefault(key, [0, 0, 0, set()])
                entry[0] += size
                entry[1] = max(entry[1], size)
                entry[2] += 1
                if partner:
                    entry[3].add(partner)
        if channels:
            # Outgoing channels first: an incoming one starts when its senders' data does.
            order = sorted(channels, key=lambda key: key[0] != "out")
            result.append(tuple((key, *channels[key][:3], tuple(sorted(channels[key][3]))) for key in order))
    return tuple(result)


# What one MPI call can hand a TCP socket: Linux's send buffer, autotuned up to net.ipv4.tcp_wmem's
# maximum (4 MiB, Debian's default), counts the kernel's per-packet overhead as well, about as much
# again as the data, so about 2 MiB of a message leave between two MPI calls.
SOCKET_BUFFER_BYTES = 2 << 20


def socket_transfer(start, size, beta, window, poll):
    """When the last of `size` bytes has crossed a link of β s/byte, written into sockets holding at
    most `window` bytes at `start` and at each later MPI call (`poll`): Open MPI's TCP transport
    moves data only inside MPI calls, so between two polls during backward at most `window` bytes
    leave, and the link idles once they have gone. Where the ranks are inside MPI all the time
    (after backward), the data flows at the link's rate."""
    t, remaining, queued = start, size, 0.0
    while True:
        written = min(window - queued, remaining)
        remaining -= written
        queued += written
        if remaining <= 0:
            return t + queued * beta
        following = poll(t + 1e-9)
        if following - t <= 2e-9:            # in MPI all the time from here
            return t + (queued + remaining) * beta
        queued = max(0.0, queued - (following - t) / beta)
        t = following


def simulate(rounds, links, posted, poll, link_free):
    """Seen-complete time of one non-blocking collective with schedule `rounds` (see `schedule`),
    posted at `posted`.

    Progress happens only inside MPI calls: `poll(t)` is the first time ≥ t at which the ranks are in
    one (during backward the GradientReducer's MPI_Test calls; after it, MPI_Wait: any time). Each
    round of the schedule is posted when the previous one is seen complete. A message above the
    eager limit is a rendezvous: the receiver matches it at a poll and acknowledges; over TCP the
    acknowledgement leaves through the receiver's outgoing direction behind whatever of its own
    data is queued there (at most a socket's worth, SOCKET_BUFFER_BYTES): this, not the link, is
    what couples the two directions (measured: small buckets, overlap off, 2 nodes: the reduce of a
    bucket and the broadcast of the one before, opposite directions, do not overlap). The sender sees
    the acknowledgement at its next poll and its data then leaves through `socket_transfer`. A
    channel's data takes α + bytes·β; β is the link's one-way rate (reduce then broadcast, one
    direction at a time), which Replica's ring also reaches in each direction at once (measured;
    Open MPI's blocking ring, fitted as the links' third figure, reaches about 0.6 of it on a
    shaped link and is not what Replica runs). `link_free` (channel -> time its queued data has
    left) is shared by the concurrent collectives and updated."""
    now = posted
    for channels in rounds:
        done = now
        started = {}
        for channel, size, largest, messages, partners in channels:
            kind = "local" if channel[0] == "local" else "link"
            alpha, beta = links[kind][0], links[kind][1]
            if channel[0] == "in":
                ready = max(started.get(partner, now) for partner in partners)
            elif largest <= EAGER_BYTES[kind]:
                ready = now
            elif kind == "local":
                ready = poll(now + alpha)                    # the receiver matches, then copies
            else:
                matched = poll(now + alpha)
                backlog = max([link_free.get(partner, 0.0) - matched for partner in partners] + [0.0])
                ready = poll(matched + alpha + min(backlog, SOCKET_BUFFER_BYTES * beta))
            start = max(ready, link_free.get(channel, 0.0))
            started[channel] = start
            if kind == "link":
                arrived = socket_transfer(start + alpha, size, beta, messages * SOCKET_BUFFER_BYTES, poll)
            else:
                arrived = start + alpha + size * beta
            link_free[channel] = arrived
            # vader's receiver copies inside its own MPI call; otherwise it sees the data at its next call.
            done = max(done, arrived if (kind == "local" and largest > EAGER_BYTES[kind]) else poll(arrived))
        now = done
    return now


def simulate_allreduce(n, p, ppn, links, algorithm, posted, poll, link_free):
    """End time of one non-blocking all-reduce of n bytes posted at `posted` (see `simulate`)."""
    return simulate(schedule("allreduce", algorithm, p, n, ppn), links, posted, poll, link_free)


def allreduce_seconds(n, p, ppn, links, algorithm):
    """Time of one blocking all-reduce of n bytes (progress all the time)."""
    return simulate_allreduce(n, p, ppn, links, algorithm, 0.0, lambda t: t, {})


def step_detail(compute, rest, p, nodes, bucket_mb, overlap, links, algorithm, model=BABY, zero=0, compression="none"):
    """The predicted step: a dict of seconds (step, exposed gradient communication, small all-reduces,
    optimizer, all-gather) and the overlap fraction; compute and rest as the ranks see them.

    With overlap, a bucket is posted at the first poll after backward has finished its parameters
    and advances only at the polls until backward ends; without, all are posted after backward.
    ZeRO 1: the buckets are reduce-scattered, the optimizer (and the norm, the clipping) runs on
    1/p of the parameters, then every bucket is all-gathered at once, after the optimizer.
    `algorithm`: "binomial" (libnbc's), "ring" (Replica's: each direction of a link at its one-way
    rate, measured), "hierarchical binomial" or "hierarchical ring" (the leaders' algorithm).
    `compression`: 16 bits halve every bucket; PowerSGD sends each bucket's vectors and Ps, and once
    every one of those is seen complete (after backward), every bucket's Qs (`bucket_messages`)."""
    ppn = math.ceil(p / nodes)
    backward = compute * 2 / 3
    points = poll_points(compute, backward, model) if overlap else [(compute, 0)]
    times = [t for t, _ in points]

    def poll(t):
        if t >= compute:
            return t
        return next(q for q in times if q >= t)

    sharded = zero >= 1 and p > 1
    collective = "reduce-scatter" if sharded and compression != "powersgd" else "allreduce"
    link_free, end = {}, compute
    spans = []
    messages = bucket_messages(bucket_mb * 1024 * 1024, model, compression)
    for size, _, lowest in messages:
        posted = next(t for t, finished in points if finished <= lowest)
        done = simulate(schedule(collective, algorithm, p, size, ppn), links, posted, poll, link_free)
        spans.append((posted, done))
        end = max(end, done)
    if compression == "powersgd":
        second = max(end, compute)
        for _, size, _ in messages:
            done = simulate(schedule("allreduce", algorithm, p, size, ppn), links, second, poll, link_free)
            spans.append((second, done))
            end = max(end, done)
    exposed = end - compute if p > 1 else 0.0
    # GradientReducer's statistics: a bucket seen complete at a poll is recorded then; finish() waits
    # for the others in bucket order, so each is recorded no earlier than the one before it.
    communication = hidden = 0.0
    waited = compute
    for posted, done in spans:
        recorded = done
        if done > compute:
            recorded = max(done, waited)
            waited = recorded
        communication += recorded - posted
        hidden += max(0.0, min(recorded, compute) - posted)
    small = (3 if sharded else 2) * allreduce_seconds(16, p, ppn, links, "binomial")
    optimizer = rest / p if sharded else rest
    gather, free = 0.0, {}
    if sharded:
        for size, _ in buckets(bucket_mb * 1024 * 1024, model):
            gather = max(gather, simulate(schedule("allgather", algorithm, p, size, ppn), links, 0.0,
                                          lambda t: t, free))
    return {"step": compute + exposed + small + optimizer + gather, "exposed": exposed, "small": small,
            "optimizer": optimizer, "gather": gather,
            "overlap_fraction": hidden / communication if communication > 0 else 0.0}


def step_model(compute, rest, p, nodes, bucket_mb, overlap, links, algorithm, model=BABY, zero=0, compression="none"):
    """Predicted seconds per step, and the exposed gradient communication (see `step_detail`)."""
    detail = step_detail(compute, rest, p, nodes, bucket_mb, overlap, links, algorithm, model, zero, compression)
    return detail["step"], detail["exposed"]


def read_csv(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def row_model(r):
    return r.get("model") or "baby"


def row_zero(r):
    return int(r.get("zero") or 0)


# The tables' buckets: baby's small buckets (where overlap shows at this size), gpt2-small's default.
TABLE_BUCKET_MB = {"baby": 0.5, "gpt2-small": 25}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("directory", nargs="?", default="scaling-results")
    parser.add_argument("--algorithm", choices=["binomial", "ring"], default="binomial",
                        help="schedules for the measured configurations (default binomial: libnbc's, what Open MPI 4.1 runs "
                             "for Replica: binomial all-reduce; binomial reduce + linear scatter; linear all-gather)")
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

    # Compute per step, 1 rank, by model and batch.
    rows = read_csv(directory / "scaling.csv")
    single = {(row_model(r), int(r["batch_per_rank"])): r for r in rows if r["benchmark"] == "bench-step" and r["ranks"] == "1"}
    compute = {k: float(r["compute_ms"]) / 1e3 for k, r in single.items()}
    rest = {k: (float(r["ms_per_step"]) - float(r["compute_ms"])) / 1e3 for k, r in single.items()}
    # The 1-rank batch of each model's weak and strong scaling (efficiency's baseline).
    baseline = {(row_model(r), r["mode"]): int(r["batch_per_rank"]) for r in single.values() if r["mode"] in ("weak", "strong")}
    models = [name for name in MODELS if any(m == name for m, _ in compute)]
    print()
    for name in models:
        print(f"Compute on 1 rank ({name}, {MODELS[name].count:,} parameters, bench step): " + ", ".join(
            f"batch {b}: {1e3 * compute[m, b]:.1f} ms forward+backward + {1e3 * rest[m, b]:.1f} ms optimizer"
            for m, b in sorted(compute) if m == name))

    # Prediction next to measurement.
    print(f"\nMeasured vs predicted step time ({arguments.algorithm} schedules; {arguments.cores} cores shared by all ranks)")
    print("  A: compute from the 1-rank run (a prediction); B: compute as measured in the run itself (tests the")
    print("     communication and overlap part alone). After bwd = step − compute − optimizer (ZeRO 1: the optimizer")
    print("     on 1/p, so this includes the all-gather), measured / model A; hidden: overlap_fraction, measured / A / B.")
    header = (f"  {'model':<10} {'mode':<6} {'p':>2} {'nodes':>5} {'link':>8} {'bucket':>6} {'ovl':>3} {'z':>1} {'gradients':>27} | {'measured':>8}"
              f" {'A':>8} {'err A':>6} {'B':>8} {'err B':>6} | {'after bwd m/A (ms)':>19} | {'hidden m/A/B':>14} | {'eff m/A':>9}")
    print(header)
    errors = {"A": [], "B": [], "A, at most one rank a core": [], "A, more ranks than cores": []}
    for r in rows:
        if r["benchmark"] != "bench-step" or r["ranks"] == "1":
            continue
        name, zero = row_model(r), row_zero(r)
        p, nodes, batch = int(r["ranks"]), int(r["nodes"]), int(r["batch_per_rank"])
        if (name, batch) not in compute or name not in MODELS:
            continue
        links = links_by_rate.get(r["bandwidth"]) if nodes > 1 else {"local": local, "link": local}
        if links is None:
            continue
        share = max(1.0, p / arguments.cores)
        algorithm = r.get("allreduce") or arguments.algorithm
        compression = r.get("compression") or "none"
        shape = (p, nodes, float(r["bucket_mb"]), r["overlap"] == "on", links, algorithm, MODELS[name], zero, compression)
        detail = step_detail(compute[name, batch] * share, rest[name, batch] * share, *shape)
        predicted = detail["step"]
        own_detail = step_detail(float(r["compute_ms"]) / 1e3, rest[name, batch] * share, *shape)
        own = own_detail["step"]
        measured = float(r["ms_per_step"]) / 1e3
        error, own_error = (predicted - measured) / measured, (own - measured) / measured
        errors["A"].append(abs(error))
        errors["B"].append(abs(own_error))
        errors["A, more ranks than cores" if p > arguments.cores else "A, at most one rank a core"].append(abs(error))
        base_batch = baseline.get((name, r["mode"]), batch)
        base = compute[name, base_batch] + rest[name, base_batch]
        # Weak: tokens/s(p) / (p · tokens/s(1)) = T1 / Tp; strong (same global batch): T1 / (p · Tp).
        efficiency = base / predicted if r["mode"] == "weak" else base / (p * predicted)
        measured_after = float(r["exposed_ms"]) - 1e3 * detail["optimizer"]
        predicted_after = detail["exposed"] + detail["small"] + detail["gather"]
        hidden = (f"{float(r['overlap_fraction']):.2f}/{detail['overlap_fraction']:.2f}/{own_detail['overlap_fraction']:.2f}"
                  if r["overlap_fraction"] != "" else "")
        measured_efficiency = f"{float(r['efficiency']):.2f}" if r["efficiency"] != "" else "-"
        gradients = f"{algorithm}" + (f", {compression}" if compression != "none" else "")
        print(f"  {name:<10} {r['mode']:<6} {p:>2} {nodes:>5} {r['bandwidth']:>8} {r['bucket_mb']:>6} {r['overlap']:>3} {zero:>1} {gradients:>27} | "
              f"{1e3 * measured:8.1f} {1e3 * predicted:8.1f} {100 * error:+5.0f}% {1e3 * own:8.1f} {100 * own_error:+5.0f}% | "
              f"{max(0, measured_after):8.1f} / {1e3 * predicted_after:8.1f} | {hidden:>14} | {measured_efficiency}/{efficiency:.2f}")
    for label, values in errors.items():
        if values:
            values.sort()
            print(f"  {label}: {sum(1 for e in values if e <= 0.25)} of {len(values)} configurations within 25% "
                  f"(median |error| {100 * values[len(values) // 2]:.0f}%, worst {100 * values[-1]:.0f}%)")

    # The overlap bar: gpt2-small across 2 nodes, default buckets, overlap on.
    if ("gpt2-small", 1) in compute and links_by_rate:
        print("\nPredicted overlap_fraction, gpt2-small, batch 1, 2 ranks on 2 nodes, 25 MiB buckets, overlap on"
              " (share of the gradient communication hidden behind backward)")
        for rate, links in links_by_rate.items():
            cells = []
            for zero in (0, 1):
                detail = step_detail(compute["gpt2-small", 1], rest["gpt2-small", 1], 2, 2, 25, True, links,
                                     arguments.algorithm, MODELS["gpt2-small"], zero)
                cells.append(f"ZeRO {zero}: {detail['overlap_fraction']:.2f} ({1e3 * detail['step']:.0f} ms/step)")
            print(f"  {rate:>8}: " + ", ".join(cells))

    # Tables for sizes not measurable here: weak scaling, one rank a node.
    for name in models:
        weak = baseline.get((name, "weak"))
        if weak is None:
            continue
        bucket = TABLE_BUCKET_MB.get(name, 25)
        model, c, o = MODELS[name], compute[name, weak], rest[name, weak]
        base = c + o
        for rate, links in links_by_rate.items():
            print(f"\nPredicted weak scaling, {name}, {rate}, 1 rank a node with its own core, batch {weak}, bucket {bucket} MiB,"
                  " overlap on (ms/step and efficiency; binomial = libnbc's schedules, Open MPI 4.1's own; ring = Replica's; PowerSGD rank 4)")
            columns = [(0, "binomial", "none"), (0, "ring", "none"), (0, "ring", "bf16"), (0, "ring", "powersgd"),
                       (1, "binomial", "none"), (1, "ring", "none")]
            print(f"  {'nodes':>5} | " + " ".join(f"{f'ZeRO {z} {a}' + ('' if k == 'none' else f' {k}'):>21}" for z, a, k in columns))
            for p in [2, 4, 8, 16, 32, 64, 128, 256]:
                cells = []
                for zero, algorithm, compression in columns:
                    t, _ = step_model(c, o, p, p, bucket, True, links, algorithm, model, zero, compression)
                    cells.append(f"{f'{1e3 * t:.0f} ms {base / t:.2f}':>21}")
                print(f"  {p:>5} | " + " ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
