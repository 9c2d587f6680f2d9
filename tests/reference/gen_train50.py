#!/usr/bin/env python3
"""50 optimizer steps of fusellm and of PyTorch on the same weights, data, fused targets, optimizer
and schedule: the fixtures of tests/integration/test_train_reference.cpp.

  python3 tests/reference/gen_train50.py --fusellm build/fusellm

1. Writes tests/fixtures/train50/corpus.jsonl: the first DOCS documents of examples/demo/corpus.jsonl,
   each cut to CHARS characters (a fixed slice, committed).
2. Runs the fusellm binary on tests/fixtures/train50/job.toml (in runs/train50/, removed first):
   `teach` for each source (MinED alignment into the Llama's vocabulary, top-10), then
   `train --dump` for the job's 50 steps (MinCE, lambda 0.9, cosine schedule with warmup, AdamW
   with weight decay, clipping; document_mask = false).
3. Replays the 50 steps in PyTorch with train_reference.py's replay (LlamaForCausalLM in fp32 from
   the same checkpoint, the dumped packed sequences and fused targets, torch.optim.AdamW with the HF
   Trainer's no-decay rule, clip_grad_norm_). The learning rate of each step comes from
   transformers' get_cosine_schedule_with_warmup (not from the dump; it must equal fusellm's).
4. Writes, beside the job:
   - reference.json: the settings, and per step the PyTorch loss, clm, fusion, grad norm and lr,
     the fp64 norm of torch's gradients (clip_grad_norm_'s fp32 norm is 2e-5..5e-5 low), fusellm's own
     values at generation time (for information), and which input sequences the step
     trained on (indices into inputs.safetensors, in the order fusellm used them);
   - inputs.safetensors: the distinct packed sequences of the run (s<i>.ids, s<i>.gold [T] I32;
     s<i>.target_ids [T, k] I32 with -1 padding, s<i>.target_probs [T, k] F32), so that the test
     can check that fusellm fed the same data before comparing losses;
   - final_weights.safetensors: the PyTorch weights after step 50, fp32, a deterministic subset
     (the whole model is 11 MB): 1-D tensors whole; of each matrix the rows listed in
     "<name>::rows" (I64): every ROW_STRIDE-th row (VOCAB_ROW_STRIDE-th for embed_tokens and
     lm_head) and the last one, and for embed_tokens and lm_head also the first 64 distinct token
     ids of the data (embedding rows that get gradients).

The test compares per-step loss, clm and fusion within 1e-4 relative at every step, and each
stored tensor's max |fusellm - torch| / max |torch| within 1e-3.

Recorded 2026-11-25 (torch 2.5.1, transformers 4.46.3, safetensors 0.4.5, numpy 1.26.4; fusellm at
main c7c15d4, micro_batch 2 = two sequences per forward pass): 24 segments -> 17 packed sequences
of <= 96 tokens, 50 steps x 4 sequences (11.8 epochs), loss 5.373 -> 1.765, MinCE picked the NeoX
for every sequence, 22 of 50 steps clipped (clip 1.0). Worst relative difference fusellm vs
PyTorch over the 50 steps: loss 2.1e-06, clm 2.8e-06, fusion 2.1e-06 (step 1: 2e-08; the rest is
the weights drifting apart); lr 0 (the same doubles). Gradient norm: 1.1e-05 against the fp64
norm of torch's gradients, 5.0e-05 against clip_grad_norm_'s return value (torch sums fp32
per-tensor norms; at step 1 it is 2.2e-05 below the exact norm, while fusellm's per-tensor
gradients agree with torch's to 1e-06). Final weights, every tensor, max|fusellm - torch| /
max|torch|: worst 2.9e-04 (model.embed_tokens.weight), median 2.0e-06; training moved every
stored tensor by 1.7e-02 .. 2.8e-01 of its scale. Fixtures 0.8 MB.

Re-recorded after the vocabulary map stopped sending source tokens to byte-fallback `<0xHH>`
entries that a regular target token spells (fusellm branch fix9-align, OMP_NUM_THREADS=2): 21 of
50 steps clipped; worst relative difference loss 1.7e-06, clm 2.2e-06, fusion 7.4e-07, grad norm
3.6e-05 (1.1e-05 against the fp64 norm); final weights worst 7.7e-06 (model.embed_tokens.weight),
median 1.6e-06.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tomllib

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import get_cosine_schedule_with_warmup

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_reference import make_model_and_optimizer, read_dump, replay_step  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
FIX = os.path.join(ROOT, "tests", "fixtures", "train50")
JOB = os.path.join(FIX, "job.toml")
DOCS = 6
CHARS = 700
ROW_STRIDE = 8
VOCAB_ROW_STRIDE = 64
DATA_ROWS = 64


def write_corpus():
    out = []
    with open(os.path.join(ROOT, "examples", "demo", "corpus.jsonl"), encoding="utf-8") as f:
        for line in f:
            if len(out) == DOCS:
                break
            out.append(json.dumps({"text": json.loads(line)["text"][:CHARS]}, ensure_ascii=False))
    with open(os.path.join(FIX, "corpus.jsonl"), "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")


def run_fusellm(binary, dump):
    work = os.path.join(ROOT, "runs", "train50")
    shutil.rmtree(work, ignore_errors=True)
    for src in ("llama", "neox"):
        subprocess.run([binary, "teach", "--job", JOB, "--source", src, "-q"], check=True)
    subprocess.run([binary, "train", "--job", JOB, "--dump", dump, "--export", os.path.join(work, "export"), "-q"],
                   check=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fusellm", required=True, help="the fusellm binary")
    ap.add_argument("--dump", default="/tmp/fusellm_train50_dump.jsonl")
    ap.add_argument("--reuse-dump", action="store_true", help="do not run fusellm; replay an existing dump")
    a = ap.parse_args()
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    with open(JOB, "rb") as f:
        job = tomllib.load(f)
    if not a.reuse_dump:
        write_corpus()
        run_fusellm(os.path.abspath(a.fusellm), a.dump)
    head, steps = read_dump(a.dump)
    total_steps = job["train"]["max_steps"]
    assert len(steps) == total_steps, f"{len(steps)} steps dumped, the job has {total_steps}"
    assert head["clip"] == job["optim"]["clip"] and head["weight_decay"] == job["optim"]["weight_decay"]

    # The distinct packed sequences and which ones each step used.
    uniq, keys, step_seqs = [], {}, []
    for st in steps:
        idx = []
        for s in st["sequences"]:
            k = json.dumps(s, sort_keys=True)
            if k not in keys:
                keys[k] = len(uniq)
                uniq.append(s)
            idx.append(keys[k])
        step_seqs.append(idx)
    clipped = sum(st["grad_norm"] > head["clip"] for st in steps)
    print(f"{len(uniq)} distinct sequences, {sum(len(x) for x in step_seqs)} sequence passes; "
          f"fusellm clipped {clipped} of {len(steps)} steps (clip {head['clip']})")
    assert 0 < clipped < len(steps), "choose a clip that clips some steps and not others"

    model, opt = make_model_and_optimizer(head)
    init = {n: p.detach().clone() for n, p in model.named_parameters()}
    # transformers' schedule on a throwaway optimizer at the base lr: its lr before step k.
    sched_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=job["optim"]["lr"])
    sched = get_cosine_schedule_with_warmup(sched_opt, job["optim"]["warmup_steps"], total_steps)
    rows_out, worst = [], {"loss": 0.0, "clm": 0.0, "fusion": 0.0, "grad_norm": 0.0, "lr": 0.0}
    worst_gn64 = 0.0
    for k, st in enumerate(steps):
        lr = sched.get_last_lr()[0]
        sched_opt.step()
        sched.step()
        loss, clm, fus, gn, gn64 = replay_step(model, opt, head, st, lr)
        r = {"step": st["step"], "loss": loss, "clm": clm, "fusion": fus, "grad_norm": gn, "grad_norm_fp64": gn64, "lr": lr,
             "sequences": step_seqs[k],
             "fusellm": {x: st[x] for x in ("loss", "clm", "fusion", "grad_norm", "lr")}}
        rows_out.append(r)
        for x in worst:
            worst[x] = max(worst[x], abs(r[x] - st[x]) / max(abs(r[x]), 1e-30))
        worst_gn64 = max(worst_gn64, abs(gn64 - st["grad_norm"]) / gn64)
        print(f"step {st['step']:2d}: loss torch {loss:.7f} fusellm {st['loss']:.7f}  clm {clm:.6f}  fusion {fus:.6f}  "
              f"lr {lr:.3e}  grad_norm torch {gn:.5f} fusellm {st['grad_norm']:.5f}")

    # Inputs.
    tens = {}
    for i, s in enumerate(uniq):
        tens[f"s{i}.ids"] = torch.tensor(s["ids"], dtype=torch.int32)
        tens[f"s{i}.gold"] = torch.tensor(s["gold"], dtype=torch.int32)
        tens[f"s{i}.target_ids"] = torch.tensor(s["target_ids"], dtype=torch.int32)
        tens[f"s{i}.target_probs"] = torch.tensor(s["target_probs"], dtype=torch.float32)
    save_file(tens, os.path.join(FIX, "inputs.safetensors"), metadata={"sequences": str(len(uniq))})

    # Final weights (subset) and how far training moved them.
    data_ids = []
    for s in uniq:
        for t in s["ids"]:
            if t not in data_ids:
                data_ids.append(t)
    data_ids = sorted(data_ids[:DATA_ROWS])
    out, moved = {}, {}
    for n, p in model.named_parameters():
        w = p.detach().float()
        if w.dim() == 1:
            out[n] = w.clone().contiguous()
            sel = None
        else:
            vocab = "embed_tokens" in n or "lm_head" in n
            rows = set(range(0, w.shape[0], VOCAB_ROW_STRIDE if vocab else ROW_STRIDE)) | {w.shape[0] - 1}
            if vocab:
                rows |= set(data_ids)
            sel = torch.tensor(sorted(rows), dtype=torch.int64)
            out[n] = w[sel].clone().contiguous()
            out[n + "::rows"] = sel
        d0 = (w - init[n]) if sel is None else (w[sel] - init[n][sel])
        moved[n] = (d0.abs().max() / out[n].abs().max()).item()
    save_file(out, os.path.join(FIX, "final_weights.safetensors"), metadata={"step": str(total_steps)})

    ref = {"generator": "tests/reference/gen_train50.py", "torch": torch.__version__,
           "transformers": __import__("transformers").__version__, "job": "tests/fixtures/train50/job.toml",
           "lambda": head["lambda"], "clip": head["clip"], "weight_decay": head["weight_decay"],
           "beta1": head["beta1"], "beta2": head["beta2"], "eps": head["eps"], "lr": job["optim"]["lr"],
           "warmup_steps": job["optim"]["warmup_steps"], "total_steps": total_steps,
           "distinct_sequences": len(uniq), "steps": rows_out}
    with open(os.path.join(FIX, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)

    mv = sorted(moved.values())
    print(f"worst relative difference torch vs fusellm (per step, over {len(steps)} steps): "
          + ", ".join(f"{k} {v:.2e}" for k, v in worst.items()) + f"; grad_norm vs torch's fp64 norm {worst_gn64:.2e}")
    print(f"clipped steps: {clipped}/{len(steps)}; weight change max|final - init| / max|final| over the stored rows: "
          f"min {mv[0]:.2e}, median {mv[len(mv) // 2]:.2e}, max {mv[-1]:.2e}")
    # fusellm's own final weights (its fp32 export), all of them, against torch's.
    exp = os.path.join(ROOT, "runs", "train50", "export", "model.safetensors")
    if os.path.exists(exp):
        from safetensors.torch import load_file
        fw = load_file(exp)
        wd = {}
        for n, p in model.named_parameters():
            ref_w = p.detach().float()
            wd[n] = ((fw[n].float() - ref_w).abs().max() / ref_w.abs().max()).item()
        n_worst = max(wd, key=wd.get)
        print(f"final weights, all tensors, max|fusellm - torch| / max|torch|: worst {wd[n_worst]:.2e} ({n_worst}), "
              f"median {sorted(wd.values())[len(wd) // 2]:.2e}")
    sizes = {f: os.path.getsize(os.path.join(FIX, f)) for f in sorted(os.listdir(FIX))}
    print("fixtures:", ", ".join(f"{f} {s / 1e3:.0f} kB" for f, s in sizes.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
