#!/usr/bin/env bash
# fusellm under a real Slurm (issue 12): starts slurmctld + slurmd on loopback
# (tests/slurm/slurm_cluster.sh, state and logs in a temporary directory, stopped by PID when this
# script ends however it ends: an EXIT trap, and a watchdog for a kill -9), submits jobs/tiny.toml
# with the batch scripts of slurm/ from the repository root as README.md shows, and checks the
# job's own logs. If Slurm cannot start, the test fails.
#
#   tests/slurm/test_slurm.sh requeue     `scontrol requeue` mid-run: the second run resumes from a
#                                         checkpoint and ends with the weights of an uninterrupted
#                                         `mpirun -np 3` run (the exported safetensors, byte for byte)
#   tests/slurm/test_slurm.sh preempt     `--time=1 --signal=B:USR1@20`: the batch shell forwards
#                                         SIGUSR1, the ranks checkpoint and exit 75, the script
#                                         requeues itself; the job ends with the same weights
#   tests/slurm/test_slurm.sh bad_input   refused before training, never requeued: a topology
#                                         larger than the allocation, a checkpoint directory that
#                                         cannot be written, a job file changed before the requeued
#                                         run, and a job past FUSELLM_MAX_RESTARTS
#
# Environment: FUSELLM_BIN (the fusellm binary; ctest passes the build's), KEEP=1 keeps the
# temporary directory (its path is printed).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CLUSTER=$ROOT/tests/slurm/slurm_cluster.sh
export FUSELLM_BIN=${FUSELLM_BIN:-$ROOT/build/fusellm}
export OMP_WAIT_POLICY=passive
T0=$SECONDS

say() { echo "[test_slurm +$((SECONDS - T0))s] $*"; }
fail() {
  echo "[test_slurm +$((SECONDS - T0))s] FAIL: $*" >&2
  exit 1
}

# ---- the cluster -----------------------------------------------------------------------------

TMP=$(mktemp -d /tmp/fusellm-slurm-test.XXXXXX)
NUDGER=""
REF_PID=""
cleanup() {
  if [[ -n $NUDGER ]]; then kill "$NUDGER" 2>/dev/null || true; fi
  # The reference run (timeout passes TERM on to mpirun, which ends its ranks), before its
  # directory goes.
  if [[ -n $REF_PID ]]; then
    kill -TERM "$REF_PID" 2>/dev/null || true
    wait "$REF_PID" 2>/dev/null || true
  fi
  "$CLUSTER" stop "$TMP/cluster" || true
  if [[ ${KEEP:-} == 1 ]]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
"$CLUSTER" start "$TMP/cluster" --watch $$ >/dev/null || fail "Slurm did not start (logs: $TMP/cluster/log)"
export SLURM_CONF=$TMP/cluster/slurm.conf
# The job's own logs and Slurm's batch output go to this test's directory, not the repository's logs/.
export FUSELLM_LOG_DIR=$TMP/logs
mkdir -p "$FUSELLM_LOG_DIR"
say "Slurm up: $(sinfo -h -o '%N %C %t'), SLURM_CONF=$SLURM_CONF"

field() { scontrol show job "$1" -o | tr ' ' '\n' | sed -n "s/^$2=//p"; }

# Submits from the repository root, as a user does; prints the job id.
submit() {
  (cd "$ROOT" && sbatch --parsable --output="$FUSELLM_LOG_DIR/slurm-%j.out" "$@") || fail "sbatch $* refused"
}

# A requeued job waits for BeginTime (AuthInfo cred_expire, 120 s) before it may run again;
# `scontrol update StartTime=now` starts it at once. Not too soon: 2 s after the requeue (as
# TOOLCHAIN.md has it) the new run's step can still meet the old step's slurmstepd (seen here: its
# PMIx socket, spool/<node>/stepd.slurm.pmix.<job>.0, "Address already in use"); 5 s was enough.
# This loop does that for every job of the test, in the background, as a cluster with a short
# cred_expire would.
nudger() {
  declare -A since
  local id reason
  while true; do
    while read -r id reason; do
      [[ $reason == BeginTime ]] || continue
      since[$id]=$((${since[$id]:-0} + 1))
      if ((since[$id] == 20)); then
        scontrol update JobId="$id" StartTime=now || true
        unset "since[$id]"
      fi
    done < <(squeue -h -t PD -o '%i %r' 2>/dev/null)
    sleep 0.25
  done
}
nudger &
NUDGER=$!

# Until the job has ended (any final state); prints the state.
wait_end() {
  local id=$1 limit=$2 state
  local until=$((SECONDS + limit))
  while ((SECONDS < until)); do
    state=$(field "$id" JobState)
    case $state in
      COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE)
        echo "$state"
        return 0
        ;;
    esac
    sleep 0.25
  done
  fail "job $id did not end within $limit s (state $state); logs in $FUSELLM_LOG_DIR"
}

