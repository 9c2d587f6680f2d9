#!/usr/bin/env python3
"""Random tiny checkpoints of each model family and their logits, for the C++ forward pass.

Writes tests/fixtures/models/<name>/ (config.json + safetensors, as `save_pretrained` writes them)
and tests/fixtures/models/<name>/reference/cases.safetensors with, per case:
  <case>.ids      int32 [T]
  <case>.doc_ids  int32 [T]   (packed cases only)
  <case>.logits   fp32  [T, vocab]
Cases: len1, len7, len256 (random ids) and `packed` (three documents in one sequence; its
reference is each document run on its own, concatenated).

The reference is always computed in fp32 from the weights as saved (bf16/fp16 fixtures are
reloaded with torch_dtype=float32, so the rounding is the same on both sides). Each forward pass
uses a freshly loaded model: "dynamic" RoPE keeps state between calls in transformers.

MPT fixtures named mpt_mosaicml_* are computed as MosaicML's own modeling code computes them
(see `mosaicml_mpt` below): transformers' MptForCausalLM ignores two config fields that
MosaicML's code honours, and fusellm follows the publisher.

Run from the repository root:  python3 tests/reference/gen_models.py [fixture ...]
(no names: every fixture).
"""
import contextlib
import json
import math
import os
import shutil
import sys

import torch
import transformers
from safetensors.torch import save_file
from torch import nn
from transformers import (AutoModelForCausalLM, GPT2Config, GPTNeoXConfig, LlamaConfig, MistralConfig,
                          MptConfig, Qwen2Config)
from transformers.models.mpt import modeling_mpt

assert torch.__version__.split("+")[0] == "2.5.1", torch.__version__
assert transformers.__version__ == "4.46.3", transformers.__version__
transformers.utils.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "models")


