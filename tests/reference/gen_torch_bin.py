#!/usr/bin/env python3
"""PyTorch zip checkpoints (pytorch_model.bin), for the torch zip reader (src/fusellm/io/torch_zip.cpp).

Writes tests/fixtures/torch_bin/:
  llama_<dtype>/safetensors/   config.json + model.safetensors            (save_pretrained, safe_serialization=True)
  llama_<dtype>/bin/           config.json + pytorch_model.bin            (safe_serialization=False)
  llama_<dtype>/bin_sharded/   config.json + pytorch_model-0000N-of-0000M.bin + pytorch_model.bin.index.json
  llama_<dtype>/reference/cases.safetensors   ids and transformers' fp32 logits (as gen_models.py)
for <dtype> in f32, f16, bf16: one random tiny Llama, the same weights in all three folders.
  <family>_<dtype>/{safetensors,bin,bin_sharded,reference}: the same for the published models of the
    paper and of Pythia, each with a config.json of the PUBLISHED structure and field values (only the
    sizes made tiny; see PUBLISHED below): llama2_7b, open_llama_7b_v2, mpt_7b, pythia. The weights
    are saved by transformers (save_pretrained), then config.json is replaced by the published
    dict, and the reference logits are transformers' (AutoModelForCausalLM.from_pretrained) on that
    directory, so transformers reads the published config too. generation_config.json is kept.
    The .bin files of open_llama_7b_v2 and pythia also carry the buffers that checkpoints saved
    by older transformers hold and that 4.46 ignores (rotary_emb.inv_freq; GPT-NeoX's attention.bias
    causal mask (bool) and attention.masked_bias): a loader must skip them.
  mpt_7b_logit_scale/{safetensors,reference}: mpt_7b_f32's weights with logit_scale
    "inv_sqrt_d_model"; reference: transformers' logits times 1/sqrt(d_model), as MosaicML's
    MPTForCausalLM.forward scales them (transformers' MptForCausalLM ignores logit_scale).
  bad/*.bin: files the reader must refuse, each made by hand here and never loaded:
    os_system.bin       data.pkl calls GLOBAL posix.system (what `os.system` pickles to)
    builtins_eval.bin   data.pkl calls GLOBAL builtins.eval
    entry_out_of_bounds.bin  the central directory gives data/0 a size running past the archive
    short_storage.bin   data/0 holds fewer bytes than the tensor needs
    truncated.bin       a valid checkpoint cut in half
    legacy.bin          torch.save(..., _use_new_zipfile_serialization=False) (the pre-1.6 format)
    transposed.bin      a non-contiguous tensor (a transposed view saved as it is)
  bad/good.bin (the files above are made from it), bad/shared.bin and bad/deflated.bin, which must
    read: views of one storage at offsets 0 and 2 (torch.save keeps views; tied weights are saved
    this way); good.bin rewritten with DEFLATE entries (valid zip, not what torch writes).
  tests/fuzz/corpus/fuzz_torch_pickle/: the data.pkl of llama_f32/bin and of the shards (seeds).

Run from the repository root:  python3 tests/reference/gen_torch_bin.py [bad]
(bad: only the bad/ files; the rest stays as committed).
"""
import io
import json
import math
import os
import shutil
import struct
import sys
import zipfile

import torch
import transformers
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, GPTNeoXConfig, LlamaConfig, MptConfig

import gen_models

assert torch.__version__.split("+")[0] == "2.5.1", torch.__version__
assert transformers.__version__ == "4.46.3", transformers.__version__

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "fixtures", "torch_bin")
CORPUS = os.path.join(HERE, "..", "fuzz", "corpus", "fuzz_torch_pickle")
DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


def config():
    return LlamaConfig(vocab_size=48, hidden_size=16, intermediate_size=24, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5, rope_theta=10000.0,
                       tie_word_embeddings=False)


def build(tag, dtype):
    torch.manual_seed(7)
    model = AutoModelForCausalLM.from_config(config(), attn_implementation="eager")
    gen_models.randomize(model, 7)
    model = model.to(dtype)
    base = os.path.join(ROOT, f"llama_{tag}")
    shutil.rmtree(base, ignore_errors=True)
    model.save_pretrained(os.path.join(base, "safetensors"), safe_serialization=True)
    model.save_pretrained(os.path.join(base, "bin"), safe_serialization=False)
    model.save_pretrained(os.path.join(base, "bin_sharded"), safe_serialization=False, max_shard_size="4KB")
    tensors = {}
    for case in ("len1", "len7"):
        ids, _ = gen_models.model_cases(48, 8)[case]
        tensors[f"{case}.ids"] = ids.to(torch.int32).contiguous()
        tensors[f"{case}.logits"] = gen_models.reference_logits(os.path.join(base, "safetensors"), ids, None).contiguous()
    os.makedirs(os.path.join(base, "reference"))
    save_file(tensors, os.path.join(base, "reference", "cases.safetensors"),
              metadata={"torch": torch.__version__, "transformers": transformers.__version__})
    for d in ("safetensors", "bin", "bin_sharded"):
        gen = os.path.join(base, d, "generation_config.json")
        if os.path.exists(gen):
            os.remove(gen)


