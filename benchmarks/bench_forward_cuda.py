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
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import torch


CONFIG = {  # a TinyLlama-1.1B-like shape (hidden 2048, 22 layers, intermediate 5632), 16 layers
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 2048,
    "intermediate_size": 5632, "num_hidden_layers": 16, "num_attention_heads": 16,
    "num_key_value_heads": 16, "vocab_size": 32000, "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu",
    "tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False,
    "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32",
}


def make_model(out_dir):
    from safetensors.torch import save_file
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(**{k: v for k, v in CONFIG.items() if k not in ("architectures", "model_type", "torch_dtype")})
    try:
        cfg._attn_implementation = "sdpa"
    except Exception:  # noqa: BLE001 - a read-only property in some versions: their default is sdpa
        pass
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg).float().eval()
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    save_file(state, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(CONFIG, f, indent=2)
    return model, sum(t.numel() for t in state.values())


def time_hf(model, ids, reps):
    times = []
    with torch.inference_mode():
        model(ids).logits.float().cpu()  # warm-up
        for _ in range(reps):
            torch.cuda.synchronize()
            t = time.perf_counter()
            model(ids).logits.float().cpu()
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


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
        env = dict(os.environ)  # gpu_check runs python without the binaries' library path
        if os.environ.get("FUSELLM_LD_LIBRARY_PATH"):
            env["LD_LIBRARY_PATH"] = os.environ["FUSELLM_LD_LIBRARY_PATH"]
        r = subprocess.run([a.bin, d, str(a.tokens), str(a.reps)], capture_output=True, text=True, env=env)
        sys.stdout.write(r.stdout)
        sys.stderr.write(r.stderr[-4000:])
        m = re.search(r"([0-9]+) tokens/s", r.stdout)
        if r.returncode != 0 or not m:
            print(f"bench_forward_cuda failed (exit {r.returncode})")
            return 1
        ours = float(m.group(1))
        print(f"ratio fusellm fp32 / transformers fp32 = {ours / (a.tokens / hf32):.2f}x; "
              f"/ transformers bf16 = {ours / (a.tokens / hf16):.2f}x (issue 15's target: >= 1.3x against bf16)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
