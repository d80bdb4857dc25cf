"""PyTorch peer of `replica bench step --model translate`: the same encoder-decoder Transformer
(nn.Transformer, pre-norm, d 256, 3 + 3 layers, 4 heads, FFN 1024, dropout 0.1, ReLU, final
encoder and decoder LayerNorms, sinusoidal positions, one embedding shared by source, target and
output projection, scaled by sqrt(d)), label-smoothed (0.1) cross-entropy over the non-padding
targets, Adam (beta2 0.98) with gradient clipping at 1 -- on the same data: Multi30k's training
pairs encoded with the BPE vocabulary of a Replica translate checkpoint (its state.json), cut into
length-bucketed batches of at most --batch-size padded tokens, B x max(S, T) <= budget, as Replica's
`makeBatches` does (pools of about 100 batches sorted by length). The output projection covers every
target position, padding included, as nn.Transformer code usually does; --predicted-rows-only
projects only the non-padding ones, as Replica does (about 9% fewer rows).

tokens_per_s counts target tokens: the predicted, non-padding tokens (`</s>` included, `<s>`
not), summed over the timed steps and divided by their summed time -- the same definition as
`replica bench step --model translate`. padded_tokens_per_s counts B*S + B*T; tokens_per_cpu_s
divides by the process's CPU time instead (steadier when other jobs share the cores).

Run (1 thread, as `replica bench step --model translate --threads 1`):
    bench/run.sh bench/translate_torch.py --checkpoint runs/de-en --threads 1 [--json]
"""
import argparse
import gzip
import json
import math
import os
import random
import time
import unicodedata

import torch
import torch.nn as nn
import torch.nn.functional as F

PAD, BOS, EOS, UNK = 0, 1, 2, 3
BOUNDARY = "\u2581"


class BPE:
    """Replica's BPETokenizer (encoding only) from a checkpoint's serialized tokenizer."""

    def __init__(self, serialized):
        self.lowercase = serialized["lowercase"]
        symbols = serialized["vocabulary"]
        self.count = len(symbols)
        ids = {s: i for i, s in enumerate(symbols)}
        self.characters = {s: i for i, s in enumerate(symbols) if i >= 5 and len(s) == 1}
        self.ranks = {}
        for rank, (left, right) in enumerate(serialized["merges"]):
            key = (ids[left], ids[right])
            if key not in self.ranks:
                self.ranks[key] = (rank, ids[left + right])
        self.cache = {}

    @staticmethod
    def pieces(line):
        pieces, current, at_start = [], "", True
        for ch in line:
            if ch.isspace() or ch == BOUNDARY:
                if current:
                    pieces.append(current)
                current, at_start = "", True
            elif unicodedata.category(ch)[0] in "PS":
                if current:
                    pieces.append(current)
                pieces.append((BOUNDARY if at_start else "") + ch)
                current, at_start = "", False
            else:
                current += (BOUNDARY if at_start else "") + ch
                at_start = False
        if current:
            pieces.append(current)
        return pieces

    def encode_piece(self, piece):
        symbols = [self.characters.get(ch, UNK) for ch in piece]
        while len(symbols) > 1:
            best = None
            for pair in zip(symbols, symbols[1:]):
                merge = self.ranks.get(pair)
                if merge and (best is None or merge[0] < best[1][0]):
                    best = (pair, merge)
            if best is None:
                break
            (left, right), (_, result) = best
            merged, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and symbols[i] == left and symbols[i + 1] == right:
                    merged.append(result)
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        return symbols

    def encode(self, line):
        ids = []
        for piece in self.pieces(line.lower() if self.lowercase else line):
            if piece not in self.cache:
                self.cache[piece] = self.encode_piece(piece)
            ids += self.cache[piece]
        return ids


def make_batches(examples, budget, seed):
    """Length-bucketed batches of at most `budget` padded tokens, B x max(S, T) (Replica's makeBatches)."""
    lengths = [max(len(s), len(t) - 1) for s, t in examples]
    mean = max(1, sum(lengths) // len(lengths))
    pool = 100 * max(1, budget // mean)
    order = list(range(len(examples)))
    rng = random.Random(seed)
    rng.shuffle(order)
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start:start + pool], key=lambda i: lengths[i])
        current, longest = [], 0
        for i in chunk:
            if current and (len(current) + 1) * max(longest, lengths[i]) > budget:
                batches.append(current)
                current, longest = [], 0
            current.append(i)
            longest = max(longest, lengths[i])
        if current:
            batches.append(current)
    rng.shuffle(batches)
    return batches


def pad(examples, indices):
    S = max(len(examples[i][0]) for i in indices)
    T = max(len(examples[i][1]) - 1 for i in indices)
    src = torch.full((len(indices), S), PAD, dtype=torch.long)
    tgt_in = torch.full((len(indices), T), PAD, dtype=torch.long)
    tgt_out = torch.full((len(indices), T), -100, dtype=torch.long)
    for row, i in enumerate(indices):
        s, t = examples[i]
        src[row, :len(s)] = torch.tensor(s)
        tgt_in[row, :len(t) - 1] = torch.tensor(t[:-1])
        tgt_out[row, :len(t) - 1] = torch.tensor(t[1:])
    return src, tgt_in, tgt_out