# The published config.json files, reconstructed (they cannot be downloaded here) from the hub
# repositories as of 2023-2024 and from transformers 4.46.3's config classes. Sizes are replaced
# by TINY; every other field and value is the published one, except torch_dtype, set to the
# dtype the fixture's weights are saved in.
#   meta-llama/Llama-2-7b-hf config.json (LlamaConfig fields as written by transformers 4.31/4.32:
#     pretraining_tp and rope_scaling null are in it, head_dim / attention_bias / mlp_bias are not).
#   openlm-research/open_llama_7b_v2 config.json (written by 4.31.0.dev0: no num_key_value_heads,
#     no rope_theta, pad_token_id 0, rms_norm_eps 1e-6).
#   mosaicml/mpt-7b config.json: MosaicML's own MPTConfig (configuration_mpt.py of the hub repo,
#     trust_remote_code layout): attn_config with all ten keys, init_config, auto_map,
#     tokenizer_name, learned_pos_emb true beside alibi true (MosaicML's MPTModel builds no wpe
#     when alibi is on), logit_scale null, no_bias, norm_type low_precision_layernorm.
#   EleutherAI/pythia-160m config.json (GPTNeoXConfig as written by transformers 4.24.0: no
#     attention_bias / rope_scaling / dropout fields; rotary_pct 0.25, rotary_emb_base 10000).
TINY = {"vocab": 32, "hidden": 16, "heads": 2, "layers": 2, "intermediate": 24, "positions": 32}
T = TINY
PUBLISHED = {
    "llama2_7b": {
        "_name_or_path": "meta-llama/Llama-2-7b-hf", "architectures": ["LlamaForCausalLM"], "bos_token_id": 1,
        "eos_token_id": 2, "hidden_act": "silu", "hidden_size": T["hidden"], "initializer_range": 0.02,
        "intermediate_size": T["intermediate"], "max_position_embeddings": T["positions"], "model_type": "llama",
        "num_attention_heads": T["heads"], "num_hidden_layers": T["layers"], "num_key_value_heads": T["heads"],
        "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": None, "tie_word_embeddings": False,
        "torch_dtype": "float16", "transformers_version": "4.32.0.dev0", "use_cache": True,
        "vocab_size": T["vocab"]},
    "open_llama_7b_v2": {
        "architectures": ["LlamaForCausalLM"], "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
        "hidden_size": T["hidden"], "initializer_range": 0.02, "intermediate_size": T["intermediate"],
        "max_position_embeddings": T["positions"], "model_type": "llama", "num_attention_heads": T["heads"],
        "num_hidden_layers": T["layers"], "pad_token_id": 0, "rms_norm_eps": 1e-06, "tie_word_embeddings": False,
        "torch_dtype": "float16", "transformers_version": "4.31.0.dev0", "use_cache": True,
        "vocab_size": T["vocab"]},
    "mpt_7b": {
        "architectures": ["MPTForCausalLM"],
        "attn_config": {"alibi": True, "alibi_bias_max": 8, "attn_impl": "torch", "attn_pdrop": 0,
                        "attn_type": "multihead_attention", "attn_uses_sequence_id": False, "clip_qkv": None,
                        "prefix_lm": False, "qk_ln": False, "softmax_scale": None},
        "auto_map": {"AutoConfig": "configuration_mpt.MPTConfig",
                     "AutoModelForCausalLM": "modeling_mpt.MPTForCausalLM"},
        "d_model": T["hidden"], "emb_pdrop": 0, "embedding_fraction": 1.0, "expansion_ratio": 4,
        "init_config": {"emb_init_std": None, "emb_init_uniform_lim": None, "fan_mode": "fan_in",
                        "init_div_is_residual": True, "init_gain": 0, "init_nonlinearity": "relu",
                        "init_std": 0.02, "name": "kaiming_normal_", "verbose": 0},
        "init_device": "cpu", "learned_pos_emb": True, "logit_scale": None, "max_seq_len": T["positions"],
        "model_type": "mpt", "n_heads": T["heads"], "n_layers": T["layers"], "no_bias": True,
        "norm_type": "low_precision_layernorm", "resid_pdrop": 0, "tokenizer_name": "EleutherAI/gpt-neox-20b",
        "torch_dtype": "bfloat16", "transformers_version": "4.28.1", "use_cache": False, "verbose": 0,
        "vocab_size": T["vocab"]},
    "pythia": {
        "architectures": ["GPTNeoXForCausalLM"], "bos_token_id": 0, "eos_token_id": 0, "hidden_act": "gelu",
        "hidden_size": T["hidden"], "initializer_range": 0.02, "intermediate_size": 4 * T["hidden"],
        "layer_norm_eps": 1e-05, "max_position_embeddings": T["positions"], "model_type": "gpt_neox",
        "num_attention_heads": T["heads"], "num_hidden_layers": T["layers"], "rotary_emb_base": 10000,
        "rotary_pct": 0.25, "tie_word_embeddings": False, "torch_dtype": "float16",
        "transformers_version": "4.24.0", "use_cache": True, "use_parallel_residual": True,
        "vocab_size": T["vocab"]},
}
# transformers' config class of each (MPT: MptConfig, which reads MosaicML's attn_config keys through
# MptAttentionConfig and keeps the unknown ones, init_config, auto_map, tokenizer_name, as attributes).
CONFIG_CLASS = {"llama2_7b": LlamaConfig, "open_llama_7b_v2": LlamaConfig, "mpt_7b": MptConfig,
                "pythia": GPTNeoXConfig}
