#!/usr/bin/env bash
# A throw-away Slurm cluster for tests: Debian's slurmctld + slurmd (22.05), configuration, state,
# spool and logs all under one directory, no munge (auth/none + cred/none), stopped by the PIDs in
# its pid files. TOOLCHAIN.md, "Slurm 22.05 on one machine", has the facts this relies on.
#
#   slurm_cluster.sh start DIR [--watch PID]   write DIR/slurm.conf, start slurmctld and one slurmd
#                                              per node, wait until every node is idle; with
#                                              --watch, a watchdog stops the cluster once PID is
#                                              gone (a test killed with -9 leaves no daemon behind)
#   slurm_cluster.sh stop DIR                  cancel every job, stop the daemons by PID, kill what
#                                              the cluster started that is still running
#   slurm_cluster.sh conf DIR                  only write DIR/slurm.conf (and make the directories)
#   slurm_cluster.sh ctld DIR                  only start slurmctld
#   slurm_cluster.sh slurmd DIR NODE [CMD...]  only start NODE's slurmd, under CMD if given (e.g.
#                                              `tests/slurm/netns.sh exec DIR n1`: a node in a
#                                              network namespace; not `ip netns exec`, netns.sh
#                                              says why)
#   slurm_cluster.sh wait DIR                  until every node is idle (or fail after 30 s)
#   slurm_cluster.sh watch DIR PID             only start the watchdog (before the nodes exist:
#                                              a test that makes them first, e.g. namespaces)
#
# `stop` ends by running DIR/run/on_stop if it is executable: what a test made for the cluster
# besides the daemons (tests/slurm/netns.sh's namespaces) goes with it, the watchdog's stop too.
#
# Clients need `export SLURM_CONF=DIR/slurm.conf` (start prints that line on stdout).
#
# Settings (environment):
#   SLURM_CLUSTER_NODES        "name=addr[:port] ..." (default "localhost=127.0.0.1"); nodes that
#                              share an address need their own port (a free one when not given)
#   SLURM_CLUSTER_CTLD_ADDR    slurmctld's address (default 127.0.0.1)
#   SLURM_CLUSTER_CTLD_PORT    slurmctld's port (default: a free one)
#   SLURM_CLUSTER_SLURMD_PORT  the slurmd port of nodes without their own (default: a free one)
#   SLURM_CLUSTER_FIRST_JOB_ID the first job id (default: slurmctld's port x 1000)
#   SLURM_CLUSTER_CPUS         CPUs each node offers (default 8: more tasks than this machine's
#                              cores; SlurmdParameters=config_overrides lets a node claim them)
#   SLURM_CLUSTER_CRED_EXPIRE  seconds a requeued job waits before it may start again (AuthInfo
#                              cred_expire; Slurm's default 120)
#   SLURM_CLUSTER_EXTRA        more slurm.conf lines, appended verbatim
#   SLURM_CLUSTER_SLURMD_WRAP  a command `start` runs each slurmd under, %n replaced by the node's
#                              name (e.g. "tests/slurm/netns.sh exec DIR %n")
#   SLURM_CLUSTER_NODE_EXTRA   more NodeName settings, appended to every node's line (Gres=gpu:4)
#   SLURM_CLUSTER_GRES         gres.conf's lines (e.g. fake GPUs: "Name=gpu File=DIR/dev/nvidia[0-3]")
set -euo pipefail

die() {
  echo "slurm_cluster.sh: $*" >&2
  exit 1
}

# A TCP port nothing listens on (a test's cluster must not meet another test's or a helper's).
free_port() {
  local p
  for _ in $(seq 200); do
    p=$((20000 + RANDOM % 20000))
    if ! ss -Hltn "sport = :$p" | grep -q .; then
      echo "$p"
      return
    fi
  done
  die "no free TCP port found"
}

nodes() { echo "${SLURM_CLUSTER_NODES:-localhost=127.0.0.1}"; }

