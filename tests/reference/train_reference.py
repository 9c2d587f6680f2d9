#!/usr/bin/env python3
"""The same training steps as `fusellm train`, in PyTorch: per-step losses compared.

`fusellm train --dump FILE` writes, per optimizer step, the packed sequences it trained on (token
ids, labels) and the fused sparse targets (ids, probabilities over the target vocabulary) it built
from the teachers' caches, with its losses and learning rate; a header line gives the target
checkpoint, lambda and the optimizer settings. This script replays those steps with
transformers' LlamaForCausalLM loaded from the same checkpoint, in fp32:

  per sequence: logits = model(ids); CLM_i = -log q_i(gold_i), Fusion_i = -sum_j P_ij log q_i(id_ij)
                over the labelled positions; loss = mean_i(lambda CLM_i + (1 - lambda) Fusion_i)
  per step:     backward of (sum over sequences of loss) / sequences; clip_grad_norm_(clip);
                torch.optim.AdamW (no weight decay on norms and biases, as the HF Trainer) at the
                dumped lr (the schedule itself is checked by tests/unit/optim/test_optim_reference)

and compares each step's loss with the dumped one (default tolerance 1e-4 relative).

Usage (the run must start from step 0: a fresh output dir):
  fusellm train --job J --limit 24 --max-steps 6 --dump /tmp/dump.jsonl --no-export
  python3 tests/reference/train_reference.py /tmp/dump.jsonl
or let the script run it: python3 tests/reference/train_reference.py --fusellm build/fusellm --job J ...
Packed sequences with document masks are not supported here (HF Llama has no per-document mask).
The replay (make_model_and_optimizer, replay_step) is shared with gen_train50.py (50 steps, fixtures).

Recorded 2026-11-25 (torch 2.5.1, transformers 4.46.3; jobs/tiny.toml with [cache].dir set, MinCE,
lambda 0.9, teach --limit 24 per source, --limit 24 --max-steps 6, 19 packed sequences of <= 256
tokens, global batch 4): worst relative loss difference over the 6 steps 5.3e-08 (losses 5.48 ->
5.44); gradient norms agree to 3e-05 relative.
"""
import argparse
import json
import subprocess
import sys

import torch
from transformers import LlamaForCausalLM


def make_model_and_optimizer(head):
    """The target in fp32 (eager attention) and torch.optim.AdamW with the HF Trainer's no-decay rule."""
    torch.manual_seed(0)
    model = LlamaForCausalLM.from_pretrained(head["target"], torch_dtype=torch.float32, attn_implementation="eager")
    model.train()  # no dropout in Llama's config anyway
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (no_decay if ("norm" in n or "bias" in n) else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": head["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=0.0, betas=(head["beta1"], head["beta2"]), eps=head["eps"], foreach=False)
    return model, opt


def replay_step(model, opt, head, st, lr):
    """One optimizer step on a dumped step's sequences at learning rate `lr`.

    Returns (loss, clm, fusion, grad_norm, grad_norm_fp64): the losses are the means over the step's
    sequences; grad_norm is what clip_grad_norm_ returned (fp32 per-tensor norms; 2e-5..5e-5 below
    the exact norm on the demo Llama), grad_norm_fp64 the same gradients' norm accumulated in double."""
    lam = torch.tensor(head["lambda"], dtype=torch.float32).item()  # the kernel's float lambda
    opt.zero_grad()
    seqs = st["sequences"]
    total = clm_sum = fus_sum = 0.0
    for s in seqs:
        assert not s["doc_ids"], "document masks are not supported by this reference"
        ids = torch.tensor([s["ids"]], dtype=torch.long)
        gold = torch.tensor(s["gold"], dtype=torch.long)
        logp = torch.log_softmax(model(ids).logits[0].float(), dim=-1)
        lab = gold >= 0
        clm = -logp[lab, gold[lab]]
        tid = torch.tensor(s["target_ids"], dtype=torch.long)
        tpr = torch.tensor(s["target_probs"], dtype=torch.float32)
        keep = tid >= 0
        fus = -(torch.where(keep, tpr, torch.zeros_like(tpr)) * torch.gather(logp, 1, tid.clamp(min=0))).sum(-1)
        loss = (lam * clm + (1 - lam) * fus[lab]).mean()
        (loss / len(seqs)).backward()
        total += loss.item()
        clm_sum += clm.mean().item()
        fus_sum += fus[lab].mean().item()
    n = len(seqs)
    gn64 = sum(float(p.grad.double().pow(2).sum()) for p in model.parameters() if p.grad is not None) ** 0.5
    gn = torch.nn.utils.clip_grad_norm_(model.parameters(), head["clip"]) if head["clip"] > 0 else float("nan")
    for g in opt.param_groups:
        g["lr"] = lr
    opt.step()
    return total / n, clm_sum / n, fus_sum / n, float(gn), gn64


def read_dump(path):
    lines = [json.loads(l) for l in open(path)]
    head, steps = lines[0], lines[1:]
    assert head.get("header") and head["start_step"] == 0, "the dumped run must start at step 0"
    return head, steps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dump", nargs="?", default="")
    ap.add_argument("--fusellm", default="")
    ap.add_argument("--job", default="")
    ap.add_argument("--limit", type=int, default=24)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--rtol", type=float, default=1e-4)
    a = ap.parse_args()
    dump = a.dump or "/tmp/fusellm_train_dump.jsonl"
    if a.fusellm:
        subprocess.run([a.fusellm, "train", "--job", a.job, "--limit", str(a.limit), "--max-steps", str(a.steps),
                        "--dump", dump, "--no-export", "-q"], check=True)
    head, steps = read_dump(dump)
    model, opt = make_model_and_optimizer(head)
    worst = 0.0
    for st in steps:
        total, _, _, gn, _ = replay_step(model, opt, head, st, st["lr"])
        rel = abs(total - st["loss"]) / max(abs(st["loss"]), 1e-12)
        worst = max(worst, rel)
        print(f"step {st['step']}: fusellm loss {st['loss']:.8f}  torch {total:.8f}  rel {rel:.2e}  "
              f"grad_norm fusellm {st['grad_norm']:.6f} torch {gn:.6f}")
    ok = worst <= a.rtol
    print(f"{len(steps)} steps, worst relative loss difference {worst:.2e} ({'OK' if ok else 'FAIL'} at {a.rtol:g})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
