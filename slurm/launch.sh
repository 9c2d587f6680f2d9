#!/usr/bin/env bash
# The body of every batch script in slurm/ (one_node.sbatch, multi_node_cpu.sbatch,
# multi_node_gpu.sbatch `exec` it, so it IS the batch shell: Slurm's --signal=B:USR1@<s> lands
# here). Usage, inside an allocation:  slurm/launch.sh --job J [other `fusellm train` options]
#
# What it does, in order (README.md, "Running on a Slurm cluster"):
#  1. refuses a job whose restart count (SLURM_RESTART_COUNT) passed FUSELLM_MAX_RESTARTS;
#  2. refuses, before launching anything, an allocation whose task count (SLURM_NTASKS) is not the
#     number of ranks the job needs (`fusellm plan --world-size`);
#  3. launches one `fusellm train` per task: `srun --mpi=pmix --kill-on-bad-exit=1` where srun
#     knows PMIx (`srun --mpi=list`), else Open MPI's `mpirun` inside the allocation; ranks bound
#     to cores, or one GPU each when the job has GPUs; OMP_NUM_THREADS = SLURM_CPUS_PER_TASK;
#  4. logs the step to logs/fusellm-<job id>.<restart>.log (and to the batch output);
#  5. on SIGUSR1 or SIGTERM forwards SIGUSR1 to the step: every rank finishes its step, the
#     students checkpoint, every rank exits 75 ("checkpointed, requeue me"). SIGUSR1 because both
#     launchers pass it on to every task, where SIGTERM makes srun kill the step and mpirun abort
#     the job (seen with Slurm 22.05 and Open MPI 4.1);
#  6. exit 75: `scontrol requeue $SLURM_JOB_ID` (the job needs --requeue), unless it already ran
#     FUSELLM_MAX_RESTARTS times or this script got SIGTERM (the job is being ended: scancel,
#     preemption, the time limit); the requeued job resumes from <[checkpoint].dir>/latest with no
#     flag. Any other status is passed on and never requeued (1: an error in the input or the run).
#
# Environment: FUSELLM_BIN (default build/fusellm of the submit directory, else `fusellm` on
# PATH), FUSELLM_MAX_RESTARTS (default 10), FUSELLM_LAUNCHER (srun or mpirun: force one),
# FUSELLM_CPU_BIND (cores, or none), FUSELLM_LOG_DIR (default logs), FUSELLM_DRY_RUN=1 (print the
# launch line and where each rank would run, start nothing).
set -euo pipefail

readonly EX_REQUEUE=75  # fusellm train: stopped on SIGUSR1/SIGTERM after a checkpoint

say() { echo "fusellm-slurm: $*" >&2; }
die() {
  say "error: $*"
  exit 1
}

[[ -n ${SLURM_JOB_ID:-} ]] || die "not inside a Slurm job (no SLURM_JOB_ID): submit a script of slurm/ with sbatch"
# sbatch runs a copy of the script from its spool directory, in the directory it was submitted
# from: relative paths (the job file, logs/, build/fusellm) start there.
cd "${SLURM_SUBMIT_DIR:-$PWD}"
if [[ -z ${FUSELLM_BIN:-} ]]; then
  if [[ -x build/fusellm ]]; then FUSELLM_BIN=$PWD/build/fusellm; else FUSELLM_BIN=fusellm; fi
fi
restart=${SLURM_RESTART_COUNT:-0}
max_restarts=${FUSELLM_MAX_RESTARTS:-10}
[[ $max_restarts =~ ^[0-9]+$ ]] || die "FUSELLM_MAX_RESTARTS must be a whole number, found '$max_restarts'"
log_dir=${FUSELLM_LOG_DIR:-logs}
mkdir -p "$log_dir"
log=$log_dir/fusellm-$SLURM_JOB_ID.$restart.log
# Everything from here on, this script's lines and every rank's, goes to the run's own log too.
# tee ignores SIGTERM (an ignored signal stays ignored across exec): when Slurm ends the whole job
# (scancel, the time limit, preemption) it signals every process of the batch step, tee included,
# and the ranks' last lines (their checkpoint) come after that.
exec > >(trap '' TERM INT USR1 && exec tee -a "$log") 2>&1
say "job $SLURM_JOB_ID restart $restart (of at most $max_restarts) on ${SLURM_JOB_NODELIST:-?}: $FUSELLM_BIN train $*"

# SLURM_RESTART_COUNT counts every requeue, this script's own and any other (an admin's
# `scontrol requeue`, a node failure): a job past the bound stops here, before any work.
if ((restart > max_restarts)); then
  die "this job was restarted $restart times, more than FUSELLM_MAX_RESTARTS=$max_restarts: not running it again;" \
    "read the earlier logs ($log_dir/fusellm-$SLURM_JOB_ID.*.log), then submit again (it resumes from the checkpoint)"
