#!/usr/bin/env python3
"""Writes tests/fixtures/safetensors/reference.safetensors with the real writer
(safetensors.torch.save_file) and reference.json with torch's own fp32 conversion of every tensor,
as uint32 bit patterns (exact, and JSON has no inf/nan). test_safetensors.cpp reads both: this
proves fusellm reads what the Hugging Face stack writes, bit for bit.

Run from the repository root with the pinned stack (tests/reference/requirements.txt):
    python3 tests/reference/gen_safetensors.py
"""
import json
import pathlib

import torch
from safetensors.torch import save_file

OUT = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "safetensors"


def main() -> None:
    g = torch.Generator().manual_seed(0)
    special = torch.tensor(
        [0.0, -0.0, 1.0, -2.5, 65504.0, -65504.0, float("inf"), float("-inf"),
         2.0**-24, -(2.0**-24), 3 * 2.0**-20, 2.0**-14, 1e-40, 3.0e38, 0.1, 1 / 3],
        dtype=torch.float32)
    tensors = {
        "model.embed_tokens.weight": torch.randn(8, 6, generator=g, dtype=torch.float32),
        "model.layers.0.self_attn.q_proj.weight": torch.randn(6, 6, generator=g).to(torch.bfloat16),
        "model.layers.0.mlp.up_proj.weight": torch.randn(4, 6, generator=g).to(torch.float16),
        # Subnormals, signed zeros, the half range edges and infinities, in every float dtype.
        "special.f32": special.clone(),
        "special.f16": special.to(torch.float16),
        "special.bf16": special.to(torch.bfloat16),
        "special.f64": special.to(torch.float64),
        "scalar": torch.tensor(4.5, dtype=torch.float32),
        "empty": torch.zeros(0, 3, dtype=torch.float16),
        "position_ids": torch.arange(5, dtype=torch.int64),
    }
    metadata = {"format": "pt", "generator": "tests/reference/gen_safetensors.py"}
    OUT.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(OUT / "reference.safetensors"), metadata=metadata)

    dtype_names = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
                   torch.float64: "F64", torch.int64: "I64"}
    expected = {"metadata": metadata, "tensors": {}}
    for name, t in tensors.items():
        entry = {"dtype": dtype_names[t.dtype], "shape": list(t.shape)}
        if t.is_floating_point():
            bits = t.float().reshape(-1).view(torch.int32).tolist()
            entry["f32_bits"] = [b & 0xFFFFFFFF for b in bits]
        expected["tensors"][name] = entry
    (OUT / "reference.json").write_text(json.dumps(expected, indent=1) + "\n")


if __name__ == "__main__":
    main()