# Until `file` has a line matching `pattern` (grep -E), or fail.
wait_line() {
  local file=$1 pattern=$2 limit=$3
  local until=$((SECONDS + limit))
  while ((SECONDS < until)); do
    if [[ -f $file ]] && grep -qE "$pattern" "$file"; then return 0; fi
    sleep 0.2
  done
  fail "no line /$pattern/ in $file within $limit s"
}

log_of() { echo "$FUSELLM_LOG_DIR/fusellm-$1.$2.log"; }

expect_line() {
  grep -qE "$2" "$1" || fail "$1 has no line /$2/; it reads:"$'\n'"$(tail -30 "$1")"
}

# The uninterrupted reference, started in the background (REF_PID): the same job under mpirun,
# outside Slurm, from the repository root.
start_reference() {
  local out=$1
  shift
  (cd "$ROOT" && exec env -u SLURM_CONF OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 \
    timeout -k 5 300 mpirun --oversubscribe -np 3 -x OMP_NUM_THREADS -x OMP_WAIT_POLICY \
    "$FUSELLM_BIN" train --job jobs/tiny.toml --set job.output_dir="$out" "$@" >"$out.log" 2>&1) &
  REF_PID=$!
}

wait_reference() {
  wait "$REF_PID" || fail "the reference run failed: $(tail -5 "$TMP/ref.log")"
  REF_PID=""
}

same_weights() {
  local ref=$1 run=$2
  cmp "$ref/export/model.safetensors" "$run/export/model.safetensors" ||
    fail "the resumed job's weights differ from the uninterrupted run's ($ref/export vs $run/export)"
  say "same weights as the uninterrupted run: $run/export/model.safetensors = $ref/export/model.safetensors" \
    "($(stat -c %s "$run/export/model.safetensors") bytes)"
}

# ---- the cases -------------------------------------------------------------------------------

case_requeue() {
  local settings=(--set checkpoint.interval=2)
  start_reference "$TMP/ref" "${settings[@]}"
  # 0.4 s per micro-batch: about 35 s in all, so the requeue lands mid-run.
  local id
  id=$(FUSELLM_TEST_STUDENT_DELAY_MS=400 submit slurm/one_node.sbatch --job jobs/tiny.toml \
    --set job.output_dir="$TMP/run" "${settings[@]}")
  say "submitted job $id"
  wait_line "$(log_of "$id" 0)" '^step 7/20' 120
  say "job $id at step 7 (checkpoints every 2 steps): scontrol requeue $id"
  scontrol requeue "$id"
  local state
  state=$(wait_end "$id" 180)
  [[ $state == COMPLETED ]] || fail "job $id ended $state; logs in $FUSELLM_LOG_DIR"
  [[ $(field "$id" Restarts) == 1 ]] || fail "job $id restarted $(field "$id" Restarts) times, expected 1"
  local second
  second=$(log_of "$id" 1)
  expect_line "$second" 'train: resumed from .*\(step [1-9][0-9]*'
  expect_line "$second" 'fusellm-slurm: done'
  say "second run: $(grep -oE 'train: resumed from .*' "$second")"
  wait_reference
  same_weights "$TMP/ref" "$TMP/run"
}

case_preempt() {
  local settings=(--set checkpoint.interval=2 --set train.max_steps=40)
  start_reference "$TMP/ref" "${settings[@]}"
  # About 50 s of work uninterrupted. Slurm checks time limits every 30 s or so: SIGUSR1 "20 s
  # before the 1-minute limit" came 5 to 48 s into a run here, the limit itself at 60 to 90 s. So
  # every run is stopped (or finishes) before its limit, and the first one always mid-run.
  local id
  id=$(FUSELLM_TEST_STUDENT_DELAY_MS=400 submit --time=1 --signal=B:USR1@20 slurm/one_node.sbatch \
    --job jobs/tiny.toml --set job.output_dir="$TMP/run" "${settings[@]}")
  say "submitted job $id (--time=1 --signal=B:USR1@20)"
  local state
  state=$(wait_end "$id" 400)
  [[ $state == COMPLETED ]] || fail "job $id ended $state; logs in $FUSELLM_LOG_DIR"
  local restarts
  restarts=$(field "$id" Restarts)
  ((restarts >= 1)) || fail "job $id was never requeued (Restarts=$restarts): the signal came after the end?"
  expect_line "$(log_of "$id" 0)" 'got SIGUSR1'
  expect_line "$(log_of "$id" 0)" 'exit 75\)'
  expect_line "$(log_of "$id" 0)" 'requeueing job'
  expect_line "$(log_of "$id" 1)" 'train: resumed from .*\(step [1-9][0-9]*'
  say "preempted $restarts times; $(grep -ohE 'train: resumed from .*' "$FUSELLM_LOG_DIR"/fusellm-"$id".*.log | tr '\n' ';')"
  wait_reference
  same_weights "$TMP/ref" "$TMP/run"
}

