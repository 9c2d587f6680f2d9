#!/usr/bin/env python3
"""Reference for fusellm's optimizer, schedules and clipping (src/fusellm/train/{adamw,
lr_schedule,grad_clip}): the HF Trainer's optimizer loop, run with torch + transformers on a small
random quadratic problem, written to tests/fixtures/optim/reference.json.

    python3 tests/reference/gen_optim.py

What the Trainer does per optimizer step, and what is recorded:
    loss.backward()                                   -> grads (before clipping)
    norm = clip_grad_norm_(params, max_grad_norm)     -> norm
    lr = scheduler.get_last_lr()[0]                   -> lr (the lr this step uses)
    optimizer.step(); scheduler.step()                -> params after the step
with torch.optim.AdamW (foreach=False: the single-tensor path CPU tensors take), the Trainer's
two parameter groups (weight decay except for biases and norm weights), and the schedule from
transformers.get_scheduler with warmup steps from TrainingArguments.get_warmup_steps. The C++ test
feeds the recorded gradients, so a difference cannot compound through the problem.

Also records, for each schedule and a few (total, warmup) settings, the warmup steps the Trainer
derives and the learning rate after k scheduler steps, k = 0 .. total + 2.

Pinned: see tests/reference/requirements.txt. Deterministic (seeded, float32, one thread).
"""
import json, math, os, types

import torch
import transformers
from transformers import TrainingArguments, get_scheduler
from transformers.optimization import get_cosine_with_min_lr_schedule_with_warmup

assert torch.__version__.startswith("2.5.1"), torch.__version__
assert transformers.__version__ == "4.46.3", transformers.__version__

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "optim", "reference.json")


def warmup_steps(total, ratio, steps=0):
    # The Trainer's own method on a stand-in for TrainingArguments (constructing the real one
    # needs accelerate, which the method does not use).
    return TrainingArguments.get_warmup_steps(types.SimpleNamespace(warmup_steps=steps, warmup_ratio=ratio), total)


def flat(t):
    return [float(x) for x in t.detach().reshape(-1).tolist()]


def adamw_run():
    torch.manual_seed(1234)
    cfg = dict(lr=0.1, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1, max_grad_norm=1.0,
               schedule="cosine", warmup_ratio=0.1, total_steps=30)
    cfg["warmup_steps"] = warmup_steps(cfg["total_steps"], cfg["warmup_ratio"])  # 3
    shapes = {"model.layers.0.mlp.up_proj.weight": [4, 6],
              "model.layers.0.input_layernorm.weight": [6],
              "lm_head.weight": [5, 6]}
    params = {n: torch.nn.Parameter(torch.randn(s) * 0.3) for n, s in shapes.items()}
    init = {n: flat(p) for n, p in params.items()}
    total = sum(p.numel() for p in params.values())
    # loss = 0.5 (x - x*)^T A (x - x*) + c^T x with A = Q diag(lam) Q^T, eigenvalues 0.02 .. 1.5: early
    # gradients have norm > 1 (clipped), later ones fall below it.
    q, _ = torch.linalg.qr(torch.randn(total, total, dtype=torch.float64))
    lam = torch.logspace(math.log10(0.02), math.log10(1.5), total, dtype=torch.float64)
    A = (q * lam) @ q.T
    A = A.float()
    xstar = torch.randn(total) * 0.3
    c = torch.randn(total) * 0.01

    decay = [params[n] for n in shapes if "norm" not in n and "bias" not in n]
    no_decay = [params[n] for n in shapes if not ("norm" not in n and "bias" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=cfg["lr"], betas=(cfg["beta1"], cfg["beta2"]), eps=cfg["eps"], foreach=False)
    sched = get_scheduler(cfg["schedule"], opt, num_warmup_steps=cfg["warmup_steps"],
                          num_training_steps=cfg["total_steps"])
    steps = []
    for _ in range(cfg["total_steps"]):
        opt.zero_grad()
        x = torch.cat([p.reshape(-1) for p in params.values()])
        d = x - xstar
        loss = 0.5 * (d @ (A @ d)) + c @ x
        loss.backward()
        grads = {n: flat(p.grad) for n, p in params.items()}
        norm = torch.nn.utils.clip_grad_norm_(list(params.values()), cfg["max_grad_norm"])
        lr = sched.get_last_lr()[0]
        opt.step()
        sched.step()
        steps.append(dict(lr=lr, norm=float(norm), grads=grads, params={n: flat(p) for n, p in params.items()}))
    state = {n: dict(m=flat(opt.state[p]["exp_avg"]), v=flat(opt.state[p]["exp_avg_sq"]),
                     step=float(opt.state[p]["step"])) for n, p in params.items()}
    return dict(config=cfg, shapes=shapes, init=init, steps=steps, final_state=state,
                decay={n: ("norm" not in n and "bias" not in n) for n in shapes})


def schedules():
    base_lr = 3e-4
    out = []
    settings = [dict(total=30, ratio=0.1, steps=0), dict(total=1000, ratio=0.008, steps=0),
                dict(total=125, ratio=0.0, steps=7),
                dict(total=100, ratio=0.07, steps=0),  # 100 * 0.07 = 7.000000000000001: 8 warmup steps
                dict(total=10, ratio=0.0, steps=0), dict(total=3, ratio=0.5, steps=0)]
    for kind in ["constant", "linear", "cosine", "cosine_min_lr"]:
        for s in settings:
            w = warmup_steps(s["total"], s["ratio"], s["steps"])
            p = torch.nn.Parameter(torch.zeros(1))
            opt = torch.optim.SGD([p], lr=base_lr)
            if kind == "cosine_min_lr":
                sch = get_cosine_with_min_lr_schedule_with_warmup(opt, w, s["total"], min_lr_rate=0.1)
            else:
                name = "constant_with_warmup" if kind == "constant" else kind
                sch = get_scheduler(name, opt, num_warmup_steps=w, num_training_steps=s["total"])
            lrs = []
            for _ in range(s["total"] + 3):
                lrs.append(sch.get_last_lr()[0])
                opt.step()
                sch.step()
            out.append(dict(kind=kind, base_lr=base_lr, total=s["total"], warmup_ratio=s["ratio"],
                            warmup_steps_arg=s["steps"], warmup_steps=w,
                            min_lr_ratio=0.1 if kind == "cosine_min_lr" else 0.0, lrs=lrs))
    return out


def main():
    torch.set_num_threads(1)
    ref = dict(generator="tests/reference/gen_optim.py", torch=torch.__version__,
               transformers=transformers.__version__, adamw=adamw_run(), schedules=schedules())
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(ref, f, indent=None, separators=(",", ":"))
        f.write("\n")
    norms = [s["norm"] for s in ref["adamw"]["steps"]]
    print(f"wrote {OUT}: {len(norms)} AdamW steps (grad norms {min(norms):.3f} .. {max(norms):.3f}, "
          f"{sum(n > 1 for n in norms)} clipped), {len(ref['schedules'])} schedules")


if __name__ == "__main__":
    main()
