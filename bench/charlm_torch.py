"""PyTorch peer of `replica bench step --model charlm`: the same GPT (nanoGPT's architecture,
bias-free, tied head, pre-norm, exact GELU), the same batch, AdamW, timed the same way.

Run (1 thread, as `replica bench step --threads 1`; bench/run.sh installs PyTorch's CPU wheel
into the repository's venv the first time, see launch/python.sh):
    bench/run.sh bench/charlm_torch.py --threads 1 --steps 50 [--json]
"""
import argparse
import json
import math
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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup-steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=12)
    parser.add_argument("--block-size", type=int, default=64)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--embedding", type=int, default=128)
    parser.add_argument("--vocab", type=int, default=65)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
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
    result = {"task": "torch charlm step", "threads": args.threads, "ms_per_step": ms, "tokens_per_s": tokens,
              "torch": torch.__version__, "param_count": sum(p.numel() for p in model.parameters())}
    print(json.dumps(result) if args.json else f"PyTorch {torch.__version__}: {ms:.2f} ms/step, {tokens:.0f} tokens/s ({args.threads} thread)")


if __name__ == "__main__":
    main()
