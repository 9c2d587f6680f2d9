#!/usr/bin/env python3
"""Checks a checkpoint exported by fusellm (`fusellm export`, or test_export_hf with
FUSELLM_EXPORT_DIR set) with transformers: AutoModelForCausalLM and AutoTokenizer load it, and
its logits on the ids in <dir>/fusellm_logits.safetensors equal fusellm's logits saved there
(max |diff| / max |ref| <= 1e-4). Exit status 1 on any mismatch.

  FUSELLM_EXPORT_DIR=/tmp/exp build/tests/test_export_hf
  python3 tests/reference/check_export.py /tmp/exp/*        (each exported directory)
"""
import sys

import torch
import transformers
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

assert torch.__version__.split("+")[0] == "2.5.1", torch.__version__
assert transformers.__version__ == "4.46.3", transformers.__version__
transformers.utils.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()


def check(path):
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32, attn_implementation="eager")
    ref = load_file(f"{path}/fusellm_logits.safetensors")
    ids = ref["ids"].round().long()[None]
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].float()
    rel = ((logits - ref["logits"]).abs().max() / ref["logits"].abs().max()).item()
    ok = rel <= 1e-4
    print(f"{path}: {type(model).__name__} ({model.config.torch_dtype}), tokenizer {type(tok).__name__}: "
          f"max|diff|/max|ref| = {rel:.3g} {'OK' if ok else 'MISMATCH'}")
    return ok


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    results = [check(p) for p in sys.argv[1:]]
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
