"""nanoGPT's training loop for the CPU "baby" Shakespeare configuration, for comparing final
validation loss and tokens/s with `replica train charlm` on the same machine.

Same model as bench/nanogpt_interop.py, nanoGPT's get_batch (random blocks), get_lr (warmup 100,
cosine to 1e-4 at 2000), AdamW(betas 0.9/0.99, weight decay 0.1 on 2-D parameters), clip 1.0.

    bench/run.sh bench/charlm_torch_train.py --threads 1 --seed 1337 [--steps 2000] [--json]
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from nanogpt_interop import GPT  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--data", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "../Sources/ReplicaData/Resources/tinyshakespeare.txt"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    text = open(args.data, encoding="utf-8").read()
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([stoi[c] for c in text], dtype=torch.long)
    n = int(0.9 * len(data))
    train, val = data[:n], data[n:]
    B, T, lr, min_lr, warmup = 12, 64, 1e-3, 1e-4, 100
    model = GPT(len(chars), T, 4, 4, 128)
    for name, p in model.named_parameters():
        torch.nn.init.normal_(p, std=0.02 / math.sqrt(2 * 4) if name.endswith("c_proj.weight") else 0.02) if p.dim() == 2 else torch.nn.init.ones_(p)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=lr, betas=(0.9, 0.99))

    def get_lr(it):
        if it < warmup:
            return lr * (it + 1) / (warmup + 1)
        ratio = (it - warmup) / (args.steps - warmup)
        return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)

    start = time.perf_counter()
    for it in range(args.steps):
        for group in optimizer.param_groups:
            group["lr"] = get_lr(it)
        ix = torch.randint(len(train) - T, (B,))
        x = torch.stack([train[i:i + T] for i in ix])
        y = torch.stack([train[i + 1:i + 1 + T] for i in ix])
        logits = model(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        total, count = 0.0, 0
        for chunk in torch.arange(0, len(val) - T - 1, T).split(256):
            x = torch.stack([val[s:s + T] for s in chunk])
            y = torch.stack([val[s + 1:s + 1 + T] for s in chunk])
            logits = model(x)
            total += F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1), reduction="sum").item()
            count += y.numel()
    result = {"task": "torch charlm train", "seed": args.seed, "steps": args.steps, "val_loss_full": total / count,
              "tokens_per_s": args.steps * B * T / seconds, "seconds": seconds, "threads": args.threads}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
