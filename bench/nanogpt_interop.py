"""Loads a Replica charlm checkpoint into nanoGPT's model with load_state_dict(strict=True) and
evaluates it on Tiny Shakespeare's validation split (docs/interface.md: charlm checkpoints open in nanoGPT).

The model class below follows nanoGPT's model.py (GPTConfig(bias=False, dropout=0)); it is written
here so that the check runs without the nanoGPT repository.

    bench/run.sh bench/nanogpt_interop.py CHECKPOINT_FOLDER [--data Sources/ReplicaData/Resources/tinyshakespeare.txt]

Prints the validation loss over every non-overlapping block of the validation split, and the
spread of nanoGPT's own estimate (20 random batches of 12, as `estimate_loss` with eval_iters=20).
"""
import argparse
import json
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd, n_head):
        super().__init__()
        self.n_head = n_head
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=False)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=False)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class MLP(nn.Module):
    def __init__(self, n_embd):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=False)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * n_embd, n_embd, bias=False)

    def forward(self, x):
        return self.c_proj(self.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, n_embd, n_head):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd, bias=False)
        self.attn = CausalSelfAttention(n_embd, n_head)
        self.ln_2 = nn.LayerNorm(n_embd, bias=False)
        self.mlp = MLP(n_embd)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, vocab_size, block_size, n_layer, n_head, n_embd):
        super().__init__()
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab_size, n_embd),
            wpe=nn.Embedding(block_size, n_embd),
            h=nn.ModuleList([Block(n_embd, n_head) for _ in range(n_layer)]),
            ln_f=nn.LayerNorm(n_embd, bias=False),
        ))
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight

    def forward(self, idx):
        T = idx.shape[1]
        x = self.transformer.wte(idx) + self.transformer.wpe(torch.arange(T))
        for block in self.transformer.h:
            x = block(x)
        return self.lm_head(self.transformer.ln_f(x))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint")
    parser.add_argument("--data", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "../Sources/ReplicaData/Resources/tinyshakespeare.txt"))
    args = parser.parse_args()
    state = json.load(open(os.path.join(args.checkpoint, "state.json")))
    config = state["config"]
    stoi = {c: i for i, c in enumerate(state["vocab"])}
    model = GPT(len(state["vocab"]), config["block_size"], config["layers"], config["heads"], config["embedding"])
    tensors = load_file(os.path.join(args.checkpoint, "model.safetensors"))
    model.load_state_dict(tensors, strict=True)
    model.eval()
    text = open(args.data, encoding="utf-8").read()
    val = torch.tensor([stoi[c] for c in text[int(len(text) * 0.9):]], dtype=torch.long)
    T = config["block_size"]
    with torch.no_grad():
        starts = torch.arange(0, len(val) - T - 1, T)
        total, count = 0.0, 0
        for chunk in starts.split(256):
            x = torch.stack([val[s:s + T] for s in chunk])
            y = torch.stack([val[s + 1:s + 1 + T] for s in chunk])
            logits = model(x)
            total += F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1), reduction="sum").item()
            count += y.numel()
        full = total / count
        estimates = []
        generator = torch.Generator().manual_seed(0)
        for _ in range(20):
            losses = []
            for _ in range(20):
                ix = torch.randint(len(val) - T, (12,), generator=generator)
                x = torch.stack([val[i:i + T] for i in ix])
                y = torch.stack([val[i + 1:i + 1 + T] for i in ix])
                logits = model(x)
                losses.append(F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1)).item())
            estimates.append(sum(losses) / len(losses))
    mean = sum(estimates) / len(estimates)
    spread = math.sqrt(sum((e - mean) ** 2 for e in estimates) / (len(estimates) - 1))
    print(json.dumps({"strict_load": True, "val_loss_full": full, "nanogpt_estimate_mean": mean,
                      "nanogpt_estimate_std": spread, "nanogpt_estimate_min": min(estimates),
                      "nanogpt_estimate_max": max(estimates)}))


if __name__ == "__main__":
    main()
