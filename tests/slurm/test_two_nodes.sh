#!/usr/bin/env bash
# fusellm across two Slurm nodes on one machine (issue 12, "Several nodes"): two slurmd daemons,
# each in its own network namespace (tests/slurm/netns.sh: a bridge, a veth per node on a private
# 10.77.X.0/24, the node's own hostname), slurmctld in the root namespace on the bridge address
# (tests/slurm/slurm_cluster.sh). The test submits jobs/tiny.toml with two students (4 ranks, 2 per
# node) with slurm/multi_node_cpu.sbatch from the repository root as a user does, and checks that
#  - `sbatch --test-only` places the 4 tasks on n[1-2], and the launcher's dry run prints the srun
#    line and which node each rank (student or teacher) lands on;
#  - the job completes on both nodes (the rank map rank 0 prints names hosts n1 and n2, two ranks
#    each; Open MPI's TCP transport between the namespaces, shared memory within one);
#  - its weights equal, byte for byte, those of a one-node `mpirun -np 4` run of the same job.
# Everything it made goes whatever happens: the daemons by PID and the namespaces, veths and bridge
# by name (an EXIT trap; a watchdog if the test is killed).
#
# Where this machine refuses network namespaces with EPERM (a container without CAP_SYS_ADMIN and
# CAP_NET_ADMIN: `ip netns add` answers "mount --make-shared /run/netns failed: Operation not
# permitted"), the test says so (REFUSED) and checks what needs no second node: --test-only and
# the dry run against a slurmctld that knows both nodes. FUSELLM_REQUIRE_NETNS=1 makes that refusal
# a failure. Any other failure (Slurm does not start, the job fails, the weights differ) fails.
#
# Environment: FUSELLM_BIN (the fusellm binary; ctest passes the build's), KEEP=1 keeps the
# temporary directory (its path is printed).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CLUSTER=$ROOT/tests/slurm/slurm_cluster.sh
NETNS=$ROOT/tests/slurm/netns.sh
export FUSELLM_BIN=${FUSELLM_BIN:-$ROOT/build/fusellm}
export OMP_WAIT_POLICY=passive
JOB=(--job jobs/tiny.toml --set topology.student_ranks=2)
PER_NODE=2
T0=$SECONDS

say() { echo "[test_two_nodes +$((SECONDS - T0))s] $*"; }
fail() {
  echo "[test_two_nodes +$((SECONDS - T0))s] FAIL: $*" >&2
  exit 1
}

TMP=$(mktemp -d /tmp/fusellm-two-nodes.XXXXXX)
DIR=$TMP/cluster
cleanup() {
  "$CLUSTER" stop "$DIR" || echo "[test_two_nodes] stopping the cluster failed (exit $?)" >&2
  if [[ ${KEEP:-} == 1 ]]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
# `stop` (this script's, or the watchdog's once this script is gone) removes the namespaces too.
mkdir -p "$DIR/run"
printf '#!/bin/sh\nexec "%s" down "%s"\n' "$NETNS" "$DIR" >"$DIR/run/on_stop"
chmod +x "$DIR/run/on_stop"
"$CLUSTER" watch "$DIR" $$

WORLD=$(cd "$ROOT" && "$FUSELLM_BIN" plan "${JOB[@]}" --world-size) || fail "fusellm plan refused the job"
((WORLD == 2 * PER_NODE)) || fail "tiny with two students should need $((2 * PER_NODE)) ranks, plan says $WORLD"

# ---- the two nodes ----------------------------------------------------------------------------

mode=netns
rc=0
refusal=$("$NETNS" check 2>&1) || rc=$?
case $rc in
  0) ;;
  3)
    [[ ${FUSELLM_REQUIRE_NETNS:-} != 1 ]] || fail "$refusal (FUSELLM_REQUIRE_NETNS=1)"
    say "$refusal"
    say "REFUSED: no network namespaces on this machine: checking the layout only (--test-only, dry run)"
    mode=layout
    ;;
  *) fail "network namespaces: $refusal" ;;