write_conf() {
  local dir=$1
  mkdir -p "$dir"/{state,spool,log,run}
  local ctld_port=${SLURM_CLUSTER_CTLD_PORT:-$(free_port)}
  local slurmd_port=${SLURM_CLUSTER_SLURMD_PORT:-$(free_port)}
  local cpus=${SLURM_CLUSTER_CPUS:-8}
  local names=() spec name addr port seen=" "
  {
    echo "# written by tests/slurm/slurm_cluster.sh"
    echo "ClusterName=fusellmtest"
    echo "SlurmctldHost=localhost(${SLURM_CLUSTER_CTLD_ADDR:-127.0.0.1})"
    echo "SlurmctldPort=$ctld_port"
    # Job ids unique across the clusters on this machine: Open MPI names its shared-memory segments
    # after the PMIx namespace, slurm.pmix.<job>.<step>, so two clusters' job 1 on one machine
    # would map each other's segments (seen: every rank of both jobs died of SIGSEGV in the vader
    # transport). The ctld port is unique among running clusters.
    echo "FirstJobId=${SLURM_CLUSTER_FIRST_JOB_ID:-$((ctld_port * 1000))}"
    echo "SlurmdPort=$slurmd_port"
    echo "SlurmUser=root"
    echo "SlurmdUser=root"
    echo "AuthType=auth/none"
    echo "CredType=cred/none"
    echo "AuthInfo=cred_expire=${SLURM_CLUSTER_CRED_EXPIRE:-120}"
    echo "MpiDefault=pmix"
    echo "ProctrackType=proctrack/linuxproc"
    echo "TaskPlugin=task/none"
    echo "JobAcctGatherType=jobacct_gather/none"
    echo "AccountingStorageType=accounting_storage/none"
    echo "SelectType=select/cons_tres"
    echo "SelectTypeParameters=CR_Core"
    echo "SlurmdParameters=config_overrides"
    echo "ReturnToService=2"
    echo "StateSaveLocation=$dir/state"
    # %n: one spool, pid file and log per node (several slurmd may share this directory).
    echo "SlurmdSpoolDir=$dir/spool/%n"
    echo "SlurmctldPidFile=$dir/run/slurmctld.pid"
    echo "SlurmdPidFile=$dir/run/slurmd.%n.pid"
    echo "SlurmctldLogFile=$dir/log/slurmctld.log"
    echo "SlurmdLogFile=$dir/log/slurmd.%n.log"
    echo "SlurmctldDebug=info"
    echo "SlurmdDebug=info"
    # Jobs end fast in tests; the state of finished jobs is kept a while for scontrol show job.
    echo "MinJobAge=600"
    echo "KillWait=10"
    for spec in $(nodes); do
      name=${spec%%=*}
      addr=${spec#*=}
      port=""
      if [[ $addr == *:* ]]; then
        port=" Port=${addr#*:}"
        addr=${addr%%:*}
      elif [[ $seen == *" $addr "* ]]; then
        port=" Port=$(free_port)"  # a second slurmd on one address: its own port
      fi
      seen+="$addr "
      names+=("$name")
      mkdir -p "$dir/spool/$name"
      echo "NodeName=$name NodeAddr=$addr CPUs=$cpus RealMemory=1000 State=UNKNOWN$port${SLURM_CLUSTER_NODE_EXTRA:+ $SLURM_CLUSTER_NODE_EXTRA}"
    done
    echo "PartitionName=debug Nodes=$(IFS=,; echo "${names[*]}") Default=YES MaxTime=INFINITE State=UP"
    if [[ -n ${SLURM_CLUSTER_EXTRA:-} ]]; then echo "$SLURM_CLUSTER_EXTRA"; fi
  } >"$dir/slurm.conf"
  # PMIx's per-step client directories are named by user, job and step id only
  # (/tmp/spmix_appdir_<uid>_<job>.<step>): two test clusters both at job 1 would collide
  # ("Cannot create directory ... File exists"), so each cluster keeps its own, and each node
  # (start_slurmd) its own within it.
  mkdir -p "$dir/pmix"
  echo "PMIxCliTmpDirBase=$dir/pmix" >"$dir/mpi.conf"
  if [[ -n ${SLURM_CLUSTER_GRES:-} ]]; then echo "$SLURM_CLUSTER_GRES" >"$dir/gres.conf"; fi
}

start_ctld() {
  local dir=$1
  FUSELLM_SLURM_CLUSTER=$dir SLURM_CONF=$dir/slurm.conf slurmctld -f "$dir/slurm.conf" ||
    die "slurmctld did not start; its log: $dir/log/slurmctld.log"
}

# Each slurmd reads slurm.conf through its own directory, DIR/node/<name>/, whose mpi.conf gives the
# node its own PMIx client directory: slurmd reads mpi.conf beside the slurm.conf it was given,
# and nodes sharing one machine (and /tmp) would otherwise collide at their first job step.
start_slurmd() {
  local dir=$1 node=$2
  shift 2
  local conf_dir=$dir/node/$node
  mkdir -p "$conf_dir" "$dir/pmix/$node"
  ln -sf ../../slurm.conf "$conf_dir/slurm.conf"
  if [[ -f $dir/gres.conf ]]; then ln -sf ../../gres.conf "$conf_dir/gres.conf"; fi
  echo "PMIxCliTmpDirBase=$dir/pmix/$node" >"$conf_dir/mpi.conf"
  FUSELLM_SLURM_CLUSTER=$dir SLURM_CONF=$dir/slurm.conf "$@" slurmd -f "$conf_dir/slurm.conf" -N "$node" ||
    die "slurmd of node $node did not start; its log: $dir/log/slurmd.$node.log"
}

# Every node idle (sinfo's compact state), or fail naming the logs.
wait_idle() {
  local dir=$1 states
  for _ in $(seq 300); do
    states=$(SLURM_CONF=$dir/slurm.conf sinfo -h -N -o '%t' 2>/dev/null | sort -u | tr '\n' ' ') || true
    if [[ $states == "idle " ]]; then return 0; fi
    sleep 0.1
  done
  die "the nodes are not idle after 30 s (sinfo: '${states:-no answer}'); logs in $dir/log"
}

# Waits for the process `pid` to be gone (at most `tenths` tenths of a second).
wait_gone() {
  local pid=$1 tenths=$2
  for _ in $(seq "$tenths"); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  return 1
}

stop_pidfile() {
  local file=$1 pid
  [[ -f $file ]] || return 0
  pid=$(cat "$file")
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    kill -CONT "$pid" 2>/dev/null || true  # a stopped daemon acts on TERM only once continued
    wait_gone "$pid" 100 || kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

# What the cluster started: the daemons run with FUSELLM_SLURM_CLUSTER=<DIR> in their environment;
# slurmstepd clears its environment but keeps the working directory slurmd gave it (the log
# directory); a job's own processes descend from slurmstepd (matching their SLURM_CONF would hit
# the test that exported it). Whatever outlived the daemons, each such process and its
# descendants, is killed by PID; this script and its ancestors never.
kill_leftovers() {
  local dir=$1 env pid roots=() tree mine=" " p=$$
  while [[ $p -gt 1 ]]; do
    mine+="$p "
    p=$(ps -o ppid= -p "$p" | tr -d ' ') || break
  done
  for env in /proc/[0-9]*/environ; do
    pid=${env#/proc/}
    pid=${pid%/environ}
    [[ $mine == *" $pid "* ]] && continue
    if grep -qzxF "FUSELLM_SLURM_CLUSTER=$dir" "$env" 2>/dev/null ||
      [[ $(readlink "/proc/$pid/cwd" 2>/dev/null) == "$dir"/* ]]; then
      roots+=("$pid")
    fi
  done
  [[ ${#roots[@]} -gt 0 ]] || return 0
  # Descendants by parent PID, breadth first over one snapshot of the process table.
  tree=$(ps -e -o pid=,ppid= | awk -v roots="${roots[*]}" '
    BEGIN { n = split(roots, r, " "); for (i = 1; i <= n; i++) keep[r[i]] = 1 }
    { parent[$1] = $2 }
    END { do { grew = 0; for (p in parent) if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; grew = 1 } } while (grew)
          for (p in keep) print p }')
  for pid in $tree; do
    [[ $mine == *" $pid "* ]] || kill -KILL "$pid" 2>/dev/null || true
  done
}

stop_cluster() {
  local dir=$1 f
  # The watchdog first, also when no cluster was configured yet (`watch` came before `conf`).
  if [[ -f $dir/run/watchdog.pid ]]; then
    local w
    w=$(cat "$dir/run/watchdog.pid")
    rm -f "$dir/run/watchdog.pid"
    [[ $w == "${WATCHDOG_SELF:-}" ]] || kill -TERM "$w" 2>/dev/null || true
  fi
  [[ -f $dir/slurm.conf ]] || return 0
  # Jobs first, so their ranks end as Slurm ends them (and the daemons are still there to do it).
  if [[ -f $dir/run/slurmctld.pid ]]; then
    # At most about 10 s in all: a hung slurmctld must not hold up the rest.
    local until=$((SECONDS + 10))
    SLURM_CONF=$dir/slurm.conf timeout 3 scancel --full --quiet --partition=debug 2>/dev/null || true
    while [[ $SECONDS -lt $until ]]; do
      [[ -z $(SLURM_CONF=$dir/slurm.conf timeout 2 squeue -h -t R,CG 2>&1) ]] && break
      sleep 0.2
    done
  fi
  for f in "$dir"/run/slurmd.*.pid; do stop_pidfile "$f"; done
  stop_pidfile "$dir/run/slurmctld.pid"
  kill_leftovers "$dir"
}

# Stops the cluster once `pid` is gone; detached from the caller's session and terminal so that
# killing the test's process group does not take it along.
start_watchdog() {
  local dir=$1 pid=$2 self
  self=$(readlink -f "$0")
  # shellcheck disable=SC2016  # the inner script's own variables
  setsid bash -c '
    echo $$ >"$1/run/watchdog.pid"
    while kill -0 "$2" 2>/dev/null; do sleep 1; done
    WATCHDOG_SELF=$$ "$3" stop "$1"' watchdog "$dir" "$pid" "$self" </dev/null >>"$dir/log/watchdog.log" 2>&1 &
  for _ in $(seq 50); do
    [[ -s $dir/run/watchdog.pid ]] && return 0
    sleep 0.1
  done
  die "the watchdog did not start"
}

main() {
  [[ $# -ge 2 ]] || die "usage: slurm_cluster.sh start|stop|conf|ctld|slurmd|wait DIR [...]"
  local cmd=$1 dir spec
  # `stop` of a directory already gone (the test removed it; its watchdog came late) does nothing.
  if [[ $cmd == stop && ! -d $2 ]]; then return 0; fi
  dir=$(mkdir -p "$2" && cd "$2" && pwd)
  shift 2
  case $cmd in
    start)
      local watch=""
      if [[ ${1:-} == --watch ]]; then watch=${2:?--watch needs a PID}; fi
      write_conf "$dir"
      if [[ -n $watch ]]; then start_watchdog "$dir" "$watch"; fi
      start_ctld "$dir"
      local wrap
      for spec in $(nodes); do
        wrap=${SLURM_CLUSTER_SLURMD_WRAP:+${SLURM_CLUSTER_SLURMD_WRAP//%n/${spec%%=*}}}
        # shellcheck disable=SC2086  # the wrapper is a command line: split into words
        start_slurmd "$dir" "${spec%%=*}" $wrap
      done
      wait_idle "$dir"
      echo "export SLURM_CONF=$dir/slurm.conf"
      ;;
    stop)
      stop_cluster "$dir"
      if [[ -x $dir/run/on_stop ]]; then "$dir/run/on_stop"; fi
      ;;
    watch)
      mkdir -p "$dir"/{log,run}
      start_watchdog "$dir" "${1:?watch needs a PID}"
      ;;
    conf) write_conf "$dir" ;;
    ctld) start_ctld "$dir" ;;
    slurmd) start_slurmd "$dir" "$@" ;;
    wait) wait_idle "$dir" ;;
    *) die "unknown command '$cmd' (start, stop, conf, ctld, slurmd, wait, watch)" ;;
  esac
}

main "$@"
