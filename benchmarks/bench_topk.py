#!/usr/bin/env python3
"""PyTorch reference for benchmarks/bench_topk.cpp: torch.topk + softmax of the k values (what the
original FuseLLM does: forward_for_logits.py keeps torch.topk, data_collator.py takes the softmax),
on the CPU with as many threads as OMP_NUM_THREADS.

    OMP_NUM_THREADS=2 python3 benchmarks/bench_topk.py [T V k reps]
"""
import os
import sys
import time

import torch


def main():
    defaults = [4096, 32000, 10, 7]
    args = [int(a) for a in sys.argv[1:5]]
    T, V, k, reps = args + defaults[len(args):]
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    g = torch.Generator().manual_seed(1)
    z = torch.randn(T, V, generator=g) * 3.0
    print(f"torch {torch.__version__} top-k softmax: T={T} V={V} k={k} fp32, "
          f"{torch.get_num_threads()} threads, best of {reps}")
    for tail in (False, True):
        best = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            vals, idx = torch.topk(z, k, dim=-1)
            if tail:
                lse = torch.logsumexp(z, dim=-1, keepdim=True)
                probs = torch.exp(vals - lse)
                rest = 1.0 - probs.sum(-1)
            else:
                probs = torch.softmax(vals, dim=-1)
            best = min(best, time.perf_counter() - t0)
        name = "topk+softmax (keep_tail)" if tail else "topk+softmax            "
        print(f"torch {name}: {best * 1e3:8.2f} ms  {4.0 * T * V / best / 1e9:6.2f} GB/s at 4 B/logit")


if __name__ == "__main__":
    main()
