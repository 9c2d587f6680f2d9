#!/usr/bin/env python3
"""Fixtures for the paper's two inference-time baselines (DESIGN.md section 1): weight merging
(`fusellm merge`) and the ensemble (`fusellm score` with several --model), computed here with
PyTorch + transformers, written to tests/fixtures/baselines/ and checked by
tests/integration/test_baselines.cpp.

    python3 tests/reference/gen_baselines.py            (rewrites the fixtures)
    python3 tests/reference/gen_baselines.py --check DIR  (a `fusellm merge` output of a and b:
                                                           transformers loads it; logits equal)

What it writes (all models: tiny Llama, f32, one byte-level BPE tokenizer of 300 ids trained here
on the GPL-3 text, BOS added by its TemplateProcessing):
  a/, b/, c/        same architecture and tokenizer, different random weights (seeds 1, 2, 3);
  other_shape/      the same but intermediate_size 48 (merging it with a must fail);
  text.txt          a short English text: 187 tokens, three windows of the 64-token context;
  expected/merge_ab.safetensors    torch's merge of a and b, uniform weights (float64 sum of
                                   w_j * p_j, rounded to f32), plus "ids" and "logits": the merged
                                   model's logits on text.txt's first 64 tokens (transformers,
                                   LlamaForCausalLM from the merged state dict, f32, eager);
  expected/merge_abc_123.safetensors   the same for a, b, c with weights 1,2,3 (normalized);
  expected/ensemble.json           per-token log-probs, nll, perplexity, bits per byte of
                                   text.txt under the ensemble p = sum_j w_j softmax(z_j) of
                                   (a, b) uniform and (a, b, c) with weights 1,2,3; windows of 64
                                   tokens that restart the context, as `fusellm score` does.

Checked by hand (this stack): `fusellm merge --model a --model b --out /tmp/mab`, then
`--check /tmp/mab`: transformers loads the export (LlamaForCausalLM, PreTrainedTokenizerFast),
max|diff|/max|ref| of its logits = 5.8e-7 (f32; the merged tensors equal torch's bit for bit);
with --dtype bf16 it loads too and differs by 1.2e-2 (bf16 rounding of the weights, so --check
reports a mismatch against the f32 reference, as expected).

Pinned: tests/reference/requirements.txt. Deterministic (seeded, CPU).
"""
import argparse, json, math, os, shutil, sys

import torch
import transformers
import tokenizers
from safetensors.torch import save_file, load_file

assert torch.__version__.split("+")[0] == "2.5.1", torch.__version__
assert transformers.__version__ == "4.46.3", transformers.__version__
assert tokenizers.__version__ == "0.20.3", tokenizers.__version__
transformers.utils.logging.set_verbosity_error()

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "baselines")
CONTEXT = 64
TEXT = ("Weight merging averages the parameters of models that share an architecture; the ensemble "
        "averages their next-token probabilities at inference. FuseLLM instead fuses the models' "
        "distributions into one target by continual training, so the target keeps one model's cost.\n")


def make_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders, processors, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([open("/usr/share/common-licenses/GPL-3", encoding="utf-8").read()], trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")


def make_model(tok, seed, intermediate=64):
    cfg = transformers.LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=intermediate, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=CONTEXT, rope_theta=10000.0,
        rms_norm_eps=1e-6, tie_word_embeddings=False, bos_token_id=0, eos_token_id=1)
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(cfg)
    # Weights far from the default init (0.02, unit norms), so the models' distributions differ
    # clearly and a wrong weight in the merge or the mixture shows.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.copy_(1 + 0.3 * torch.randn_like(p))
            else:
                p.normal_(0, 0.25)
    return model.eval()


def torch_merge(dirs, weights):
    sds = [load_file(os.path.join(d, "model.safetensors")) for d in dirs]
    w = [x / sum(weights) for x in weights]
    return {k: sum(wj * sd[k].double() for wj, sd in zip(w, sds)).float() for k in sds[0]}


