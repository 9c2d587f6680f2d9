#!/usr/bin/env python3
"""The online job with one teacher and the student on one GPU (issue 15): its step time, and the
share of it the student spends waiting on the exchange with its teacher. Python stdlib only; it
builds nothing: give it the fusellm binary.

    python3 benchmarks/bench_online_cuda.py --fusellm build/fusellm [--device cuda|cpu] [--size gpu|tiny]
        [--steps 24] [--launcher auto|none] [--workdir DIR (kept)]

The job: bench_online_overlap.py's (WORKDIR/job.toml), one source "neox" with top-k 10, MinED
alignment, MinCE, lambda 0.9, prefetch 2, here a GPT-NeoX with the demo's byte-level BPE tokenizer,
teaching a Llama with the demo's SentencePiece-style tokenizer (examples/demo: two tokenizers, so
the teacher aligns and maps vocabularies as the paper's job does), both made here by
`fusellm init` at --size (gpu: hidden 1024, 8 layers, about 0.12 B parameters each, sequences
of 1024 tokens, one micro-batch of 4 per step; tiny: hidden 64, 2 layers, 128 tokens, 4
micro-batches of 1, for checking the script on a CPU), trained on the first segments of
examples/demo/corpus.jsonl for --steps steps of 4 sequences (the models, the device and the steps
set on each command line: --set source[0].path=... target.path=... train.device=..., --max-steps).

Runs, one after the other:
  online    `fusellm train --job J`, one process, no launcher: online mode with the teacher in the
            same process, the teacher's forward, top-k and alignment and the student's step taking
            turns (and sharing the GPU). This is what runs where there is no MPI launcher (the
            GPU machine: scripts/gpu_check.sh carries no Open MPI launcher or plugins), and it
            writes no timeline (only the MPI job's ranks do).
  teach     `fusellm teach` of the same segments into a cache (the teacher alone), then
  offline   `fusellm train --cache-dir` from it: the student alone, on the same sequences.
  pipeline  with --launcher auto and an Open MPI 4 `mpirun` on the PATH (not on the GPU machine
            today): `mpirun -np 2 fusellm train --job J`, a teacher rank and a student rank
            overlapping (on one GPU when --device cuda); `fusellm timeline` gives the student's
            shares of waiting for rows and of communicating.
Printed: the step time of each run (the median over steps 3.. of its metrics.jsonl, tokens /
tokens_per_s, or the student rank's wall / steps for the pipeline); in one process, the share of
the step the student waits on its teacher = 1 - offline step / online step; for the pipeline,
the timeline's shares. Exit status 0 whatever the numbers; 1 when a run fails.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from bench_online_overlap import DEMO, last_metrics, one_rank, phase_total, write_job

# The student Llama's and the teacher GPT-NeoX's shapes; the job's sequence length, micro-batch
# (of the 4 sequences of a step) and corpus segments (--limit: an epoch of at least 24 steps).
SIZES = {
    "gpu": dict(hidden=1024, layers=8, heads=16, llama_ffn=2816, neox_ffn=4096, max_len=1024, micro_batch=4, limit=180),
    "tiny": dict(hidden=64, layers=2, heads=4, llama_ffn=176, neox_ffn=256, max_len=128, micro_batch=1, limit=160),
}


def run(cmd, env):
    """Runs cmd; (wall seconds, output, exit status); the output's tail is printed when it fails."""
    t0 = time.monotonic()
    r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        print(f"FAILED ({r.returncode}): {' '.join(cmd)}\n{r.stdout[-3000:]}", flush=True)
    return time.monotonic() - t0, r.stdout, r.returncode


