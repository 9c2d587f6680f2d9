#!/usr/bin/env python3
"""The overlap benchmark of the MPI job (issue 11, "What it must show", Overlap). Python stdlib only;
it builds nothing: give it the fusellm binary.

    python3 benchmarks/bench_online_overlap.py build/fusellm [--rounds 2] [--limit 320] [--max-len 256]
        [--micro-batch 1] [--global-batch 4] [--prefetch 2] [--workdir DIR (kept)]

The job (written to WORKDIR/job.toml, derived from jobs/tiny.toml): ONE source, the demo GPT-NeoX
(examples/demo/neox), teaching the demo Llama (examples/demo/llama, [target].path), so the MPI job
is one teacher rank and one student rank. The two demo models are of a size (4 layers, hidden
128, vocabulary 8192), so a teacher's forward + top-k + alignment of a micro-batch's segments and
the student's forward + backward of the micro-batch's packed sequences take similar time (the
teacher runs whole segments, a micro-batch's sequences cut them; see RESULTS.md). One epoch over
the first --limit corpus segments (no max_steps), so the online teacher and `teach` cover the same
data.

Three runs, one after the other, each process single-threaded (OMP_NUM_THREADS=1):
  online   mpirun -np 2 --map-by core --bind-to core fusellm train --job J  (one core per rank)
  teach    fusellm teach --job J --source neox --cache-dir C     (taskset -c 0; the original's way)
  train    fusellm train --job J --cache-dir C                   (taskset -c 0)
Printed, from the online run's per-rank timeline (`fusellm timeline --dir D --json`):
  step time        the student rank's wall time (its first to its last event) / optimizer steps
  own time alone   per side, per step: its wall less its waits (teacher: wait_credit; student:
                   wait_rows), i.e. what it would take with the other side infinitely fast; also the
                   compute phase alone (teacher_forward; student_compute)
  overlap ratio    step time / the slower side's own time (target <= 1.15)
  total time       the online job's wall time (mpirun, start-up included) against teach + train
  bytes per token  the teacher's send bytes / target tokens trained (metrics.jsonl), per source
                   (target <= 6 k + 64)
Exit status 0 whatever the numbers (a benchmark, not a test); 1 when a run fails.
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
DEMO = os.path.join(ROOT, "examples", "demo")

JOB = """# The overlap benchmark's job (benchmarks/bench_online_overlap.py), from jobs/tiny.toml: one
# source (the demo GPT-NeoX) teaching the demo Llama, so the MPI job is 1 teacher + 1 student.
[job]
name = "overlap"
seed = 42
output_dir = "{work}/online"

[[source]]
name = "neox"
path = "{demo}/neox"

[target]
path = "{demo}/llama"

[corpus]
path = "{demo}/corpus.jsonl"
max_len = {max_len}
margin = 16

[distill]
top_k = {k}
alignment = "mined"
fusion = "minCE"
lambda = 0.9

[optim]
lr = 1e-4
schedule = "cosine"
warmup_steps = 2

[train]
micro_batch = {micro_batch}
global_batch = {global_batch}
epochs = 1
log_interval = 1
dtype = "fp32"

[checkpoint]
interval = 0
keep = 1

[topology]
student_ranks = 1
prefetch = {prefetch}
"""


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(cmd, env):
    """Runs cmd; (wall seconds, CPU seconds of it and its descendants, output). Exits with its
    output when it fails."""
    t0, c0 = time.monotonic(), children_cpu()
    r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    dt, cpu = time.monotonic() - t0, children_cpu() - c0
    if r.returncode != 0:
        sys.stderr.write(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stdout}")
        sys.exit(1)
    return dt, cpu, r.stdout


def last_metrics(path):
    with open(path, encoding="utf-8") as f:
        lines = [json.loads(l) for l in f if l.strip()]
    return [l for l in lines if "step" in l][-1]


def phase_total(summary, role, phase):
    return sum(p["total"] for p in summary["phases"] if p["role"] == role and p["phase"] == phase)


def one_rank(summary, role):
    ranks = [r for r in summary["ranks"] if r["role"] == role]
    if len(ranks) != 1:
        sys.exit(f"expected one {role} rank in the timeline, found {len(ranks)}")
    return ranks[0]


# Run under mpirun around each rank: runs argv[2:], writes its CPU seconds (user + system) to
# argv[1]/cpu.rank<world rank>, exits with its status.
RANK_CPU = """import os, resource, subprocess, sys
rc = subprocess.run(sys.argv[2:]).returncode
r = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(os.path.join(sys.argv[1], "cpu.rank" + os.environ["OMPI_COMM_WORLD_RANK"]), "w") as f:
    f.write(str(r.ru_utime + r.ru_stime))
