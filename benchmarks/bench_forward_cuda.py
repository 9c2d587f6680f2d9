#!/usr/bin/env python3
"""Teacher forward throughput on one GPU: fusellm (the decoder on the CudaBackend, fp32) against
PyTorch + transformers (sdpa attention, fp32 and bf16) on the same ~1B-parameter Llama, in the
same run (issue 15's teacher benchmark).

Runs where the GPU is (scripts/gpu_check.sh calls it there, with the machine's own python3, torch
and transformers): makes a randomly initialised Llama of about 1.1B parameters on the GPU, writes
it as a Hugging Face directory (config.json in transformers 4.x's layout + model.safetensors),
times transformers' forward pass on it, runs bench_forward_cuda (the C++ half) on the directory,
and prints tokens/s of each and the ratios. Both sides include copying the logits [T, V] to the
host, which a teacher needs there.

    python3 benchmarks/bench_forward_cuda.py --bin build/benchmarks/bench_forward_cuda
"""
import argparse
import sys
import tempfile
import time

import torch

from bench_cuda_common import CONFIG, make_model, median_seconds, run_cpp_half, tokens_per_s


def time_hf(model, ids, reps):
    with torch.inference_mode():
        return median_seconds(lambda: model(ids).logits.float().cpu(), reps, "cuda")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True, help="bench_forward_cuda (the C++ half)")
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("bench_forward_cuda.py: no CUDA device for torch")
        return 1
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 on both sides
    torch.backends.cudnn.allow_tf32 = False
    with tempfile.TemporaryDirectory(prefix="fusellm_bench_forward_") as d:
        t = time.perf_counter()
        model, n = make_model(d)
        model.eval()
        print(f"model: Llama {CONFIG['num_hidden_layers']} layers, hidden {CONFIG['hidden_size']}, {n / 1e9:.3f} B "
              f"parameters, made and written in {time.perf_counter() - t:.1f} s; T = {a.tokens}; "
              f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}", flush=True)
        ids = torch.randint(0, CONFIG["vocab_size"], (1, a.tokens), device="cuda")
        hf32 = time_hf(model, ids, a.reps)
        model = model.to(torch.bfloat16)
        hf16 = time_hf(model, ids, a.reps)
        del model
        torch.cuda.empty_cache()
        print(f"transformers fp32 sdpa forward: median {hf32 * 1e3:.1f} ms, {a.tokens / hf32:.0f} tokens/s", flush=True)
        print(f"transformers bf16 sdpa forward: median {hf16 * 1e3:.1f} ms, {a.tokens / hf16:.0f} tokens/s", flush=True)
        for gemm in ("fp32", "bf16"):  # the CudaBackend's GemmMath: SGEMM, or bf16 operands on tensor cores
            rc, out = run_cpp_half([a.bin, d, str(a.tokens), str(a.reps), gemm])
            ours = tokens_per_s(out)
            if rc != 0 or ours is None:
                print(f"bench_forward_cuda {gemm} failed (exit {rc})")
                return 1
            print(f"ratio fusellm {gemm} GEMMs / transformers fp32 = {ours / (a.tokens / hf32):.2f}x; "
                  f"/ transformers bf16 = {ours / (a.tokens / hf16):.2f}x (issue 15's target: >= 1.3x against bf16)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
