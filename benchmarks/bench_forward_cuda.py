#!/usr/bin/env python3
"""Teacher forward throughput on one GPU: fusellm (the decoder on the CudaBackend, with fp32 GEMMs
and with bf16 GEMMs on tensor cores) against PyTorch + transformers (fp32 and bf16) on the same
~1B-parameter Llama (sdpa attention) and MPT (transformers' MPT attention), in the same run
(issue 15's teacher benchmark).

Runs where the GPU is (scripts/gpu_check.sh calls it there, with the machine's own python3, torch
and transformers): makes each randomly initialised model on the GPU, writes it as a Hugging Face
directory (config.json + model.safetensors), times transformers' forward pass on it, runs
bench_forward_cuda (the C++ half) on the directory, and prints tokens/s of each and the ratios.
Both sides include copying the logits [T, V] to the host, which a teacher needs there.

    python3 benchmarks/bench_forward_cuda.py --bin build/benchmarks/bench_forward_cuda [--families llama,mpt]
"""
import argparse
import sys
import tempfile
import time

import torch

from bench_cuda_common import CONFIG, CONFIG_MPT, make_model, median_seconds, run_cpp_half, tokens_per_s

FAMILIES = {"llama": CONFIG, "mpt": CONFIG_MPT}


def time_hf(model, ids, reps):
    with torch.inference_mode():
        return median_seconds(lambda: model(ids).logits.float().cpu(), reps, "cuda")


def bench_family(name, a):
    """One family: transformers fp32 and bf16, then fusellm's two GEMM modes; 0, or 1 on a failure."""
    config = FAMILIES[name]
    with tempfile.TemporaryDirectory(prefix=f"fusellm_bench_forward_{name}_") as d:
        t = time.perf_counter()
        model, n = make_model(d, config)
        model.eval()
        print(f"model: {name}, {n / 1e9:.3f} B parameters, made and written in {time.perf_counter() - t:.1f} s; "
              f"T = {a.tokens}; torch {torch.__version__}, {torch.cuda.get_device_name(0)}", flush=True)
        ids = torch.randint(0, model.config.vocab_size, (1, a.tokens), device="cuda")
        hf32 = time_hf(model, ids, a.reps)
        model = model.to(torch.bfloat16)
        hf16 = time_hf(model, ids, a.reps)
        del model
        torch.cuda.empty_cache()
        print(f"transformers {name} fp32 forward: median {hf32 * 1e3:.1f} ms, {a.tokens / hf32:.0f} tokens/s", flush=True)
        print(f"transformers {name} bf16 forward: median {hf16 * 1e3:.1f} ms, {a.tokens / hf16:.0f} tokens/s", flush=True)
        for gemm in ("fp32", "bf16"):  # the CudaBackend's GemmMath: SGEMM, or bf16 operands on tensor cores
            rc, out = run_cpp_half([a.bin, d, str(a.tokens), str(a.reps), gemm])
            ours = tokens_per_s(out)
            if rc != 0 or ours is None:
                print(f"bench_forward_cuda {name} {gemm} failed (exit {rc})")
                return 1
            print(f"ratio {name}: fusellm {gemm} GEMMs / transformers fp32 = {ours / (a.tokens / hf32):.2f}x; "
                  f"/ transformers bf16 = {ours / (a.tokens / hf16):.2f}x (issue 15's target: >= 1.3x against bf16)")
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True, help="bench_forward_cuda (the C++ half)")
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--families", default="llama,mpt", help="comma-separated: " + ",".join(FAMILIES))
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("bench_forward_cuda.py: no CUDA device for torch")
        return 1
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 on both sides
    torch.backends.cudnn.allow_tf32 = False
    return max(bench_family(name, a) for name in a.families.split(","))


if __name__ == "__main__":
    sys.exit(main())