sys.exit(rc)
"""


def write_job(a, work):
    job = os.path.join(work, "job.toml")
    with open(job, "w", encoding="utf-8") as f:
        f.write(JOB.format(work=work, demo=DEMO, max_len=a.max_len, k=a.k, micro_batch=a.micro_batch,
                           global_batch=a.global_batch, prefetch=a.prefetch))
    return job


def online(fusellm, job, work, limit, env):
    """The MPI job, 1 teacher + 1 student, a core each; its wall and CPU seconds, its timeline's
    summary, its last metrics line, and mpirun's report of the binding."""
    shutil.rmtree(os.path.join(work, "online"), ignore_errors=True)
    mpirun = ["mpirun", "-np", "2", "--map-by", "core", "--bind-to", "core", "--report-bindings",
              "-x", "OMP_NUM_THREADS", "-x", "OMP_WAIT_POLICY", "-x", "OMP_PROC_BIND"]
    wall, cpu, out = run(mpirun + [sys.executable, "-c", RANK_CPU, work, fusellm, "train", "--job", job] + limit, env)
    binding = [l.strip()[:120] for l in out.splitlines() if "bound to" in l]
    _, _, js = run([fusellm, "timeline", "--dir", os.path.join(work, "online"), "--json"], env)
    rank_cpu = {}
    for rank in (0, 1):
        with open(os.path.join(work, f"cpu.rank{rank}"), encoding="utf-8") as f:
            rank_cpu[rank] = float(f.read())
    return wall, rank_cpu, json.loads(js), last_metrics(os.path.join(work, "online", "metrics.jsonl")), binding


def offline(fusellm, job, work, limit, env):
    """teach, then train from the cache, one process each on core 0: (wall, CPU) of each."""
    for d in ("offline", "cache"):
        shutil.rmtree(os.path.join(work, d), ignore_errors=True)
    pin = ["taskset", "-c", "0"]
    dirs = ["--set", f"job.output_dir={work}/offline", "--cache-dir", os.path.join(work, "cache")]
    teach = run(pin + [fusellm, "teach", "--job", job, "--source", "neox"] + dirs + limit, env)[:2]
    train = run(pin + [fusellm, "train", "--job", job] + dirs + limit, env)[:2]
    return teach, train