def merged_logits(config_dir, state, ids):
    cfg = transformers.AutoConfig.from_pretrained(config_dir)
    model = transformers.LlamaForCausalLM(cfg)
    model.load_state_dict(state, strict=True)
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids[None]).logits[0].float()


def ensemble(dirs, weights, ids, text):
    models = [transformers.AutoModelForCausalLM.from_pretrained(d, torch_dtype=torch.float32,
                                                                attn_implementation="eager") for d in dirs]
    logw = torch.log(torch.tensor(weights, dtype=torch.float64) / sum(weights))
    lps, nll = [], 0.0
    for start in range(0, len(ids), CONTEXT):
        win = ids[start:start + CONTEXT]
        with torch.no_grad():
            # [models, T, V] log-softmax in float64, mixed by log-sum-exp over the models.
            ls = torch.stack([torch.log_softmax(m(input_ids=win[None]).logits[0].double(), -1) for m in models])
        mix = torch.logsumexp(ls + logw[:, None, None], dim=0)
        for i in range(1, len(win)):
            lp = mix[i - 1, win[i]].item()
            lps.append({"pos": start + i, "id": int(win[i]), "logprob": lp})
            nll -= lp
    n = len(lps)
    return {"models": [os.path.basename(d) for d in dirs], "weights": weights, "tokens": len(ids),
            "scored_tokens": n, "logprobs": lps, "nll": nll, "perplexity": math.exp(nll / n),
            "bits_per_byte": nll / math.log(2) / len(text.encode("utf-8"))}


def check(path):
    ref = load_file(os.path.join(OUT, "expected", "merge_ab.safetensors"))
    transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32,
                                                              attn_implementation="eager")
    with torch.no_grad():
        logits = model(input_ids=ref["ids"].long()[None]).logits[0].float()
    rel = ((logits - ref["logits"]).abs().max() / ref["logits"].abs().max()).item()
    print(f"{path}: {type(model).__name__}: max|diff|/max|ref| = {rel:.3g}")
    return rel <= 1e-5


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", metavar="DIR")
    args = ap.parse_args()
    if args.check:
        sys.exit(0 if check(args.check) else 1)
    torch.set_num_threads(1)
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(os.path.join(OUT, "expected"))
    tok = make_tokenizer()
    for name, seed, inter in (("a", 1, 64), ("b", 2, 64), ("c", 3, 64), ("other_shape", 4, 48)):
        d = os.path.join(OUT, name)
        make_model(tok, seed, inter).save_pretrained(d, safe_serialization=True)
        tok.save_pretrained(d)
    with open(os.path.join(OUT, "text.txt"), "w", encoding="utf-8") as f:
        f.write(TEXT)
    ids = torch.tensor(tok(TEXT)["input_ids"], dtype=torch.long)
    assert len(ids) > 2 * CONTEXT, len(ids)  # several windows
    a, b, c = (os.path.join(OUT, n) for n in "abc")
    for name, dirs, w in (("merge_ab", [a, b], [1.0, 1.0]), ("merge_abc_123", [a, b, c], [1.0, 2.0, 3.0])):
        state = torch_merge(dirs, w)
        first = ids[:CONTEXT]
        logits = merged_logits(a, state, first)
        save_file({**state, "ids": first.float(), "logits": logits},
                  os.path.join(OUT, "expected", name + ".safetensors"))
    res = {"ab": ensemble([a, b], [1.0, 1.0], ids, TEXT), "abc_123": ensemble([a, b, c], [1.0, 2.0, 3.0], ids, TEXT)}
    with open(os.path.join(OUT, "expected", "ensemble.json"), "w") as f:
        json.dump(res, f, indent=1)
    for k, r in res.items():
        print(f"ensemble {k}: {r['tokens']} tokens, ppl {r['perplexity']:.4f}, bpb {r['bits_per_byte']:.6f}")


if __name__ == "__main__":
    main()
