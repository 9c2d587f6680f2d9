#!/usr/bin/env python3
"""The student's training step on one GPU: fusellm (TrainableModel on the CudaBackend, fp32, the
fused classifier and AdamW on the host as the trainer runs them today) against PyTorch +
transformers (sdpa attention; bf16 weights with fused AdamW, and fp32 for a like-for-like ratio)
on the same ~1B-parameter Llama, in the same run (issue 15's training benchmark).

Runs where the GPU is (scripts/gpu_check.sh calls it there, with the machine's own python3, torch
and transformers): makes the Llama of bench_forward_cuda.py (bench_cuda_common.CONFIG) on the GPU,
writes it once as a Hugging Face directory, measures the device's bf16 and fp32 matrix-product
rates (8192^3, CUDA events, median), times transformers' training step on it, runs
bench_train_cuda (the C++ half) on the directory, and prints tokens/s, MFU and the ratios.

A training step on each side: forward, CLM loss (mean over the T - 1 labelled positions),
backward, clip_grad_norm(1.0), AdamW (lr 1e-5, betas (0.9, 0.95), eps 1e-8, weight decay 0.1),
gradients zeroed; one sequence of T tokens; the median of REPS steps after one warm-up step.

MFU = model FLOPs per step / step time / the measured bf16 matrix-product rate, for every side
(fp32 sides included: what share of the chip's bf16 rate they use). Model FLOPs per step:
  6 N T            N = every parameter but the input embedding table (a lookup, no FLOPs; the
                   untied LM head counts)
  + 6 L T^2 h      attention scores and their product with V, forward and backward: PaLM's
                   (Appendix B) 12 L T^2 h per sequence, halved for the causal mask, as llm.c
                   counts it (Megatron-LM counts it halved too since its causal correction)

    python3 benchmarks/bench_train_cuda.py --bin build/benchmarks/bench_train_cuda
    python3 benchmarks/bench_train_cuda.py --bin build/benchmarks/bench_train_cuda --device cpu --tiny
        (the scripts' check on a machine without a GPU: a 2-layer model, T = 64, torch on the CPU)
"""
import argparse
import re
import sys
import tempfile
import time

import torch

from bench_cuda_common import CONFIG, TINY_CONFIG, make_model, run_cpp_half, synchronize, tokens_per_s