esac

if [[ $mode == netns ]]; then
  made=$("$NETNS" up "$DIR" n1 n2) || fail "could not make the namespaces: $made"
  eval "$made"  # CTLD_ADDR, NODES
  SLURM_CLUSTER_NODES=$NODES SLURM_CLUSTER_CTLD_ADDR=$CTLD_ADDR \
    SLURM_CLUSTER_SLURMD_WRAP="$NETNS exec $DIR %n" "$CLUSTER" start "$DIR" >/dev/null ||
    fail "Slurm did not start on two nodes (logs: $DIR/log)"
else
  # Both slurmd on loopback, each on its own port: enough for Slurm to schedule and run the batch
  # shell (--test-only refuses nodes whose slurmd never answered: "Requested node configuration is
  # not available"), not for an MPI job across them (one hostname and one network for both: an MPI
  # hello across them died of SIGSEGV in MPI_Allreduce, and hung with OMPI_MCA_btl=self,tcp).
  SLURM_CLUSTER_NODES="n1=127.0.0.1 n2=127.0.0.1" "$CLUSTER" start "$DIR" >/dev/null ||
    fail "Slurm did not start two slurmd on loopback (logs: $DIR/log)"
fi
export SLURM_CONF=$DIR/slurm.conf
export FUSELLM_LOG_DIR=$TMP/logs
mkdir -p "$FUSELLM_LOG_DIR"
say "Slurm up ($mode): $(sinfo -h -N -o '%N %t' | tr '\n' ' ')"

SBATCH=(--nodes=2 --ntasks="$WORLD" --ntasks-per-node="$PER_NODE" --cpus-per-task=1
  --output="$FUSELLM_LOG_DIR/slurm-%j.out" slurm/multi_node_cpu.sbatch)

field() { scontrol show job "$1" -o | tr ' ' '\n' | sed -n "s/^$2=//p"; }

# Submits the job with Slurm's task distribution `dist` (block: ranks 0-1 on n1, the students;
# cyclic: one student and one teacher per node, so ZeRO-1's collectives cross the nodes too) and
# the other sbatch options given; prints the job id.
submit() {
  local dist=$1
  shift
  (cd "$ROOT" && sbatch --parsable --distribution="$dist" "$@" "${SBATCH[@]}" "${JOB[@]}" \
    --set job.output_dir="$TMP/run-$dist") || fail "sbatch refused the job ($dist)"
}

# Until job `id` has ended: COMPLETED with exit 0 on n[1-2], or fail with its output.
wait_done() {
  local id=$1 state out=$FUSELLM_LOG_DIR/slurm-$1.out
  local until=$((SECONDS + 240))
  while state=$(field "$id" JobState) && [[ $state =~ ^(PENDING|CONFIGURING|RUNNING|COMPLETING)$ ]]; do
    ((SECONDS < until)) || fail "job $id still $state after 240 s (logs: $FUSELLM_LOG_DIR, $DIR/log)"
    sleep 0.5
  done
  [[ $state == COMPLETED && $(field "$id" ExitCode) == 0:0 ]] ||
    fail "job $id ended $state, exit $(field "$id" ExitCode); its output:"$'\n'"$(tail -40 "$out")"
  [[ $(field "$id" NodeList) == "n[1-2]" ]] || fail "job $id ran on $(field "$id" NodeList), not n[1-2]"
}

