#!/usr/bin/env python3
"""Gradients of the FuseLLM objective on tiny models of every trainable family (Llama, Qwen2,
GPT-NeoX, MPT, GPT-2), by PyTorch autograd, for the C++ backward pass
(tests/unit/model/test_backward.cpp).

Writes tests/fixtures/grads/<name>/ (config.json + model.safetensors as `save_pretrained` writes
them) and tests/fixtures/grads/<name>/grads.safetensors holding, per case:
  <case>.ids          int32 [T]
  <case>.doc_ids      int32 [T]        document of each token (all 0 unless packed)
  <case>.gold         int32 [T]        next-token target, -1 where ignored
  <case>.target_ids   int32 [T, K]     sparse fused distribution: ids ...
  <case>.target_probs fp32  [T, K]     ... and probabilities (rows sum to 1)
  <case>.lambda       fp32  [1]
  <case>.loss         fp32  [1]
  <case>.grad.<HF parameter name>  fp32, shaped as the parameter
Cases: clm (lambda = 1), fusion (lambda = 0), mix (lambda = 0.9), packed (mix, three documents),
long (mix, 160 tokens in two documents: several query blocks of the C++ attention).

The objective (paper eq. 5, the fused classifier's formula), averaged over positions with gold >= 0:
  L = mean_t [ lambda * -log q_t(gold_t) + (1 - lambda) * -sum_k p_tk log q_t(id_tk) ]
Packed sequences: each document runs through the model on its own (positions from 0, attention
within the document: what the C++ doc_ids forward computes), the logits are concatenated and the
loss taken over the whole sequence.

Run from the repository root:  python3 tests/reference/gen_grads.py [NAME ...]
(no NAME: every fixture; else only those named, e.g. to add one without rewriting the others).
"""
import os
import shutil
import sys

import torch
import transformers
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, GPT2Config, GPTNeoXConfig, LlamaConfig, MptConfig, Qwen2Config

assert torch.__version__.split("+")[0] == "2.5.1", torch.__version__
assert transformers.__version__ == "4.46.3", transformers.__version__
transformers.utils.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_models import randomize  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "grads")
T = 24  # tokens of the short cases
K = 4


def make_case(vocab, seed, lam, docs):
    T = sum(docs)
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (T,), generator=g)
    doc_ids = torch.zeros(T, dtype=torch.long)
    start = 0
    for d, n in enumerate(docs):
        doc_ids[start:start + n] = d
        start += n
    gold = torch.full((T,), -1, dtype=torch.long)
    for t in range(T - 1):
        if doc_ids[t + 1] == doc_ids[t]:
            gold[t] = ids[t + 1]
    # a few more ignored positions (padding-like)
    for t in torch.randperm(T, generator=g)[:3].tolist():
        gold[t] = -1
    # sparse targets: K distinct ids per row, probabilities a softmax of random logits
    tid = torch.stack([torch.randperm(vocab, generator=g)[:K] for _ in range(T)])
    tp = torch.softmax(2.0 * torch.randn(T, K, generator=g), dim=-1)
    return dict(ids=ids, doc_ids=doc_ids, gold=gold, target_ids=tid, target_probs=tp, lam=lam)


def loss_of(model, c):
    ids, doc_ids = c["ids"], c["doc_ids"]
    parts = []
    for d in torch.unique(doc_ids).tolist():
        sel = ids[doc_ids == d]
        parts.append(model(input_ids=sel[None]).logits[0])
    logits = torch.cat(parts, dim=0).float()
    logp = torch.log_softmax(logits, dim=-1)
    valid = c["gold"] >= 0
    clm = -logp.gather(1, c["gold"].clamp(min=0)[:, None])[:, 0]
    fus = -(c["target_probs"] * logp.gather(1, c["target_ids"])).sum(-1)
    lam = c["lam"]
    per = lam * clm + (1.0 - lam) * fus
    return (per * valid).sum() / valid.sum()


