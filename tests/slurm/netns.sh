#!/usr/bin/env bash
# Several "nodes" on one machine for tests: one network namespace per node, each with a veth pair
# whose other end sits on a bridge in the root namespace, on a private /24 (10.77.X.0/24, X the
# first one no interface uses). The root namespace has X.1 (slurmctld listens there), node i has
# X.(10+i). Each node's processes also get their own UTS namespace, so `hostname` (and MPI's
# processor name) is the node's name, as on a real cluster. Everything made is recorded in
# DIR/run/netns.made and removed by `down`, whatever state it is in.
#
#   netns.sh check                    can this machine make network namespaces? exit 0 if so; exit 3
#                                     when the kernel refuses with EPERM (a container without
#                                     CAP_SYS_ADMIN/CAP_NET_ADMIN), printing what refused; exit 1
#                                     on any other failure
#   netns.sh up DIR NODE...           make the bridge, one namespace + veth per NODE; prints
#                                     `CTLD_ADDR=<X.1>` and `NODES="<node>=<addr> ..."` (the
#                                     values of tests/slurm/slurm_cluster.sh's settings)
#   netns.sh exec DIR NODE CMD...     run CMD in NODE's network namespace, hostname NODE
#   netns.sh down DIR                 delete what `up` made (namespaces, veths, bridge)
#
# Why nsenter and not `ip netns exec`: the latter also unshares the mount namespace and remounts
# /sys for the network namespace, which hides /sys/fs/cgroup; Debian's slurmd 22.05 then refuses
# to start ("error: No filesystem mounted on /sys/fs/cgroup", "Unable to initialize cgroup
# plugin"). Entering only the network namespace keeps the filesystem as it is: the nodes share
# the repository, the binaries and the job's output directory, like a cluster's shared file
# system.
set -euo pipefail

die() {
  echo "netns.sh: $*" >&2
  exit 1
}

made() { echo "$1/run/netns.made"; }

# The namespace name of NODE in the cluster at DIR (recorded by `up`).
ns_of() {
  local dir=$1 node=$2 kind name
  while read -r kind name; do
    if [[ $kind == ns && $name == *-"$node" ]]; then
      echo "$name"
      return
    fi
  done <"$(made "$dir")"
  die "no network namespace for node $node in $(made "$dir")"
}

# Tries to make and delete one namespace; tells EPERM (the sandbox forbids it) from other errors.
check() {
  local ns="flchk$$" out
  command -v ip >/dev/null || die "ip (iproute2) is not installed"
  command -v nsenter >/dev/null || die "nsenter (util-linux) is not installed"
  if ! out=$(ip netns add "$ns" 2>&1); then
    if [[ $out == *"Operation not permitted"* ]]; then
      echo "netns.sh: REFUSED: 'ip netns add $ns' failed with EPERM: $out"
      exit 3
    fi
    die "'ip netns add $ns' failed: $out"
  fi
  ip netns del "$ns"
}

# A /24 under 10.77.0.0/16 that no interface of this machine has an address in.
free_subnet() {
  local used x
  used=$(ip -4 -o addr show)
  for x in $(seq 1 254); do
    if [[ $used != *" 10.77.$x."* ]]; then
      echo "10.77.$x"
      return
    fi
  done
  die "no free /24 under 10.77.0.0/16"
}

up() {
  local dir=$1 tag net br i=0 node ns veth nodes=""
  shift
  [[ $# -ge 1 ]] || die "up needs at least one node name"
  mkdir -p "$dir/run"
  # Interface names are at most 15 characters: "fl" + the PID in hex + a suffix.
  tag=fl$(printf %x $$)
  net=$(free_subnet)
  br=${tag}b
  : >"$(made "$dir")"
  ip link add "$br" type bridge
  echo "link $br" >>"$(made "$dir")"
  ip addr add "$net.1/24" dev "$br"
  ip link set "$br" up
  for node in "$@"; do
    i=$((i + 1))
    ns=$tag-$node
    veth=${tag}v$i
    ip netns add "$ns"
    echo "ns $ns" >>"$(made "$dir")"
    ip link add "$veth" type veth peer name eth0 netns "$ns"
    echo "link $veth" >>"$(made "$dir")"
    ip link set "$veth" master "$br" up
    ip -n "$ns" addr add "$net.$((10 + i))/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    nodes+="${nodes:+ }$node=$net.$((10 + i))"
  done
  echo "CTLD_ADDR=$net.1"
  echo "NODES=\"$nodes\""
}

run_in() {
  local dir=$1 node=$2 ns
  shift 2
  ns=$(ns_of "$dir" "$node")
  # shellcheck disable=SC2016  # the inner shell's own arguments
  exec nsenter --net="/run/netns/$ns" unshare --uts sh -c 'hostname "$0" && exec "$@"' "$node" "$@"
}

# Deletes in reverse order of making; a namespace whose processes still live disappears (with its
# veth end) when the last one exits, and deleting the root end of the veth removes both ends now.
down() {
  local dir=$1 kind name
  [[ -f $(made "$dir") ]] || return 0
  tac "$(made "$dir")" | while read -r kind name; do
    case $kind in
      ns) ip netns del "$name" 2>/dev/null || true ;;
      link) ip link del "$name" 2>/dev/null || true ;;
    esac
  done
  rm -f "$(made "$dir")"
}

main() {
  [[ $# -ge 1 ]] || die "usage: netns.sh check | up DIR NODE... | exec DIR NODE CMD... | down DIR"
  local cmd=$1
  shift
  case $cmd in
    check) check ;;
    up) up "$@" ;;
    exec) run_in "$@" ;;
    down) down "$@" ;;
    *) die "unknown command '$cmd' (check, up, exec, down)" ;;
  esac
}

main "$@"