# The rank map in job `id`'s output (rank 0 logs it when the job runs; the dry run prints it with
# the node each rank lands on): its lines, after checking PER_NODE ranks on each node and the
# students' hosts (`students`: "host n1 host n2 ").
rank_map() {
  local id=$1 students=$2 out=$FUSELLM_LOG_DIR/slurm-$1.out map node n
  map=$(grep -A"$WORLD" "rank map:" "$out" | sed 's/^.*rank map:/rank map:/') || fail "no rank map in $out"
  for node in n1 n2; do
    n=$(grep -cE "^  rank [0-9]+ \(host $node\)" <<<"$map" || true)
    ((n == PER_NODE)) || fail "job $id: the rank map has $n ranks on $node, not $PER_NODE:"$'\n'"$map"
  done
  [[ $(grep -E "student" <<<"$map" | grep -oE "host n[0-9]+" | tr '\n' ' ') == "$students" ]] ||
    fail "job $id: the students are not on '$students':"$'\n'"$map"
  echo "$map"
}

declare -A STUDENTS=([block]="host n1 host n1 " [cyclic]="host n1 host n2 ")

# ---- the layout: sbatch --test-only and the launcher's dry run -------------------------------

test_only=$(cd "$ROOT" && sbatch --test-only "${SBATCH[@]}" "${JOB[@]}" 2>&1) || fail "sbatch --test-only: $test_only"
say "$test_only"
[[ $test_only == *"using $WORLD processors on nodes n[1-2]"* ]] ||
  fail "sbatch --test-only does not place $WORLD tasks on n[1-2]: $test_only"

# The dry run is a batch job like any other (the batch shell runs on n1) whose launcher prints the
# srun line and the rank map with each rank's node, and starts no rank.
declare -A DRY
for dist in block cyclic; do
  id=$(FUSELLM_DRY_RUN=1 submit "$dist")
  wait_done "$id"
  grep "dry run: would launch $WORLD ranks with srun ($dist distribution): srun --mpi=pmix" \
    "$FUSELLM_LOG_DIR/slurm-$id.out" || fail "job $id: no dry-run srun line in its output"
  DRY[$dist]=$(rank_map "$id" "${STUDENTS[$dist]}")
  echo "${DRY[$dist]}"
  [[ ! -e $TMP/run-$dist ]] || fail "the dry run of job $id started the job ($TMP/run-$dist exists)"
done

if [[ $mode == layout ]]; then
  say "PASS (layout only; two nodes in network namespaces were refused by this machine, see REFUSED above)"
  exit 0
fi

# ---- the job across both nodes ----------------------------------------------------------------

# One job after the other: two jobs starting and ending together on the same nodes raced in
# Open MPI's shared-memory setup (seen once in CI: the cyclic job's rank 0 died of SIGSEGV right
# after "A system call failed during shared memory initialization ... open(2)", while the block
# job ran beside it; alone it passed 3 of 3), which is not what this test is about.
for dist in block cyclic; do
  id=$(submit "$dist")
  say "submitted job $id ($dist)"
  wait_done "$id"
  map=$(rank_map "$id" "${STUDENTS[$dist]}")
  say "job $id ($dist) COMPLETED on n[1-2]:"
  echo "$map"
  [[ $map == "${DRY[$dist]}" ]] || fail "job $id ($dist): the rank map differs from the dry run's:"$'\n'"${DRY[$dist]}"
done

# The same job on one node under mpirun, outside Slurm: the same weights, byte for byte.
run1=$TMP/run-one-node
(cd "$ROOT" && env -u SLURM_CONF OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 \
  timeout -k 5 240 mpirun --oversubscribe -np "$WORLD" -x OMP_NUM_THREADS -x OMP_WAIT_POLICY \
  "$FUSELLM_BIN" train "${JOB[@]}" --set job.output_dir="$run1" -q >"$run1.log" 2>&1) ||
  fail "the one-node mpirun run failed: $(tail -20 "$run1.log")"
for dist in block cyclic; do
  cmp "$run1/export/model.safetensors" "$TMP/run-$dist/export/model.safetensors" ||
    fail "the two-node job's weights ($dist) differ from the one-node run's ($TMP/run-$dist/export vs $run1/export)"
done
say "same weights on two nodes (block and cyclic) as on one: $(stat -c %s "$run1/export/model.safetensors") bytes of model.safetensors"
say PASS
