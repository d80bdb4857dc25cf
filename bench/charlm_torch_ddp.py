"""PyTorch DDP (gloo, loopback) peer of `mpirun -np N replica bench step --model charlm`: the same
GPT and per-rank batch on N processes of this machine, 1 thread each; reports global tokens/s.

    bench/run.sh bench/charlm_torch_ddp.py --ranks 2 --steps 30 [--json]
Weak-scaling efficiency = tokens/s(N ranks) / (N × tokens/s(1 rank)).
"""
import argparse
import json
import os
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from charlm_torch import GPT


def worker(rank, args, results):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(args.port)
    dist.init_process_group("gloo", rank=rank, world_size=args.ranks)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = GPT(65, 64, 4, 4, 128)
    ddp = DistributedDataParallel(model) if args.ranks > 1 else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
    generator = torch.Generator().manual_seed(rank)
    x = torch.randint(65, (args.batch_size, 64), generator=generator)
    y = torch.randint(65, (args.batch_size, 64), generator=generator)
    times = []
    for step in range(5 + args.steps):
        start = time.perf_counter()
        loss = ddp(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step >= 5:
            times.append(time.perf_counter() - start)
    median = torch.tensor([sorted(times)[len(times) // 2]])
    dist.all_reduce(median, op=dist.ReduceOp.MAX)
    if rank == 0:
        results.put(median.item())
    dist.destroy_process_group()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=12)
    parser.add_argument("--port", type=int, default=29533)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = mp.get_context("spawn").SimpleQueue()
    mp.spawn(worker, args=(args, results), nprocs=args.ranks, join=True)
    seconds = results.get()
    tokens = args.ranks * args.batch_size * 64 / seconds
    result = {"task": "torch ddp charlm step", "ranks": args.ranks, "ms_per_step": seconds * 1e3, "tokens_per_s": tokens,
              "torch": torch.__version__}
    print(json.dumps(result) if args.json else f"PyTorch DDP {args.ranks} rank(s): {seconds * 1e3:.2f} ms/step, {tokens:.0f} tokens/s")


if __name__ == "__main__":
    main()
