"""What the GPU benchmarks against PyTorch + transformers share (bench_forward_cuda.py,
bench_train_cuda.py): the ~1B Llama they make, written once as a Hugging Face directory that both
sides load, a median timer, and the run of the C++ half. Imported from beside it (the scripts run
as `python3 benchmarks/X.py`, which puts benchmarks/ first on sys.path).
"""
import json
import os
import re
import subprocess
import sys
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

# The same layout at a size a CPU runs in a second: for checking the scripts where there is no GPU.
TINY_CONFIG = dict(CONFIG, hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=4, vocab_size=512, max_position_embeddings=256)


def make_model(out_dir, config=CONFIG, device="cuda"):
    """A randomly initialised LlamaForCausalLM of `config` (fp32, sdpa attention) on `device`,
    written to out_dir as config.json + model.safetensors; (model, parameter count)."""
    from safetensors.torch import save_file
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(**{k: v for k, v in config.items() if k not in ("architectures", "model_type", "torch_dtype")})
    try:
        cfg._attn_implementation = "sdpa"
    except Exception:  # noqa: BLE001 - a read-only property in some versions: their default is sdpa
        pass
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(cfg).float()
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    save_file(state, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    return model, sum(t.numel() for t in state.values())


def synchronize(device):
    if device == "cuda":
        torch.cuda.synchronize()


def median_seconds(fn, reps, device, warmup=1):
    """The median wall time of fn() over `reps` calls after `warmup` calls, the device idle at
    each clock reading."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        synchronize(device)
        t = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


def run_cpp_half(argv):
    """Runs a benchmark's C++ half, its output passed through; (exit status, stdout). gpu_check runs
    python without the binaries' library path and hands it over in FUSELLM_LD_LIBRARY_PATH."""
    env = dict(os.environ)
    if os.environ.get("FUSELLM_LD_LIBRARY_PATH"):
        env["LD_LIBRARY_PATH"] = os.environ["FUSELLM_LD_LIBRARY_PATH"]
    r = subprocess.run(argv, capture_output=True, text=True, env=env)
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr[-4000:])
    sys.stdout.flush()
    return r.returncode, r.stdout


def tokens_per_s(stdout):
    """The last 'N tokens/s' of a C++ half's output, or None."""
    m = re.findall(r"([0-9.]+) tokens/s", stdout)
    return float(m[-1]) if m else None