def make_models(fusellm, work, size, env):
    """The student (Llama) and the teacher (GPT-NeoX) at `size`, made by `fusellm init` from the
    demo models' config.json (resized) and tokenizer files."""
    s = SIZES[size]
    resize = {
        "student": ("llama", dict(intermediate_size=s["llama_ffn"], num_key_value_heads=s["heads"],
                                  head_dim=s["hidden"] // s["heads"])),
        "teacher": ("neox", dict(intermediate_size=s["neox_ffn"])),
    }
    for name, (demo, extra) in resize.items():
        staging = os.path.join(work, name + ".config")
        os.makedirs(staging, exist_ok=True)
        with open(os.path.join(DEMO, demo, "config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
        cfg.update(hidden_size=s["hidden"], num_hidden_layers=s["layers"], num_attention_heads=s["heads"],
                   max_position_embeddings=max(2048, s["max_len"]), torch_dtype="float32", **extra)
        with open(os.path.join(staging, "config.json"), "w", encoding="utf-8") as f:
            json.dump(cfg, f, indent=2)
        shutil.copy(os.path.join(DEMO, demo, "tokenizer.json"), staging)
        _, out, rc = run([fusellm, "init", "--from", staging, "--out", os.path.join(work, name), "--force",
                          "--seed", "1" if name == "student" else "2"], env)
        if rc != 0:
            return None
        print("# " + (out.splitlines() or [""])[0], flush=True)
    return True


def step_seconds(metrics_path, skip=2):
    """The median seconds per step of a run's metrics.jsonl (log_interval 1), past its first
    `skip` steps; and the steps' count."""
    with open(metrics_path, encoding="utf-8") as f:
        lines = [json.loads(l) for l in f if l.strip()]
    lines = [l for l in lines if "step" in l and l.get("tokens_per_s", 0) > 0]
    secs, prev = [], 0
    for l in lines:
        secs.append((l["tokens"] - prev) / l["tokens_per_s"])
        prev = l["tokens"]
    rest = sorted(secs[skip:] if len(secs) > skip else secs)
    return rest[len(rest) // 2], len(lines)


def one_process(fusellm, job, work, common, steps, env):
    """online in one process, then teach + offline train: their step times and walls. `common`:
    every command's settings (the models, the device, the first --limit segments, so that all
    train on the same sequences); `steps`: train's --max-steps."""
    res = {}
    out = os.path.join(work, "online")
    wall, _, rc = run([fusellm, "train", "--job", job, "--set", f"job.output_dir={out}", "--no-export", "-q"] + common
                      + steps, env)
    if rc != 0:
        return None
    res["online"], res["steps"] = step_seconds(os.path.join(out, "metrics.jsonl"))
    res["online_wall"] = wall
    res["tokens"] = last_metrics(os.path.join(out, "metrics.jsonl"))["tokens"]
    out, cache = os.path.join(work, "offline"), os.path.join(work, "cache")
    dirs = ["--set", f"job.output_dir={out}", "--cache-dir", cache]
    res["teach_wall"], _, rc = run([fusellm, "teach", "--job", job, "--source", "neox"] + dirs + common, env)
    if rc != 0:
        return None
    res["offline_wall"], _, rc = run([fusellm, "train", "--job", job, "--no-export", "-q"] + dirs + common + steps, env)
    if rc != 0:
        return None
    res["offline"], _ = step_seconds(os.path.join(out, "metrics.jsonl"))
    return res


def open_mpi_launcher():
    """`mpirun` when it is Open MPI 4 (the library the fusellm binaries link), else None."""
    path = shutil.which("mpirun")
    if not path:
        return None
    r = subprocess.run([path, "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return path if "Open MPI) 4." in r.stdout else None


def pipeline(mpirun, fusellm, job, work, args, env):
    """The MPI job, 1 student + 1 teacher rank; its timeline's summary and the student's step."""
    out = os.path.join(work, "pipeline")
    cmd = [mpirun, "-np", "2", "--oversubscribe", "--bind-to", "none", "-x", "OMP_NUM_THREADS", "-x",
           "OMP_WAIT_POLICY", "-x", "LD_LIBRARY_PATH", fusellm, "train", "--job", job, "--set",
           f"job.output_dir={out}", "--no-export", "-q"] + args
    wall, _, rc = run(cmd, env)
    if rc != 0:
        return None
    _, js, rc = run([fusellm, "timeline", "--dir", out, "--json"], env)
    if rc != 0:
        return None
    summary = json.loads(js)
    st, te = one_rank(summary, "student"), one_rank(summary, "teacher")
    steps = last_metrics(os.path.join(out, "metrics.jsonl"))["step"]
    return dict(wall=wall, step=st["wall"] / steps, student=st, teacher=te, steps=steps,
                wait_rows=phase_total(summary, "student", "wait_rows") / st["wall"],
                wait_credit=phase_total(summary, "teacher", "wait_credit") / te["wall"])


def report(a, one, pipe):
    ms = lambda s: f"{s * 1e3:.1f} ms"
    tokens_per_step = one["tokens"] / one["steps"]
    print(f"online, one process (the teacher in turn): step {ms(one['online'])} (median of steps 3..{one['steps']}), "
          f"{tokens_per_step / one['online']:.0f} tokens/s; wall {one['online_wall']:.1f} s", flush=True)
    print(f"student alone (offline, from the teacher's cache): step {ms(one['offline'])}, "
          f"{tokens_per_step / one['offline']:.0f} tokens/s; teach {one['teach_wall']:.1f} s, "
          f"train {one['offline_wall']:.1f} s")
    share = 1 - one["offline"] / one["online"]
    print(f"share of the one-process online step the student waits on its teacher (1 - alone / online): "
          f"{100 * share:.1f}%; ratio online step / student alone = {one['online'] / one['offline']:.2f}x "
          f"(device {a.device}, size {a.size})")
    if pipe:
        st = pipe["student"]
        print(f"pipeline (mpirun -np 2, a teacher rank and a student rank): step {ms(pipe['step'])}, "
              f"{tokens_per_step / pipe['step']:.0f} tokens/s; wall {pipe['wall']:.1f} s")
        print(f"pipeline student share of its wall: waiting for rows {100 * pipe['wait_rows']:.1f}%, "
              f"communicating {100 * st['comm']:.1f}%, computing {100 * st['compute']:.1f}%; teacher waiting for "
              f"credits {100 * pipe['wait_credit']:.1f}%; ratio pipeline step / one-process step = "
              f"{pipe['step'] / one['online']:.2f}x, / student alone = {pipe['step'] / one['offline']:.2f}x")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fusellm", default=shutil.which("fusellm") or "build/fusellm", help="the fusellm binary")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--size", choices=sorted(SIZES), help="default: gpu with --device cuda, else tiny")
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--limit", type=int, help="corpus segments (default: the size's, enough for 24 steps)")
    ap.add_argument("--launcher", default="auto", choices=["auto", "none"],
                    help="auto: also run the MPI job when an Open MPI 4 mpirun is on the PATH")
    ap.add_argument("--workdir", help="default: a fresh temporary directory, removed at the end")
    a = ap.parse_args()
    a.size = a.size or ("gpu" if a.device == "cuda" else "tiny")
    fusellm = os.path.abspath(a.fusellm)
    work = os.path.abspath(a.workdir) if a.workdir else tempfile.mkdtemp(prefix="fusellm_online_")
    os.makedirs(work, exist_ok=True)
    env = dict(os.environ, OMP_WAIT_POLICY="passive", OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    if os.environ.get("FUSELLM_LD_LIBRARY_PATH"):  # gpu_check: the binaries' library path, not python's
        env["LD_LIBRARY_PATH"] = os.environ["FUSELLM_LD_LIBRARY_PATH"]
    size = SIZES[a.size]
    job = write_job(argparse.Namespace(max_len=size["max_len"], k=10, micro_batch=size["micro_batch"], global_batch=4,
                                       prefetch=2), work)
    common = ["--limit", str(a.limit or size["limit"]), "--set", f"source[0].path={work}/teacher", "--set",
              f"target.path={work}/student", "--set", f"train.device={a.device}"]
    steps = ["--max-steps", str(a.steps)]
    print(f"# {fusellm}: job {job} with {' '.join(common + steps)}; size {a.size}; "
          f"OMP_NUM_THREADS={env.get('OMP_NUM_THREADS', '(unset)')}", flush=True)
    failed = not make_models(fusellm, work, a.size, env)
    one = None if failed else one_process(fusellm, job, work, common, steps, env)
    mpirun = open_mpi_launcher() if a.launcher == "auto" else None
    pipe = pipeline(mpirun, fusellm, job, work, common + steps, env) if one and mpirun else None
    if one:
        report(a, one, pipe)
    if not mpirun:
        print("# no pipeline run: no Open MPI 4 mpirun here (--launcher none, or none on the PATH)")
    if a.workdir:
        print(f"# kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if one is None or (mpirun and pipe is None) else 0


if __name__ == "__main__":
    sys.exit(main())