def report(a, on, off):
    """The round's lines: each side's own time, the overlap ratio, the totals, the bytes."""
    t_online, rank_cpu, summary, metrics, _ = on
    (t_teach, c_teach), (t_train, c_train) = off
    steps, tokens = metrics["step"], metrics["tokens"]
    st, te = one_rank(summary, "student"), one_rank(summary, "teacher")
    wait_rows, wait_credit = phase_total(summary, "student", "wait_rows"), phase_total(summary, "teacher", "wait_credit")
    step_time = st["wall"] / steps
    # Own time alone, per step: a side's wall less its waits; and its compute phase alone.
    st_alone, te_alone = (st["wall"] - wait_rows) / steps, (te["wall"] - wait_credit) / steps
    st_compute = phase_total(summary, "student", "student_compute") / steps
    te_compute = phase_total(summary, "teacher", "teacher_forward") / steps
    slower = max(st_alone, te_alone)
    ms = lambda s: f"{s * 1e3:6.1f} ms"
    print(f"  teacher  own {ms(te_alone)}/step (teacher_forward {ms(te_compute)}), wall {te['wall']:.2f} s, "
          f"wait_credit {wait_credit:.2f} s")
    print(f"  student  own {ms(st_alone)}/step (student_compute {ms(st_compute)}), wall {st['wall']:.2f} s, "
          f"wait_rows {wait_rows:.2f} s")
    print(f"  own time teacher/student {te_alone / st_alone:.2f} (compute phases {te_compute / st_compute:.2f})")
    print(f"  step time {ms(step_time)} = {step_time / slower:.3f} x the slower side's own "
          f"({'teacher' if te_alone >= st_alone else 'student'}; <= 1.15: "
          f"{'met' if step_time <= 1.15 * slower else 'NOT met'})")
    print(f"  wall: online {t_online:.1f} s; teach {t_teach:.1f} + train {t_train:.1f} = {t_teach + t_train:.1f} s;"
          f" online / (teach + train) = {t_online / (t_teach + t_train):.3f}")
    # CPU seconds: what each process computed, whatever else ran on the machine. On an idle machine
    # the online job's wall is about its busier rank's, the offline one's teach's + train's.
    c_st, c_te = rank_cpu[st["rank"]], rank_cpu[te["rank"]]
    print(f"  cpu:  online teacher {c_te:.1f} + student {c_st:.1f} s; teach {c_teach:.1f} + train {c_train:.1f} s; "
          f"teacher / teach = {c_te / c_teach:.2f}, student / train = {c_st / c_train:.2f}; "
          f"max(teacher, student) / (teach + train) = {max(c_te, c_st) / (c_teach + c_train):.3f}")
    sent, bound, per_pos = te["bytes_sent"], 6 * a.k + 64, 6 * a.k + 5
    messages = steps * a.global_batch // a.micro_batch
    positions = (sent - 96 * messages) / per_pos  # less 60 bytes per segment sent: an upper bound
    print(f"  bytes sent {sent} / {tokens} target tokens / 1 source = {sent / tokens:.1f} per token "
          f"(<= 6 k + 64 = {bound}: {'met' if sent / tokens <= bound else 'NOT met'}); target positions sent "
          f"<= {positions:.0f} = {positions / tokens:.2f} x those trained")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("fusellm", help="the fusellm binary")
    ap.add_argument("--limit", type=int, default=320, help="corpus segments (one epoch over them)")
    ap.add_argument("--max-len", type=int, default=256)
    ap.add_argument("--micro-batch", type=int, default=1)
    ap.add_argument("--global-batch", type=int, default=4)
    ap.add_argument("--prefetch", type=int, default=2)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2, help="online and offline runs, alternating which goes first")
    ap.add_argument("--workdir", help="default: a fresh temporary directory, removed at the end")
    a = ap.parse_args()
    fusellm = os.path.abspath(a.fusellm)
    work = os.path.abspath(a.workdir) if a.workdir else tempfile.mkdtemp(prefix="fusellm_overlap_")
    os.makedirs(work, exist_ok=True)
    job = write_job(a, work)
    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="passive", OMP_PROC_BIND="false",
               OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    limit = ["--limit", str(a.limit), "-q"]
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"# {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}  {cpu}, {os.cpu_count()} cores")
    print(f"# job {job}: source neox -> target llama, {a.limit} segments, max_len {a.max_len}, "
          f"micro_batch {a.micro_batch}, global_batch {a.global_batch}, k {a.k}, prefetch {a.prefetch}")
    for r in range(a.rounds):
        load = " ".join(open("/proc/loadavg").read().split()[:3])
        if r % 2 == 0:
            on = online(fusellm, job, work, limit, env)
            off = offline(fusellm, job, work, limit, env)
        else:
            off = offline(fusellm, job, work, limit, env)
            on = online(fusellm, job, work, limit, env)
        if r == 0:
            for line in on[4]:
                print("# " + line)
        m = on[3]
        print(f"round {r + 1} ({'online' if r % 2 == 0 else 'offline'} first; load average {load}): "
              f"{m['step']} steps, {m['tokens']} target tokens, "
              f"{m['step'] * a.global_batch // a.micro_batch} micro-batches")
        report(a, on, off)
    if a.workdir:
        print(f"# kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
