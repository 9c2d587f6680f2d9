#!/usr/bin/env bash
# The node each rank of a step lands on, one line per rank (rank 0 first), computed from the
# allocation as srun lays tasks out (srun(1), --distribution: the first part, across nodes):
#   block   fill each node's tasks before the next node's (srun's default; Open MPI's mpirun maps
#           by slot, the same)
#   cyclic  one task per node in turn, skipping nodes whose tasks are all placed
# Inside an allocation: slurm/rank_placement.sh NTASKS [DISTRIBUTION]
# (DISTRIBUTION defaults to SLURM_DISTRIBUTION, which sbatch --distribution sets, else block.)
# Used by slurm/launch.sh's dry run (FUSELLM_DRY_RUN=1).
set -euo pipefail

die() {
  echo "rank_placement.sh: $*" >&2
  exit 1
}

ntasks=${1:?usage: rank_placement.sh NTASKS [block|cyclic]}
dist=${2:-${SLURM_DISTRIBUTION:-block}}
dist=${dist%%[:,]*}
[[ -n ${SLURM_JOB_NODELIST:-} && -n ${SLURM_TASKS_PER_NODE:-} ]] ||
  die "not inside an allocation (SLURM_JOB_NODELIST and SLURM_TASKS_PER_NODE unset)"
mapfile -t nodes < <(scontrol show hostnames "$SLURM_JOB_NODELIST")

# SLURM_TASKS_PER_NODE: counts in node order, "2(x3)" for three nodes with 2 each ("2(x2),1").
left=()
for spec in ${SLURM_TASKS_PER_NODE//,/ }; do
  if [[ $spec =~ ^([0-9]+)\(x([0-9]+)\)$ ]]; then
    for ((k = 0; k < BASH_REMATCH[2]; k++)); do left+=("${BASH_REMATCH[1]}"); done
  else
    left+=("$spec")
  fi
done
((${#left[@]} == ${#nodes[@]})) ||
  die "SLURM_TASKS_PER_NODE=$SLURM_TASKS_PER_NODE does not match the ${#nodes[@]} nodes of $SLURM_JOB_NODELIST"

placed=0
case $dist in
  block)
    for i in "${!nodes[@]}"; do
      for ((k = 0; k < left[i] && placed < ntasks; k++, placed++)); do echo "${nodes[i]}"; done
    done
    ;;
  cyclic)
    while ((placed < ntasks)); do
      progress=0
      for i in "${!nodes[@]}"; do
        if ((left[i] > 0 && placed < ntasks)); then
          echo "${nodes[i]}"
          left[i]=$((left[i] - 1))
          placed=$((placed + 1))
          progress=1
        fi
      done
      ((progress)) || break
    done
    ;;
  *) die "distribution '$dist' is not computed here (block or cyclic)" ;;
esac
((placed == ntasks)) || die "the allocation has tasks for $placed ranks, not $ntasks"