def matmul_rate(n, dtype, device, reps=10):
    """FLOP/s of an n x n x n product of random `dtype` matrices: the median of `reps` after 3
    warm-ups, timed with CUDA events (the host clock on the CPU)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(reps):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            a @ b
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t)
    times.sort()
    return 2.0 * n ** 3 / times[len(times) // 2]


def model_flops(config, tokens):
    """Model FLOPs of one training step on one sequence of `tokens` (module docstring)."""
    h, L, V, I = (config[k] for k in ("hidden_size", "num_hidden_layers", "vocab_size", "intermediate_size"))
    kv = config["num_key_value_heads"] * h // config["num_attention_heads"]
    per_layer = h * (h + 2 * kv) + h * h + 3 * h * I + 2 * h  # q, k, v, o; gate, up, down; two norms
    n = L * per_layer + h + V * h  # + the final norm and the LM head; not the input embedding
    return 6 * n * tokens + 6 * L * tokens ** 2 * h, n


def hf_phases(model, opt, ids, reps, device):
    """Median seconds of transformers' whole step and of its phases (forward + loss, backward,
    clip + AdamW + zero_grad), the device synchronized between phases."""
    marks = {"fwd": [], "bwd": [], "opt": [], "step": []}

    def step(record):
        t0 = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        synchronize(device)
        t1 = time.perf_counter()
        loss.backward()
        synchronize(device)
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        synchronize(device)
        t3 = time.perf_counter()
        if record:
            for k, v in (("fwd", t1 - t0), ("bwd", t2 - t1), ("opt", t3 - t2), ("step", t3 - t0)):
                marks[k].append(v)
        return loss.item()

    first = step(False)  # warm-up: the optimizer's state, cuBLAS's workspaces
    for _ in range(reps):
        last = step(True)
    med = {k: sorted(v)[len(v) // 2] for k, v in marks.items()}
    return med, first, last


def adamw(model, device):
    kw = dict(lr=1e-5, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    try:
        return torch.optim.AdamW(model.parameters(), fused=True, **kw)
    except (RuntimeError, TypeError):  # an old torch without the fused CPU kernel
        if device == "cuda":
            raise
        return torch.optim.AdamW(model.parameters(), **kw)


def time_transformers(model, a, dtype_name):
    """One side of transformers: its phase medians, printed; its step seconds."""
    model.train()
    opt = adamw(model, a.device)
    ids = torch.randint(0, model.config.vocab_size, (1, a.tokens), device=a.device)
    med, first, last = hf_phases(model, opt, ids, a.reps, a.device)
    del opt
    print(f"transformers {dtype_name} sdpa train step: median {med['step'] * 1e3:.1f} ms of {a.reps} (forward + loss "
          f"{med['fwd'] * 1e3:.1f}, backward {med['bwd'] * 1e3:.1f}, clip + fused AdamW {med['opt'] * 1e3:.1f}), "
          f"loss {first:.4f} -> {last:.4f}, {a.tokens / med['step']:.0f} tokens/s", flush=True)
    return med["step"]


def mfu_line(name, seconds, flops, bf16_rate, fp32_rate):
    print(f"{name}: MFU {100 * flops / seconds / bf16_rate:.2f}% of the bf16 matmul rate "
          f"({100 * flops / seconds / fp32_rate:.1f}% of the fp32 one)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True, help="bench_train_cuda (the C++ half)")
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--reps", type=int, default=5, help="transformers' measured steps")
    ap.add_argument("--cpp-reps", type=int, default=3, help="fusellm's measured steps (each a few seconds: host AdamW)")
    ap.add_argument("--dtypes", default="f32,bf16", help="fusellm's training dtypes to run ([train].dtype), comma-separated")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--tiny", action="store_true", help="a 2-layer model and T = 64 (checking the script on a CPU)")
    a = ap.parse_args()
    config = TINY_CONFIG if a.tiny else CONFIG
    if a.tiny:
        a.tokens = min(a.tokens, 64)
    if a.device == "cuda" and not torch.cuda.is_available():
        print("bench_train_cuda.py: no CUDA device for torch")
        return 1
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 on both sides
    torch.backends.cudnn.allow_tf32 = False
    n_mm = 8192 if a.device == "cuda" else 256
    bf16_rate, fp32_rate = matmul_rate(n_mm, torch.bfloat16, a.device), matmul_rate(n_mm, torch.float32, a.device)
    print(f"matmul rate ({n_mm}^3, random, median of 10): bf16 {bf16_rate / 1e12:.1f} TFLOP/s, "
          f"fp32 (no TF32) {fp32_rate / 1e12:.1f} TFLOP/s", flush=True)
    flops, n_flops = model_flops(config, a.tokens)
    with tempfile.TemporaryDirectory(prefix="fusellm_bench_train_") as d:
        t = time.perf_counter()
        model, n = make_model(d, config, a.device)
        gpu = torch.cuda.get_device_name(0) if a.device == "cuda" else "CPU"
        print(f"model: Llama {config['num_hidden_layers']} layers, hidden {config['hidden_size']}, {n / 1e9:.3f} B "
              f"parameters ({n_flops / 1e9:.3f} B in matmuls), made and written in {time.perf_counter() - t:.1f} s; "
              f"T = {a.tokens}; {flops / 1e12:.2f} model TFLOP per step; torch {torch.__version__}, {gpu}", flush=True)
        hf32 = time_transformers(model, a, "fp32")
        model = model.to(torch.bfloat16)
        hf16 = time_transformers(model, a, "bf16")
        del model
        if a.device == "cuda":
            torch.cuda.empty_cache()
        ours = {}
        for dtype in a.dtypes.split(","):
            rc, out = run_cpp_half([a.bin, d, str(a.tokens), str(a.cpp_reps), "--dtype", dtype, "--device", a.device])
            tps = tokens_per_s(out)
            m = re.search(r"median ([0-9.]+) ms of", out)
            if rc != 0 or tps is None or not m:
                print(f"bench_train_cuda --dtype {dtype} failed (exit {rc})")
                return 1
            ours[dtype] = (tps, float(m.group(1)) / 1e3)
    mfu_line("transformers fp32 train", hf32, flops, bf16_rate, fp32_rate)
    mfu_line("transformers bf16 train", hf16, flops, bf16_rate, fp32_rate)
    for dtype, (tps, seconds) in ours.items():
        mfu_line(f"fusellm {a.device} {dtype} train", seconds, flops, bf16_rate, fp32_rate)
        print(f"ratio fusellm {dtype} train / transformers fp32 = {tps / (a.tokens / hf32):.3f}x; "
              f"/ transformers bf16 = {tps / (a.tokens / hf16):.3f}x (tokens/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