fi

# The `--job J` and `--set k=v` options of the train command line, for `fusellm plan`.
plan_args=()
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case ${args[i]} in
    --job | --set) plan_args+=("${args[i]}" "${args[i + 1]:-}") && i=$((i + 1)) ;;
    --job=* | --set=*) plan_args+=("${args[i]}") ;;
  esac
done
((${#plan_args[@]})) || die "no --job: usage: sbatch slurm/one_node.sbatch --job JOB.toml [fusellm train options]"

need=$("$FUSELLM_BIN" plan --world-size "${plan_args[@]}") || die "fusellm plan refused the job (above); nothing launched"
have=${SLURM_NTASKS:-${SLURM_NPROCS:-0}}
if ((have != need)); then
  die "the job needs $need MPI ranks ([topology].student_ranks + [topology].teacher_ranks, where a source's" \
    "teacher_ranks is its [[source]].replicas x [[source]].stages; \`$FUSELLM_BIN plan ${plan_args[*]}\` shows" \
    "the rank map) but this allocation has SLURM_NTASKS=$have tasks: submit with --ntasks=$need" \
    "(and a --nodes/--ntasks-per-node that fit), or change [topology]; nothing launched, not requeued"
fi

# Threads per rank: the CPUs Slurm gave each task (OpenMP and OpenBLAS read OMP_NUM_THREADS).
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}
# GPUs on this node (Slurm sets SLURM_GPUS_ON_NODE and SLURM_JOB_GPUS for a job with GPUs).
gpus=${SLURM_GPUS_ON_NODE:-0}
if ((gpus == 0)) && [[ -n ${SLURM_JOB_GPUS:-} ]]; then gpus=$(tr ',' '\n' <<<"$SLURM_JOB_GPUS" | grep -c .); fi
launcher=${FUSELLM_LAUNCHER:-}
if [[ -z $launcher ]]; then
  if srun --mpi=list 2>&1 | grep -qw pmix; then launcher=srun; else launcher=mpirun; fi
fi
bind=${FUSELLM_CPU_BIND:-cores}

# Each rank first marks that it started (below: Slurm 22.05's srun exits 0 when a step fails to
# launch), then, under mpirun with GPUs, takes its own GPU: its local index into the node's GPUs.
# shellcheck disable=SC2016  # expanded by each rank's shell
wrapper='r=${OMPI_COMM_WORLD_RANK:-${SLURM_PROCID:?}}; : >"$0/rank-$r" || exit 1'
step=()
case $launcher in
  srun)
    # --kill-on-bad-exit: a rank that fails ends the step at once instead of leaving the others
    # waiting for it. Slurm 22.05's srun does not take --cpus-per-task from the batch job's
    # environment: passed on explicitly (srun(1), SLURM_CPUS_PER_TASK).
    step=(srun --mpi=pmix --kill-on-bad-exit=1 --ntasks="$need" --cpus-per-task="$OMP_NUM_THREADS")
    if ((gpus > 0)); then
      step+=(--gpus-per-task=1)  # implies --gpu-bind=per_task:1: CUDA_VISIBLE_DEVICES is the rank's GPU
    elif [[ $bind != none ]]; then
      step+=(--cpu-bind="$bind")
    fi
    ;;
  mpirun)
    # Open MPI reads the allocation from Slurm's environment; as root it needs its two variables.
    step=(mpirun -np "$need" -x OMP_NUM_THREADS)
    if [[ $(id -u) == 0 ]]; then
      export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    fi
    if [[ $bind != none ]]; then step+=(--map-by "slot:PE=$OMP_NUM_THREADS" --bind-to core:overload-allowed); fi
    if ((gpus > 0)); then
      # shellcheck disable=SC2016
      wrapper+='; IFS=, read -ra g <<<"${CUDA_VISIBLE_DEVICES:-}"
        if ((${#g[@]})); then export CUDA_VISIBLE_DEVICES=${g[$OMPI_COMM_WORLD_LOCAL_RANK]}; fi'
    fi
    ;;
  *) die "FUSELLM_LAUNCHER must be srun or mpirun, found '$launcher'" ;;
esac
started=$log_dir/.ranks-$SLURM_JOB_ID.$restart
shown="${step[*]} $FUSELLM_BIN train $*"
step+=(bash -c "$wrapper; exec \"\$@\"" "$started" "$FUSELLM_BIN" train "$@")

# FUSELLM_DRY_RUN=1: print the launch line and the rank map with the node each rank lands on
# (slurm/rank_placement.sh; the same lines rank 0 prints when the job runs), then stop without
# starting any rank: a multi-node script's layout checked before it spends an allocation.
if [[ ${FUSELLM_DRY_RUN:-} == 1 ]]; then
  dist=block
  if [[ $launcher == srun ]]; then dist=${SLURM_DISTRIBUTION:-block}; fi
  hosts=$("$(dirname "${BASH_SOURCE[0]}")/rank_placement.sh" "$need" "$dist" | tr '\n' ' ') || die "no rank placement (above)"
  say "dry run: would launch $need ranks with $launcher ($dist distribution): $shown"
  "$FUSELLM_BIN" plan "${plan_args[@]}" | awk -v hosts="$hosts" '
    BEGIN { split(hosts, h, " ") }
    /^rank map:/ { on = 1 }
    /^launch/ { on = 0 }
    on && /^  rank [0-9]+ / { r = $2; sub(/^  rank [0-9]+/, "  rank " r " (host " h[r + 1] ")") }
    on { print }'
  exit 0
fi

# Exit 75 handled: requeue the job unless it has run out of restarts.
requeue() {
  if ((restart >= max_restarts)); then
    die "fusellm train stopped after a checkpoint (exit $EX_REQUEUE) but this job has already been restarted" \
      "$restart times (FUSELLM_MAX_RESTARTS=$max_restarts): not requeueing it; submit it again to resume from the checkpoint"
  fi
  say "requeueing job $SLURM_JOB_ID (restart $((restart + 1)) of at most $max_restarts); it resumes from the latest checkpoint"
  # Slurm ends this script as soon as the requeue is accepted: nothing may follow it.
  scontrol requeue "$SLURM_JOB_ID" ||
    die "scontrol requeue $SLURM_JOB_ID failed: the job is ending (scancel, its time limit) or was submitted" \
      "without --requeue; submit it again to resume from the checkpoint"
  sleep 60  # the requeue ends this script; were it not to, the job would end as failed below
  die "scontrol requeue returned but the job is still running"
}

step_pid=""
signalled=""
# shellcheck disable=SC2317  # called by the traps
forward() {
  signalled=$1
  [[ -n $step_pid ]] || return 0
  say "got SIG$1: asking every rank to checkpoint and stop (SIGUSR1 to the $launcher step)"
  kill -USR1 "$step_pid" 2>/dev/null || true
}
trap 'forward USR1' USR1
trap 'forward TERM' TERM

# A signal before the launch (Slurm's --signal may come up to a minute early): nothing to save, so
# the job is requeued without starting the ranks (a rank signalled before it has set its handler
# would die of the signal instead of checkpointing).
if [[ -n $signalled ]]; then
  say "got SIG$signalled before launching: not starting the ranks"
  requeue
fi

# One run of the step; sets rc. `wait` returns (status > 128) as soon as a trapped signal arrives;
# the step is still running then, so wait again until it has really ended.
run_step() {
  rm -rf "$started"
  mkdir -p "$started"
  say "launching $need ranks with $launcher, OMP_NUM_THREADS=$OMP_NUM_THREADS: $shown"
  "${step[@]}" &
  step_pid=$!
  while true; do
    rc=0
    wait "$step_pid" || rc=$?
    if ((rc > 128)) && kill -0 "$step_pid" 2>/dev/null; then continue; fi
    break
  done
  step_pid=""
  ranks_started=$(find "$started" -name 'rank-*' | wc -l)
  rm -rf "$started"
}

# A step whose ranks did not all start (a node's slurmd refused it: its log says why) trained
# nothing (a step needs every rank) and is tried again, up to 3 times.
for attempt in 1 2 3; do
  run_step
  if ((ranks_started == need)) || [[ -n $signalled ]]; then break; fi
  say "only $ranks_started of the $need ranks started (the $launcher step exited $rc; launch errors above)"
  if ((attempt < 3)); then
    say "nothing was trained: launching again in 10 s"
    sleep 10
  fi
  [[ -z $signalled ]] || break
done
trap - USR1 TERM
if ((ranks_started < need)); then
  if [[ -n $signalled ]]; then
    say "got SIG$signalled while the ranks were starting"
    requeue
  fi
  die "the $launcher step did not start all $need ranks in 3 tries: not requeueing (see the launch errors above)"
fi

case $rc in
  0) say "done: fusellm train finished (exit 0)" ;;
  "$EX_REQUEUE")
    say "fusellm train stopped after a checkpoint (exit $EX_REQUEUE)"
    # SIGTERM to this script means the job is being ended: scancel, preemption (Slurm requeues a
    # preempted job itself where the cluster's PreemptMode is REQUEUE), the time limit. Requeueing
    # would undo a user's scancel; only the time-limit warning (--signal=B:USR1) or a stop of the
    # ranks alone is requeued.
    if [[ $signalled == TERM ]]; then
      say "not requeueing: this script got SIGTERM (scancel, preemption or the time limit);" \
        "submit the same command again to resume from the checkpoint"
      exit "$rc"
    fi
    requeue
    ;;
  *) say "fusellm train exited $rc: not requeueing (see $log)" ;;
esac
exit "$rc"
