"""PyTorch peer of `replica bench step --model charlm`: the same GPT (nanoGPT's architecture,
bias-free, tied head, pre-norm, exact GELU), the same sizes (`--preset baby|gpt2-small` and the
size options that override it, Replica's defaults; the vocabulary is the embedded Tiny
Shakespeare's characters, as Replica's), the same batch, AdamW, timed the same way, and the same
model FLOPs utilisation: mfu = flops_per_step / seconds per step / (sgemm_gflops · 1e9 · threads),
with this process's own 1-thread torch.mm rate on a 1024³ product at start-up (median of 5) and
Replica's FLOP count (matrix products of forward and twice them backward, attention's full T×T).
scaled_dot_product_attention's CPU kernel may skip the blocks above the causal diagonal, which the
count still includes: at block 1024 (gpt2-small) attention is 18% of the count, so about 9% of it
may not be computed and this mfu can read up to 10% high against Replica's, which computes the
full square.

Run (1 thread, as `replica bench step --threads 1`; bench/run.sh installs PyTorch's CPU wheel
into the repository's venv the first time, see launch/python.sh):
    bench/run.sh bench/charlm_torch.py --threads 1 --steps 50 [--json]
    bench/run.sh bench/charlm_torch.py --preset gpt2-small --batch-size 1 --threads 1 --steps 2 --warmup-steps 1 --json
"""
import argparse
import json
import math
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, n_embd, n_head):
        super().__init__()
        self.n_head = n_head
        self.ln_1 = nn.LayerNorm(n_embd, bias=False)
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=False)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=False)
        self.ln_2 = nn.LayerNorm(n_embd, bias=False)
        self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=False)
        self.mlp_proj = nn.Linear(4 * n_embd, n_embd, bias=False)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))


class GPT(nn.Module):
    def __init__(self, vocab, block, n_layer, n_head, n_embd):
        super().__init__()
        self.wte = nn.Embedding(vocab, n_embd)
        self.wpe = nn.Embedding(block, n_embd)
        self.h = nn.ModuleList(Block(n_embd, n_head) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd, bias=False)
        for p in self.parameters():
            nn.init.normal_(p, std=0.02) if p.dim() == 2 else nn.init.ones_(p)
        for block in self.h:
            nn.init.normal_(block.c_proj.weight, std=0.02 / math.sqrt(2 * n_layer))
            nn.init.normal_(block.mlp_proj.weight, std=0.02 / math.sqrt(2 * n_layer))

    def forward(self, idx, targets):
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(T))
        for block in self.h:
            x = block(x)
        logits = self.ln_f(x) @ self.wte.weight.t()
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


# Replica's GPTPreset (Sources/ReplicaModels/GPT.swift): layers, heads, embedding, block size.
PRESETS = {"baby": (4, 4, 128, 64), "gpt2-small": (12, 12, 768, 1024)}
SHAKESPEARE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../Sources/ReplicaData/Resources/tinyshakespeare.txt")


def matmul_flops(batch, block, layers, embedding, vocab):
    """Replica's GPTConfig.matmulFLOPs(batch:): 3 × (L·(24·N·C² + 4·B·T²·C) + 2·N·C·V), N = B·T."""
    B, T, C, L, V = batch, block, embedding, layers, vocab
    N = B * T
    return 3 * (L * (2 * N * C * 3 * C + 2 * 2 * B * T * T * C + 2 * N * C * C + 2 * 2 * N * C * 4 * C) + 2 * N * C * V)


def single_thread_mm_gflops(threads, iterations=5):
    """GFLOP/s of torch.mm on one thread at 1024³ (two warm-up calls, the median of `iterations`); `threads` after."""
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.rand(1024, 1024, generator=generator) * 2 - 1 for _ in range(2))
    c = torch.empty(1024, 1024)
    for _ in range(2):
        torch.mm(a, b, out=c)
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        torch.mm(a, b, out=c)
        times.append(time.perf_counter() - start)
    torch.set_num_threads(threads)
    return 2 * 1024 ** 3 / sorted(times)[len(times) // 2] / 1e9


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup-steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=12)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="baby",
                        help="the model's size, as Replica's --preset; the size options below override it")
    parser.add_argument("--block-size", type=int)
    parser.add_argument("--layers", type=int)
    parser.add_argument("--heads", type=int)
    parser.add_argument("--embedding", type=int)
    parser.add_argument("--vocab", type=int, help="default: the distinct characters of the embedded Tiny Shakespeare")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    layers, heads, embedding, block = PRESETS[args.preset]
    args.layers, args.heads = args.layers or layers, args.heads or heads
    args.embedding, args.block_size = args.embedding or embedding, args.block_size or block
    if args.vocab is None:
        with open(SHAKESPEARE, encoding="utf-8", newline="") as text:
            args.vocab = len(set(text.read()))
    sgemm_gflops = single_thread_mm_gflops(args.threads)
    torch.manual_seed(0)
    model = GPT(args.vocab, args.block_size, args.layers, args.heads, args.embedding)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=1e-3, betas=(0.9, 0.99))
    x = torch.randint(args.vocab, (args.batch_size, args.block_size))
    y = torch.randint(args.vocab, (args.batch_size, args.block_size))
    times = []
    for step in range(args.warmup_steps + args.steps):
        start = time.perf_counter()
        loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step >= args.warmup_steps:
            times.append(time.perf_counter() - start)
    ms = sorted(times)[len(times) // 2] * 1e3
    tokens = args.batch_size * args.block_size / (ms / 1e3)
    flops = matmul_flops(args.batch_size, args.block_size, args.layers, args.embedding, args.vocab)
    mfu = flops / (ms / 1e3) / (sgemm_gflops * 1e9 * args.threads)
    result = {"task": "torch charlm step", "threads": args.threads, "ms_per_step": ms, "tokens_per_s": tokens,
              "torch": torch.__version__, "param_count": sum(p.numel() for p in model.parameters()),
              "preset": args.preset, "batch_size": args.batch_size, "block_size": args.block_size, "layers": args.layers,
              "heads": args.heads, "embedding": args.embedding, "vocab_size": args.vocab,
              "flops_per_step": flops, "sgemm_gflops": sgemm_gflops, "mfu": mfu}
    print(json.dumps(result) if args.json else
          f"PyTorch {torch.__version__}: {ms:.2f} ms/step, {tokens:.0f} tokens/s, MFU {100 * mfu:.1f}% "
          f"({flops / 1e9:.2f} GFLOP/step; torch.mm {sgemm_gflops:.1f} GFLOP/s a thread) ({args.threads} thread)")


if __name__ == "__main__":
    main()