def build(name, config, seed):
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    randomize(model, seed)
    if config.tie_word_embeddings:  # unit-variance embeddings as the head saturate the softmax
        with torch.no_grad():
            model.get_input_embeddings().weight.mul_(0.3)
    path = os.path.join(ROOT, name)
    shutil.rmtree(path, ignore_errors=True)
    model.save_pretrained(path, safe_serialization=True)
    model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32, attn_implementation="eager")
    model.train(False)
    out = {}
    cases = {
        "clm": make_case(config.vocab_size, seed + 1, 1.0, [T]),
        "fusion": make_case(config.vocab_size, seed + 2, 0.0, [T]),
        "mix": make_case(config.vocab_size, seed + 3, 0.9, [T]),
        "packed": make_case(config.vocab_size, seed + 4, 0.9, [9, 5, 10]),
        # longer than one 64-query block of the C++ attention, a document boundary inside a block
        "long": make_case(config.vocab_size, seed + 5, 0.9, [70, 90]),
    }
    for cname, c in cases.items():
        model.zero_grad(set_to_none=True)
        loss = loss_of(model, c)
        loss.backward()
        out[f"{cname}.ids"] = c["ids"].to(torch.int32)
        out[f"{cname}.doc_ids"] = c["doc_ids"].to(torch.int32)
        out[f"{cname}.gold"] = c["gold"].to(torch.int32)
        out[f"{cname}.target_ids"] = c["target_ids"].to(torch.int32).contiguous()
        out[f"{cname}.target_probs"] = c["target_probs"].float().contiguous()
        out[f"{cname}.lambda"] = torch.tensor([c["lam"]], dtype=torch.float32)
        out[f"{cname}.loss"] = loss.detach().float().reshape(1)
        seen = set()
        for pname, p in model.named_parameters():  # tied weights appear once
            if id(p) in seen:
                continue
            seen.add(id(p))
            out[f"{cname}.grad.{pname}"] = p.grad.detach().float().contiguous()
        print(f"{name}/{cname}: loss {loss.item():.6f}")
    save_file(out, os.path.join(path, "grads.safetensors"))


def fixtures():
    """name -> (config, seed) of every fixture."""
    common = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, max_position_embeddings=128)
    neox = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=128)
    return {
        "llama_gqa": (LlamaConfig(num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5,
                                  tie_word_embeddings=False, **common), 100),
        "llama_tied_mqa": (LlamaConfig(num_attention_heads=4, num_key_value_heads=1, rms_norm_eps=1e-6,
                                       rope_theta=500.0, tie_word_embeddings=True, **common), 200),
        "qwen2_bias": (Qwen2Config(num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6,
                                   tie_word_embeddings=False, use_sliding_window=False, **common), 300),
        # Pythia-style: parallel residual, rotary_pct 0.25 (2 of 8 dims rotate), exact GELU, biases.
        "neox_parallel": (GPTNeoXConfig(rotary_pct=0.25, rotary_emb_base=10000, use_parallel_residual=True,
                                        hidden_act="gelu", layer_norm_eps=1e-5, attention_bias=True,
                                        tie_word_embeddings=False, **neox), 400),
        # Sequential residual, rotary_pct 0.5, tanh GELU, no attention biases.
        "neox_sequential": (GPTNeoXConfig(rotary_pct=0.5, rotary_emb_base=1000, use_parallel_residual=False,
                                          hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6, attention_bias=False,
                                          tie_word_embeddings=False, **neox), 500),
        # ALiBi, LayerNorm without bias (no_bias), exact GELU, no biases, tied head.
        "mpt_alibi": (MptConfig(vocab_size=64, d_model=32, n_heads=4, n_layers=2, expansion_ratio=4, max_seq_len=128,
                                layer_norm_epsilon=1e-5, no_bias=True, learned_pos_emb=False,
                                attn_config={"alibi": True, "alibi_bias_max": 8}), 600),
        # clip_qkv 1.5 (q/k/v ~ N(0, 1) here: a seventh of them clipped), 6 heads (interleaved
        # slopes), untied head.
        "mpt_clip": (MptConfig(vocab_size=64, d_model=24, n_heads=6, n_layers=2, expansion_ratio=4, max_seq_len=128,
                               layer_norm_epsilon=1e-5, no_bias=True, learned_pos_emb=False, tie_word_embeddings=False,
                               attn_config={"alibi": True, "alibi_bias_max": 8, "clip_qkv": 1.5}), 700),
        # Learned positions (wpe), Conv1D weights, tied head, gelu_new, biases everywhere, the
        # attention scale divided by the layer number.
        "gpt2_tied": (GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=4, n_positions=128, n_inner=48,
                                 activation_function="gelu_new", scale_attn_by_inverse_layer_idx=True,
                                 layer_norm_epsilon=1e-5), 800),
    }


def main():
    every = fixtures()
    names = sys.argv[1:] or list(every)
    for name in names:
        if name not in every:
            sys.exit(f"unknown fixture {name} (known: {', '.join(every)})")
        config, seed = every[name]
        build(name, config, seed)


if __name__ == "__main__":
    main()