class Seq2Seq(nn.Module):
    def __init__(self, vocab, d, heads, layers, ffn, dropout, max_len=256):
        super().__init__()
        self.d = d
        self.embedding = nn.Embedding(vocab, d)
        nn.init.normal_(self.embedding.weight, std=d ** -0.5)
        self.transformer = nn.Transformer(d, heads, layers, layers, ffn, dropout, batch_first=True, norm_first=True)
        for p in self.transformer.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        self.dropout = nn.Dropout(dropout)
        position = torch.arange(max_len).unsqueeze(1)
        rate = torch.exp(torch.arange(0, d, 2) * (-math.log(10000.0) / d))
        table = torch.zeros(max_len, d)
        table[:, 0::2] = torch.sin(position * rate)
        table[:, 1::2] = torch.cos(position * rate)
        self.register_buffer("positions", table)

    def embed(self, ids):
        return self.dropout(self.embedding(ids) * math.sqrt(self.d) + self.positions[:ids.shape[1]])

    def forward(self, src, tgt_in, rows=None):
        T = tgt_in.shape[1]
        causal = torch.triu(torch.full((T, T), float("-inf")), diagonal=1)
        src_pad = src == PAD
        hidden = self.transformer(self.embed(src), self.embed(tgt_in), tgt_mask=causal,
                                  src_key_padding_mask=src_pad, memory_key_padding_mask=src_pad)
        hidden = hidden.reshape(-1, self.d)
        return (hidden if rows is None else hidden[rows]) @ self.embedding.weight.t()


def read_lines(path):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return f.read().split("\n")[:-1]


def peer_arguments(doc, task, batch_default, batch_help):
    """The options every Multi30k peer shares (a checkpoint of `task` for its tokenizer, the data, steps, threads)."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, help=f"a {task} checkpoint folder or --checkpoint-dir (for its tokenizer)")
    parser.add_argument("--data", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "../Sources/ReplicaData/Resources/multi30k"))
    parser.add_argument("--batch-size", type=int, default=batch_default, help=batch_help)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup-steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--json", action="store_true")
    return parser


def checkpoint_state(folder, threads, seed):
    """The checkpoint's state.json (the newest step of a --checkpoint-dir); sets torch's threads and seed."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    if os.path.exists(os.path.join(folder, "latest")):
        folder = os.path.join(folder, open(os.path.join(folder, "latest")).read().strip())
    return json.load(open(os.path.join(folder, "state.json")))


def step_result(name, args, parameters, seconds, cpu_seconds, tokens, **extra):
    """The summary of a peer's timed steps, with `replica bench step`'s keys."""
    return {"task": "bench step", "model": name, "ranks": 1, "steps": args.steps, "seconds": seconds,
            "param_count": parameters, "ms_per_step": seconds / args.steps * 1e3, "tokens_per_s": tokens / seconds,
            "tokens_per_cpu_s": tokens / cpu_seconds, "threads": torch.get_num_threads(), "batch_size": args.batch_size,
            "torch": torch.__version__, **extra}


def main():
    parser = peer_arguments(__doc__, "translate", 2000, "padded tokens a batch, B x max(S, T)")
    parser.add_argument("--predicted-rows-only", action="store_true",
                        help="project only the non-padding target rows onto the vocabulary, as Replica does")
    args = parser.parse_args()
    state = checkpoint_state(args.checkpoint, args.threads, args.seed)
    bpe = BPE(state["tokenizer"])
    config = state["config"]
    source = read_lines(os.path.join(args.data, "train.de.gz"))
    target = read_lines(os.path.join(args.data, "train.en.gz"))
    examples = [(bpe.encode(s) + [EOS], [BOS] + bpe.encode(t) + [EOS]) for s, t in zip(source, target)]
    batches = make_batches(examples, args.batch_size, args.seed)

    model = Seq2Seq(bpe.count, config["embedding"], config["heads"], config["encoder_layers"], config["feed_forward"],
                    config["dropout"])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-8)
    model.train()
    seconds, cpu_seconds, targets, padded = 0.0, 0.0, 0, 0
    for step in range(args.warmup_steps + args.steps):
        src, tgt_in, tgt_out = pad(examples, batches[step % len(batches)])
        started, cpu_started = time.perf_counter(), time.process_time()
        optimizer.zero_grad(set_to_none=True)
        predicted = tgt_out.reshape(-1) != -100
        count = int(predicted.sum())
        if args.predicted_rows_only:
            logits, labels = model(src, tgt_in, predicted.nonzero().squeeze(1)), tgt_out.reshape(-1)[predicted]
        else:
            logits, labels = model(src, tgt_in), tgt_out.reshape(-1)
        loss = F.cross_entropy(logits, labels, ignore_index=-100, label_smoothing=0.1, reduction="sum") / count
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        elapsed, cpu_elapsed = time.perf_counter() - started, time.process_time() - cpu_started
        if step >= args.warmup_steps:
            seconds += elapsed
            cpu_seconds += cpu_elapsed
            targets += count
            padded += src.numel() + tgt_in.numel()
    parameters = sum(p.numel() for p in model.parameters())
    result = step_result("translate (torch nn.Transformer)", args, parameters, seconds, cpu_seconds, targets,
                         padded_tokens_per_s=padded / seconds, target_tokens=targets,
                         predicted_rows_only=args.predicted_rows_only)
    print(f"torch translate step: {result['ms_per_step']:.1f} ms/step, {result['tokens_per_s']:.0f} target tokens/s, "
          f"{result['padded_tokens_per_s']:.0f} padded tokens/s, {result['tokens_per_cpu_s']:.0f} tokens/CPU-s, {torch.get_num_threads()} thread(s), {parameters} parameters")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
