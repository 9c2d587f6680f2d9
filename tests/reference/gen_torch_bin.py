#!/usr/bin/env python3
"""PyTorch zip checkpoints (pytorch_model.bin), for the torch zip reader (src/fusellm/io/torch_zip.cpp).

Writes tests/fixtures/torch_bin/:
  llama_<dtype>/safetensors/   config.json + model.safetensors            (save_pretrained, safe_serialization=True)
  llama_<dtype>/bin/           config.json + pytorch_model.bin            (safe_serialization=False)
  llama_<dtype>/bin_sharded/   config.json + pytorch_model-0000N-of-0000M.bin + pytorch_model.bin.index.json
  llama_<dtype>/reference/cases.safetensors   ids and transformers' fp32 logits (as gen_models.py)
for <dtype> in f32, f16, bf16: one random tiny Llama, the same weights in all three folders.
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
import os
import shutil
import struct
import sys
import zipfile

import torch
import transformers
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, LlamaConfig

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
    bad_files()
    if sys.argv[1:] != ["bad"]:
        seeds()
    for dp, _, fs in sorted(os.walk(ROOT)):
        print(f"{os.path.relpath(dp, ROOT):28s} {sum(os.path.getsize(os.path.join(dp, f)) for f in fs) / 1024:7.1f} KiB")


if __name__ == "__main__":
    main()
