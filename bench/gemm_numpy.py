"""NumPy's float32 matmul at the sizes of `replica bench gemm`, timed the same way (median of N calls).

Usage: OPENBLAS_NUM_THREADS=1 bench/run.sh bench/gemm_numpy.py --sizes 1024 --iters 10 [--json]
"""
import argparse
import json
import time

import numpy as np


def shapes(text):
    for item in text.split(","):
        parts = [int(p) for p in item.lower().split("x")]
        yield (parts[0],) * 3 if len(parts) == 1 else tuple(parts)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="256,512,1024,2048")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    results = []
    for m, n, k in shapes(args.sizes):
        a = rng.uniform(-1, 1, (m, k)).astype(np.float32)
        b = rng.uniform(-1, 1, (k, n)).astype(np.float32)
        c = np.empty((m, n), dtype=np.float32)
        for _ in range(2):
            np.matmul(a, b, out=c)
        times = []
        for _ in range(args.iters):
            start = time.perf_counter()
            np.matmul(a, b, out=c)
            times.append(time.perf_counter() - start)
        seconds = sorted(times)[len(times) // 2]
        results.append({"m": m, "n": n, "k": k, "seconds": seconds, "gflops": 2 * m * n * k / seconds / 1e9})
        if not args.json:
            print(f"{m:6d} {n:6d} {k:6d} {seconds * 1e3:10.3f} {results[-1]['gflops']:9.1f}")
    if args.json:
        print(json.dumps({"task": "numpy gemm", "results": results}))


if __name__ == "__main__":
    main()