# A job that must end FAILED, without having been requeued more than `restarts` times, with
# `message` in its last run's log.
expect_refused() {
  local id=$1 restarts=$2 message=$3 state
  state=$(wait_end "$id" 120)
  [[ $state == FAILED ]] || fail "job $id ended $state, expected FAILED"
  [[ $(field "$id" Restarts) == "$restarts" ]] ||
    fail "job $id restarted $(field "$id" Restarts) times, expected $restarts"
  expect_line "$(log_of "$id" "$restarts")" "$message"
  say "job $id refused ($(field "$id" ExitCode)), restarts $restarts: $(grep -hE "$message" "$(log_of "$id" "$restarts")" | head -1 | cut -c1-300)"
}

case_bad_input() {
  # 1. A topology larger than the allocation (4 ranks, 3 tasks): the launcher refuses.
  local big
  big=$(submit --ntasks=3 slurm/one_node.sbatch --job jobs/tiny.toml --set topology.student_ranks=2 \
    --set job.output_dir="$TMP/big")
  # 2. A checkpoint directory that cannot be made (under a regular file; root may write anywhere else).
  touch "$TMP/not-a-dir"
  local ckpt
  ckpt=$(submit slurm/one_node.sbatch --job jobs/tiny.toml --set job.output_dir="$TMP/ckpt" \
    --set checkpoint.dir="$TMP/not-a-dir/checkpoints")
  # 3. The job file changes between the runs so that the checkpoint is another job's. A copy of
  # tiny.toml with its relative paths made absolute, so that it can live in the test's directory.
  sed "s|\"\.\./|\"$ROOT/|" "$ROOT/jobs/tiny.toml" >"$TMP/changed.toml"
  local changed
  # (200 steps: far more than the test waits for, so that these jobs are still running, however
  # slow the machine, when the test requeues them.)
  changed=$(FUSELLM_TEST_STUDENT_DELAY_MS=400 submit slurm/one_node.sbatch --job "$TMP/changed.toml" \
    --set job.output_dir="$TMP/changed" --set checkpoint.interval=2 --set train.max_steps=200)
  # 4. FUSELLM_MAX_RESTARTS=1 and two requeues: the third run refuses to start.
  local bounded
  bounded=$(FUSELLM_MAX_RESTARTS=1 FUSELLM_TEST_STUDENT_DELAY_MS=400 submit slurm/one_node.sbatch \
    --job jobs/tiny.toml --set job.output_dir="$TMP/bounded" --set train.max_steps=200)
  say "submitted: too big $big, checkpoint dir $ckpt, changed job file $changed, max restarts $bounded"

  expect_refused "$big" 0 'the job needs 4 MPI ranks \(\[topology\]\.student_ranks .* SLURM_NTASKS=3'
  expect_refused "$ckpt" 0 '\[checkpoint\]\.dir: cannot create the directory'

  wait_line "$(log_of "$changed" 0)" '^step 3/200' 120
  sed -i 's/^lambda = 0.9/lambda = 0.5/' "$TMP/changed.toml"
  scontrol requeue "$changed"
  expect_refused "$changed" 1 'lambda'

  wait_line "$(log_of "$bounded" 0)" '^step 1/' 120
  scontrol requeue "$bounded"
  wait_line "$(log_of "$bounded" 1)" '^step 1/' 120
  scontrol requeue "$bounded"
  expect_refused "$bounded" 2 'restarted 2 times, more than FUSELLM_MAX_RESTARTS=1'
}

case ${1:-} in
  requeue) case_requeue ;;
  preempt) case_preempt ;;
  bad_input) case_bad_input ;;
  *) fail "usage: test_slurm.sh requeue|preempt|bad_input" ;;
esac
say "PASS ($1)"