def randomize(model, seed):
    """Replaces the tiny default init (std 0.02, zero biases, unit norms) by weights that make every
    term visible in the logits: unit-variance activations, non-trivial attention patterns, non-zero
    biases and norm weights away from 1."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 and ("norm" in name or "ln_" in name):
                if name.endswith("weight"):
                    p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
                else:
                    p.copy_(0.2 * torch.randn(p.shape, generator=g))
            elif p.dim() == 1:  # linear biases
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
            elif "wte" in name or "embed_in" in name or "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=g))
            elif "wpe" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            else:
                # nn.Linear stores [out, in]; GPT-2's Conv1D stores [in, out].
                fan_in = p.shape[0] if ".c_" in name else p.shape[1]
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(fan_in))


def mosaicml_alibi_bias(n_heads, seq_len, alibi_bias_max):
    """The ALiBi bias of MosaicML's llm-foundry (llmfoundry/models/layers/attention.py: gen_slopes and
    build_alibi_bias with full=False; the mosaicml/mpt-* hub repos' attention.py is the same):
    slopes 1 / 2^(m * alibi_bias_max / n2) for m = 1..n2, n2 the power of two >= n_heads (odd-indexed
    then even-indexed ones, first n_heads, when n_heads is not a power of two), times the key
    offsets 1 - seq_len .. 0. Written out here to check that transformers' build_mpt_alibi_tensor,
    given alibi_bias_max, computes exactly this."""
    n2 = 2 ** math.ceil(math.log2(n_heads))
    m = torch.arange(1, n2 + 1, dtype=torch.float32) * (alibi_bias_max / n2)
    slopes = 1.0 / torch.pow(2, m)
    if n2 != n_heads:
        slopes = torch.cat([slopes[1::2], slopes[::2]])[:n_heads]
    offsets = torch.arange(1 - seq_len, 1, dtype=torch.int32).view(1, 1, 1, seq_len)
    return (offsets * slopes.view(1, n_heads, 1, 1)).squeeze(0)


def mosaicml_ffn_hidden_size(d_model, expansion_ratio):
    """llm-foundry's resolve_ffn_hidden_size (llmfoundry/models/layers/ffn.py) without ffn_hidden_size:
    int(d_model * expansion_ratio), which must be an integer."""
    d_ff = int(d_model * expansion_ratio)
    assert d_ff == d_model * expansion_ratio, (d_model, expansion_ratio)
    return d_ff


@contextlib.contextmanager
def mosaicml_mpt():
    """transformers' MptForCausalLM (4.46.3) as MosaicML's own MPT code computes it. transformers
    differs in two fields that MosaicML's code honours:
      - attn_config.alibi_bias_max: MptModel calls build_mpt_alibi_tensor(num_heads, max_seq_len)
        without it, so the slopes always use 8; MosaicML's MPTModel passes the config's value.
      - expansion_ratio: MptMLP always makes 4 * d_model units; MosaicML's MPTMLP makes
        d_model * expansion_ratio.
    Within this context both follow the config."""
    model_bias, mlp_init = modeling_mpt.MptModel.build_mpt_alibi_tensor, modeling_mpt.MptMLP.__init__
    for n_heads, bias_max in ((4, 8), (6, 8), (6, 5), (8, 3.5), (12, 16)):
        assert torch.equal(modeling_mpt.build_mpt_alibi_tensor(n_heads, 40, bias_max),
                           mosaicml_alibi_bias(n_heads, 40, bias_max)), (n_heads, bias_max)

    def build_bias(self, num_heads, sequence_length, alibi_bias_max=8, device=None):
        return modeling_mpt.build_mpt_alibi_tensor(num_heads, sequence_length,
                                                   self.config.attn_config.alibi_bias_max, device)

    def init_mlp(self, config):
        mlp_init(self, config)
        d_ff = mosaicml_ffn_hidden_size(config.hidden_size, config.expansion_ratio)
        self.up_proj = nn.Linear(config.hidden_size, d_ff, bias=False)
        self.down_proj = nn.Linear(d_ff, config.hidden_size, bias=False)

    modeling_mpt.MptModel.build_mpt_alibi_tensor, modeling_mpt.MptMLP.__init__ = build_bias, init_mlp
    try:
        yield
    finally:
        modeling_mpt.MptModel.build_mpt_alibi_tensor, modeling_mpt.MptMLP.__init__ = model_bias, mlp_init


def model_cases(vocab, seed):
    g = torch.Generator().manual_seed(seed)
    cases = {}
    for n in (1, 7, 256):
        cases[f"len{n}"] = (torch.randint(0, vocab, (n,), generator=g), None)
    docs = [97, 1, 62]  # three documents, one of a single token
    ids = torch.randint(0, vocab, (sum(docs),), generator=g)
    doc_ids = torch.cat([torch.full((n,), i) for i, n in enumerate(docs)])
    cases["packed"] = (ids, doc_ids)
    return cases


def reference_logits(path, ids, doc_ids):
    def run(x):
        m = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32, attn_implementation="eager")
        m.eval()
        with torch.no_grad():
            return m(x[None, :]).logits[0].float()

    if doc_ids is None:
        return run(ids)
    out = []
    for d in torch.unique(doc_ids):
        out.append(run(ids[doc_ids == d]))
    return torch.cat(out, 0)


SELECTED = set(sys.argv[1:])


def build(name, config, seed, dtype=torch.float32, max_shard_size=None, context=contextlib.nullcontext):
    if SELECTED and name not in SELECTED:
        return
    with context():
        build_in_context(name, config, seed, dtype, max_shard_size)


def build_in_context(name, config, seed, dtype, max_shard_size):
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    randomize(model, seed)
    model = model.to(dtype)
    path = os.path.join(ROOT, name)
    if os.path.exists(path):
        shutil.rmtree(path)
    kw = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(path, safe_serialization=True, **kw)
    tensors = {}
    for case, (ids, doc_ids) in model_cases(config.vocab_size, seed + 1).items():
        tensors[f"{case}.ids"] = ids.to(torch.int32).contiguous()
        if doc_ids is not None:
            tensors[f"{case}.doc_ids"] = doc_ids.to(torch.int32).contiguous()
        tensors[f"{case}.logits"] = reference_logits(path, ids, doc_ids).contiguous()
    os.makedirs(os.path.join(path, "reference"), exist_ok=True)
    save_file(tensors, os.path.join(path, "reference", "cases.safetensors"),
              metadata={"torch": torch.__version__, "transformers": transformers.__version__})
    size = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(path) for f in fs)
    print(f"{name:24s} {sum(p.numel() for p in model.parameters()):8d} params  {size / 1024:7.1f} KiB")


def main():
    os.makedirs(ROOT, exist_ok=True)
    # --- Llama family -------------------------------------------------------------------------
    # Grouped-query attention (4 query heads share 2 KV heads), untied head, fp32.
    build("llama_gqa", LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                                   rms_norm_eps=1e-5, rope_theta=10000.0), seed=1)
    # Multi-query attention, explicit head_dim != hidden/heads, attention and MLP biases, tied
    # embeddings, linear RoPE scaling; saved in bf16.
    build("llama_bias_tied_bf16",
          LlamaConfig(vocab_size=112, hidden_size=48, intermediate_size=80, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=1, head_dim=16, max_position_embeddings=128, rms_norm_eps=1e-6,
                      rope_theta=500.0, rope_scaling={"rope_type": "linear", "factor": 2.0}, attention_bias=True,
                      mlp_bias=True, tie_word_embeddings=True), seed=2, dtype=torch.bfloat16)
    # Qwen2: q/k/v biases (no o bias), GQA, dynamic NTK RoPE (max_position_embeddings 64 < 97 and
    # 256, so it scales the long cases but not the short ones); sharded.
    build("qwen2_dynamic_sharded",
          Qwen2Config(vocab_size=120, hidden_size=64, intermediate_size=112, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=64, rope_theta=1000000.0,
                      rope_scaling={"type": "dynamic", "factor": 3.0}, rms_norm_eps=1e-6), seed=3,
          max_shard_size="60KB")
    # Mistral: sliding-window attention (window 32 < 256), GQA; saved in fp16.
    build("mistral_swa_fp16",
          MistralConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                        sliding_window=32, rope_theta=10000.0, rms_norm_eps=1e-5), seed=4, dtype=torch.float16)
    # Llama 3.1-style RoPE frequencies.
    build("llama3_rope",
          LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=2, max_position_embeddings=512, rope_theta=50000.0,
                      rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                    "high_freq_factor": 4.0, "original_max_position_embeddings": 64}),
          seed=5)
    # --- MPT ------------------------------------------------------------------------------------
    # ALiBi with 4 heads (a power of two), tied head, fp32.
    build("mpt_alibi", MptConfig(vocab_size=128, d_model=64, n_heads=4, n_layers=2, expansion_ratio=4,
                                 max_seq_len=512, layer_norm_epsilon=1e-5), seed=6)
    # 6 heads (ALiBi slopes interleaved for a non-power of two), clip_qkv, explicit softmax_scale,
    # untied head; saved in fp16.
    build("mpt_clip_untied_fp16",
          MptConfig(vocab_size=100, d_model=48, n_heads=6, n_layers=2, expansion_ratio=4, max_seq_len=300,
                    layer_norm_epsilon=1e-6, tie_word_embeddings=False,
                    attn_config={"clip_qkv": 1.5, "softmax_scale": 0.3, "alibi": True, "alibi_bias_max": 8}),
          seed=7, dtype=torch.float16)
    # MosaicML's MPT where transformers' port differs: alibi_bias_max 5 (transformers always uses 8)
    # with 6 heads (interleaved slopes), expansion_ratio 2.5 (d_ff 120; transformers always uses
    # 4 * d_model). max_seq_len 300 > 256, the longest case.
    build("mpt_mosaicml_bias5_ffn120",
          MptConfig(vocab_size=96, d_model=48, n_heads=6, n_layers=2, expansion_ratio=2.5, max_seq_len=300,
                    layer_norm_epsilon=1e-5, attn_config={"alibi": True, "alibi_bias_max": 5}),
          seed=12, context=mosaicml_mpt)
    # 8 heads (a power of two), alibi_bias_max 12 (steeper slopes than 8), expansion_ratio 3, clip_qkv.
    build("mpt_mosaicml_bias12_ratio3",
          MptConfig(vocab_size=80, d_model=32, n_heads=8, n_layers=2, expansion_ratio=3, max_seq_len=256,
                    layer_norm_epsilon=1e-5, attn_config={"alibi": True, "alibi_bias_max": 12, "clip_qkv": 2.0}),
          seed=13, context=mosaicml_mpt)
    # --- GPT-NeoX -------------------------------------------------------------------------------
    # Pythia-style: parallel residual, rotary_pct 0.25, exact GELU, attention biases.
    build("neox_parallel", GPTNeoXConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                         num_attention_heads=4, rotary_pct=0.25, rotary_emb_base=10000,
                                         max_position_embeddings=512, use_parallel_residual=True,
                                         hidden_act="gelu", layer_norm_eps=1e-5, attention_bias=True), seed=8)
    # Sequential residual, rotary_pct 0.5, tanh GELU, no attention bias, linear RoPE scaling, tied
    # embeddings; saved in bf16.
    build("neox_sequential_bf16",
          GPTNeoXConfig(vocab_size=112, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                        num_attention_heads=4, rotary_pct=0.5, rotary_emb_base=1000, max_position_embeddings=512,
                        use_parallel_residual=False, hidden_act="gelu_new", layer_norm_eps=1e-6,
                        attention_bias=False, rope_scaling={"type": "linear", "factor": 2.0},
                        tie_word_embeddings=True),
          seed=9, dtype=torch.bfloat16)
    # Dynamic NTK RoPE on a partial rotary (rotary_pct 0.5: 8 of 16 dims), max_position_embeddings
    # 64 < 97 and 256, so the long cases are scaled with the exponent dim / (dim - 2) of the rotary
    # dims.
    build("neox_dynamic",
          GPTNeoXConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=4, rotary_pct=0.5, rotary_emb_base=10000, max_position_embeddings=64,
                        use_parallel_residual=True, hidden_act="gelu", layer_norm_eps=1e-5,
                        rope_scaling={"type": "dynamic", "factor": 2.0}),
          seed=14)
    # --- GPT-2 ----------------------------------------------------------------------------------
    # Learned positions, Conv1D weights, tied head, gelu_new.
    build("gpt2_tied", GPT2Config(vocab_size=128, n_embd=64, n_layer=2, n_head=4, n_positions=300), seed=10)
    # n_inner, scale_attn_by_inverse_layer_idx, exact GELU; sharded in fp16.
    build("gpt2_inner_fp16_sharded",
          GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=2, n_positions=260, n_inner=80,
                     activation_function="gelu", scale_attn_by_inverse_layer_idx=True, layer_norm_epsilon=1e-6),
          seed=11, dtype=torch.float16, max_shard_size="20KB")
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(ROOT) for f in fs)
    print(f"total {total / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