TORCH_DTYPE = {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}


def legacy_buffers(family, model, dtype):
    """Buffers that checkpoints saved by older transformers carry and 4.46 no longer has (its
    from_pretrained drops them as unexpected keys): LlamaRotaryEmbedding.inv_freq (persistent before
    4.31); GPTNeoXAttention's bias (causal mask, bool), masked_bias and rotary_emb.inv_freq (4.24)."""
    c = model.config
    out = {}
    for i in range(c.num_hidden_layers):
        if family == "open_llama_7b_v2":
            d = c.hidden_size // c.num_attention_heads
            out[f"model.layers.{i}.self_attn.rotary_emb.inv_freq"] = 1.0 / (10000 ** (torch.arange(0, d, 2).float() / d))
        elif family == "pythia":
            n = c.max_position_embeddings
            rot = int(c.hidden_size // c.num_attention_heads * c.rotary_pct)
            out[f"gpt_neox.layers.{i}.attention.bias"] = torch.tril(torch.ones(n, n, dtype=torch.bool)).view(1, 1, n, n)
            out[f"gpt_neox.layers.{i}.attention.masked_bias"] = torch.tensor(-1e9).to(dtype)
            out[f"gpt_neox.layers.{i}.attention.rotary_emb.inv_freq"] = 1.0 / (10000 ** (torch.arange(0, rot, 2).float() / rot))
    return out


def write_published(path, published):
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(published, f, indent=2, sort_keys=True)
        f.write("\n")


def build_published(family, tag, dtype, seed):
    published = dict(PUBLISHED[family], torch_dtype=TORCH_DTYPE[tag])
    fields = {k: v for k, v in published.items() if k not in ("architectures", "transformers_version", "torch_dtype")}
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(CONFIG_CLASS[family](**fields), attn_implementation="eager")
    gen_models.randomize(model, seed)
    model = model.to(dtype)
    base = os.path.join(ROOT, f"{family}_{tag}")
    shutil.rmtree(base, ignore_errors=True)
    state = dict(model.state_dict(), **legacy_buffers(family, model, dtype))
    model.save_pretrained(os.path.join(base, "safetensors"), safe_serialization=True)
    model.save_pretrained(os.path.join(base, "bin"), safe_serialization=False, state_dict=state)
    model.save_pretrained(os.path.join(base, "bin_sharded"), safe_serialization=False, state_dict=state,
                          max_shard_size="6KB")
    for d in ("safetensors", "bin", "bin_sharded"):
        write_published(os.path.join(base, d), published)
    write_cases(base, os.path.join(base, "safetensors"), 1.0)
    if family == "mpt_7b" and tag == "f32":
        # logit_scale "inv_sqrt_d_model": MosaicML's MPTForCausalLM.__init__ turns it into
        # 1 / sqrt(d_model) and forward multiplies the logits by it; transformers ignores it.
        scaled = os.path.join(ROOT, "mpt_7b_logit_scale")
        shutil.rmtree(scaled, ignore_errors=True)
        model.save_pretrained(os.path.join(scaled, "safetensors"), safe_serialization=True)
        write_published(os.path.join(scaled, "safetensors"), dict(published, logit_scale="inv_sqrt_d_model"))
        write_cases(scaled, os.path.join(scaled, "safetensors"), 1.0 / math.sqrt(published["d_model"]))


def write_cases(base, model_dir, logit_scale):
    tensors = {}
    for case in ("len1", "len7"):
        ids, _ = gen_models.model_cases(TINY["vocab"], 8)[case]
        tensors[f"{case}.ids"] = ids.to(torch.int32).contiguous()
        tensors[f"{case}.logits"] = (gen_models.reference_logits(model_dir, ids, None) * logit_scale).contiguous()
    os.makedirs(os.path.join(base, "reference"))
    save_file(tensors, os.path.join(base, "reference", "cases.safetensors"),
              metadata={"torch": torch.__version__, "transformers": transformers.__version__})


def entries(path):
    with zipfile.ZipFile(path) as z:
        return [(i.filename, z.read(i.filename)) for i in z.infolist()]


def write_zip(path, items, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression=compression) as z:
        for name, data in items:
            info = zipfile.ZipInfo(name)
            info.compress_type = compression
            z.writestr(info, data)


def small_checkpoint():
    buf = io.BytesIO()
    torch.save({"w": torch.arange(10, dtype=torch.float32)}, buf)
    return buf.getvalue()


def bad_files():
    bad = os.path.join(ROOT, "bad")
    shutil.rmtree(bad, ignore_errors=True)
    os.makedirs(bad)
    good = os.path.join(bad, "good.bin")
    with open(good, "wb") as f:
        f.write(small_checkpoint())
    items = entries(good)
    prefix = items[0][0].split("/")[0]
    # Protocol-2 pickles that would call a function if pickle.load ran them. Written as bytes: the
    # generator never unpickles them. posix.system is what pickle writes for os.system on Linux.
    for name, module, func in (("os_system", b"posix", b"system"), ("builtins_eval", b"builtins", b"eval")):
        pkl = (b"\x80\x02c" + module + b"\n" + func + b"\n" + b"X\x0a\x00\x00\x00echo pwned" + b"\x85R.")
        write_zip(os.path.join(bad, f"{name}.bin"),
                  [(n, pkl if n.endswith("/data.pkl") else d) for n, d in items])
    write_zip(os.path.join(bad, "deflated.bin"), items, zipfile.ZIP_DEFLATED)
    # A storage entry shorter than its tensor: data/0 keeps 16 of its 40 bytes.
    write_zip(os.path.join(bad, "short_storage.bin"),
              [(n, d[:16] if n == f"{prefix}/data/0" else d) for n, d in items])
    # The central directory record of data/0 claims a size past the end of the archive (local header
    # and central record agree, so only the bounds are wrong).
    raw = bytearray(open(good, "rb").read())
    target = f"{prefix}/data/0".encode()
    big = 1 << 30
    for sig, name_at, sizes_at in ((b"PK\x03\x04", 30, 18), (b"PK\x01\x02", 46, 20)):
        pos = 0
        while (pos := raw.find(sig, pos)) >= 0:
            n = struct.unpack_from("<H", raw, pos + (26 if sig == b"PK\x03\x04" else 28))[0]
            if bytes(raw[pos + name_at:pos + name_at + n]) == target:
                struct.pack_into("<II", raw, pos + sizes_at, big, big)
            pos += 4
    open(os.path.join(bad, "entry_out_of_bounds.bin"), "wb").write(raw)
    whole = open(good, "rb").read()
    open(os.path.join(bad, "truncated.bin"), "wb").write(whole[:len(whole) // 2])
    torch.save({"w": torch.arange(10, dtype=torch.float32)}, os.path.join(bad, "legacy.bin"),
               _use_new_zipfile_serialization=False)
    torch.save({"t": torch.arange(6, dtype=torch.float32).view(2, 3).t()}, os.path.join(bad, "transposed.bin"))
    w = torch.arange(10, dtype=torch.float32)
    torch.save({"w": w, "part": w[2:6], "matrix": w.view(2, 5)}, os.path.join(bad, "shared.bin"))


def seeds():
    shutil.rmtree(CORPUS, ignore_errors=True)
    os.makedirs(CORPUS)
    for d, f in (("bin", "pytorch_model.bin"), ("bin_sharded", "pytorch_model-00001-of-00003.bin")):
        path = os.path.join(ROOT, "llama_bf16", d, f)
        for n, data in entries(path):
            if n.endswith("/data.pkl"):
                open(os.path.join(CORPUS, f"{d}.pkl"), "wb").write(data)


def main():
    os.makedirs(ROOT, exist_ok=True)
    if sys.argv[1:] != ["bad"]:
        for tag, dtype in DTYPES.items():
            build(tag, dtype)
            for seed, family in enumerate(PUBLISHED, 20):
                build_published(family, tag, dtype, seed)
    bad_files()
    if sys.argv[1:] != ["bad"]:
        seeds()
    for dp, _, fs in sorted(os.walk(ROOT)):
        print(f"{os.path.relpath(dp, ROOT):28s} {sum(os.path.getsize(os.path.join(dp, f)) for f in fs) / 1024:7.1f} KiB")


if __name__ == "__main__":
    main()
