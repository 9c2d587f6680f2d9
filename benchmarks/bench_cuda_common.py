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

# An MPT of about 1B (issue 15's second teacher family): MosaicML's layout as transformers'
# MptConfig writes it (ALiBi, LayerNorm without bias, no biases, the head tied to the embedding,
# GPT-NeoX-20B's vocabulary), 16 layers of hidden 2048 and a 4x MLP.
CONFIG_MPT = {
    "model_type": "mpt", "d_model": 2048, "n_heads": 16, "n_layers": 16, "expansion_ratio": 4,
    "max_seq_len": 2048, "vocab_size": 50432, "layer_norm_epsilon": 1e-5, "no_bias": True,
}

# The same layout at a size a CPU runs in a second: for checking the scripts where there is no GPU.
TINY_CONFIG = dict(CONFIG, hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=4, vocab_size=512, max_position_embeddings=256)


def make_model(out_dir, config=CONFIG, device="cuda"):
    """A randomly initialised model of `config` (a Llama with sdpa attention, or an MPT: its
    model_type), fp32 on `device`, written to out_dir as config.json + model.safetensors (a tied
    head once); (model, parameter count)."""
    from safetensors.torch import save_file
    torch.manual_seed(0)
    if config.get("model_type") == "mpt":
        from transformers import MptConfig, MptForCausalLM
        cfg = MptConfig(**{k: v for k, v in config.items() if k != "model_type"})
        with torch.device(device):
            model = MptForCausalLM(cfg).float()
        config_json = cfg.to_dict()
    else:
        from transformers import LlamaConfig, LlamaForCausalLM
        cfg = LlamaConfig(**{k: v for k, v in config.items() if k not in ("architectures", "model_type", "torch_dtype")})
        try:
            cfg._attn_implementation = "sdpa"
        except Exception:  # noqa: BLE001 - a read-only property in some versions: their default is sdpa
            pass
        with torch.device(device):
            model = LlamaForCausalLM(cfg).float()
        config_json = config
    state = {}
    for k, v in model.state_dict().items():  # a tied head is the embedding's storage: kept once
        if not any(v.data_ptr() == w.data_ptr() for w in state.values()):
            state[k] = v
    state = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    save_file(state, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config_json, f, indent=2)
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
