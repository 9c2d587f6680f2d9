#!/usr/bin/env bash
# The main command (README, "Quick start"): knowledge fusion shown working on a laptop, no download.
#
#   bash scripts/demo.sh [--quick] [--out DIR] [--np N] [--no-setup]
#
# A small replication of the FuseLLM paper's experiments (Wan et al., ICLR 2024; DESIGN.md section 1):
#   1. corpus: three domains of real text from this Debian machine (C headers, the Perl library's
#      documentation, license texts; scripts/demo/corpus.pl), split by document into source,
#      fusion, valid and test parts;
#   2. sources: three models of different families AND tokenizers, each trained from fresh
#      weights on one domain: a Llama (SentencePiece-style BPE, 2048 pieces) on licenses, a
#      GPT-NeoX (byte-level BPE, 3095 tokens) on C headers, an MPT with ALiBi (byte-level BPE,
#      4119 tokens) on documentation;
#   3. the target: a Llama pretrained briefly on the mixed fusion corpus ("base"), then continually
#      trained on the same tokens by each method of the paper's comparison: CLM only; FuseLLM
#      (MinCE, MinED, lambda 0.9, top-10; online: the teachers run as the target trains, as one
#      MPI job when mpirun is there); AvgCE instead of MinCE; EM instead of MinED; knowledge
#      distillation from one source; fusion of two sources;
#   4. a same-architecture setting like the paper's Pythia experiment: three copies of the base,
#      each continually trained on one domain, then their ensemble (probabilities averaged),
#      their weight merge (parameters averaged) and FuseLLM (fused into the base);
#   5. every model scored on each domain's test documents with `fusellm eval` (bits per UTF-8
#      byte as lm-evaluation-harness's loglikelihood_rolling computes it); the table (JSON,
#      Markdown) and PNG plots (gnuplot) in OUT/report/.
# Default: 12 minutes on 2 cores (11:52 measured, peak 645 MB); --quick (a smoke test: tiny corpus, a few steps per
# stage) about 1.5-3 minutes. Each stage's log is in OUT/logs/. Output: runs/demo/ (--out).
# Settings for a GPU node or a cluster: README, "The demo".
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
QUICK=0 OUT=$ROOT/runs/demo NP=auto SETUP=1
while [ $# -gt 0 ]; do
  case $1 in
    -h|--help) usage; exit 0 ;;
    --quick) QUICK=1; shift ;;
    --out) OUT=$(realpath -m "$2"); shift 2 ;;
    --np) NP=$2; shift 2 ;;
    --no-setup) SETUP=0; shift ;;
    *) echo "demo.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

case $OUT in *[[:space:]]*) echo "demo.sh: --out must not contain white space: $OUT" >&2; exit 2 ;; esac
cd "$ROOT"
if [ "$SETUP" = 1 ]; then
  echo "demo: setting up (apt packages, Kokkos, the fusellm build; logs in $OUT/logs/setup.log)"
  mkdir -p "$OUT/logs"
  FUSELLM_TARGETS=fusellm bash scripts/setup.sh > "$OUT/logs/setup.log" 2>&1 ||
    { tail -n 30 "$OUT/logs/setup.log"; echo "demo: setup failed (log: $OUT/logs/setup.log)" >&2; exit 1; }
fi
BIN=${FUSELLM_BUILD_DIR:-$ROOT/build}/fusellm
[ -x "$BIN" ] || { echo "demo: $BIN is not built (run without --no-setup)" >&2; exit 1; }
for tool in perl jq gnuplot; do
  command -v "$tool" >/dev/null || { echo "demo: '$tool' is missing (scripts/setup.sh installs it)" >&2; exit 1; }
done

# ---- sizes -------------------------------------------------------------------------------------
# Steps of 16 sequences x 256 tokens. The continual-training runs all see the same tokens (the
# same seed, corpus and steps): the paper's comparison at one token budget.
if [ "$QUICK" = 1 ]; then
  CORPUS_SCALE=0.12 SRC_STEPS=8 BASE_STEPS=6 CONT_STEPS=6 TUNE_STEPS=4 CURVE_EVERY=3
else
  CORPUS_SCALE=1 SRC_STEPS=${DEMO_SRC_STEPS:-160} BASE_STEPS=${DEMO_BASE_STEPS:-40}
  CONT_STEPS=${DEMO_CONT_STEPS:-100} TUNE_STEPS=${DEMO_TUNE_STEPS:-40} CURVE_EVERY=${DEMO_CURVE_EVERY:-20}
fi
SRC_LR=${DEMO_SRC_LR:-3e-3} CONT_LR=${DEMO_CONT_LR:-2e-3}
export OMP_WAIT_POLICY=passive  # several processes share the cores (README, Troubleshooting)
CORES=$(nproc)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$CORES}
if [ "$NP" = auto ]; then
  # The teachers as MPI ranks when this build has MPI and mpirun is there; else one process.
  if command -v mpirun >/dev/null && "$BIN" version | grep -q 'mpi: on'; then NP=4; else NP=1; fi
fi
case $NP in 1|4) ;; *) echo "demo.sh: --np must be 1 (one process) or 4 (3 teacher ranks + 1 student)" >&2; exit 2 ;; esac

# ---- progress ----------------------------------------------------------------------------------
# Each stage has a weight (its expected seconds on 2 cores); the overall ETA scales the remaining
# weights by how fast the finished stages went on this machine.
declare -a STAGE_NAMES=() STAGE_WEIGHTS=()
plan() { STAGE_NAMES+=("$1"); STAGE_WEIGHTS+=("$2"); }
STAGE_NO=0 DONE_WEIGHT=0 T0=$(date +%s)
TTY=0; [ -t 1 ] && TTY=1
fmt_time() { printf '%d:%02d' $(( $1 / 60 )) $(( $1 % 60 )); }
total_weight() { local s=0 w; for w in "${STAGE_WEIGHTS[@]}"; do s=$(( s + w )); done; echo $s; }

# The fraction of a stage done, from its log: "step N/M" (train) or "N/M segments" (teach).
stage_fraction() {
  tr '\r' '\n' < "$1" 2>/dev/null | grep -oE '(step [0-9]+/[0-9]+|[0-9]+/[0-9]+ segments)' | tail -n1 |
    grep -oE '[0-9]+/[0-9]+' | awk -F/ '$2 > 0 { printf "%.3f", $1 / $2; exit } END { if (NR == 0) print 0 }'
}

draw() {  # name, weight, seconds in stage, log
  local frac elapsed=$(( $(date +%s) - T0 )) total rate eta bar n
  frac=$(stage_fraction "$4")
  total=$(total_weight)
  # seconds per weight unit so far (1 before anything finished)
  rate=$(awk -v e="$elapsed" -v d="$DONE_WEIGHT" -v w="$2" -v f="$frac" -v s="$3" \
    'BEGIN { done = d + w * f; r = (done > 50) ? (e / done) : 0.1; print r }')
  eta=$(awk -v r="$rate" -v t="$total" -v d="$DONE_WEIGHT" -v w="$2" -v f="$frac" 'BEGIN { printf "%d", r * (t - d - w * f) }')
  n=$(awk -v f="$frac" 'BEGIN { printf "%d", f * 24 }')
  bar=$(printf '%*s' "$n" '' | tr ' ' '#')$(printf '%*s' $(( 24 - n )) '' | tr ' ' '.')
  printf '\r  [%s] %3d%%  %s in stage, overall %s elapsed, about %s left   ' "$bar" \
    "$(awk -v f="$frac" 'BEGIN { printf "%d", f * 100 }')" "$(fmt_time "$3")" "$(fmt_time $elapsed)" "$(fmt_time "$eta")"
}

stage() {  # name, command... (its weight is the plan's)
  local name=$1 weight=0 log pid start rc=0 i
  shift
  for i in "${!STAGE_NAMES[@]}"; do [ "${STAGE_NAMES[$i]}" = "$name" ] && weight=${STAGE_WEIGHTS[$i]}; done
  STAGE_NO=$(( STAGE_NO + 1 ))
  log=$OUT/logs/$(printf '%02d' $STAGE_NO)-$name.log
  echo "stage $STAGE_NO/${#STAGE_NAMES[@]}: $name"
  start=$(date +%s)
  "$@" > "$log" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    [ "$TTY" = 1 ] && draw "$name" "$weight" $(( $(date +%s) - start )) "$log"
    sleep 0.5
  done
  wait "$pid" || rc=$?
  [ "$TTY" = 1 ] && printf '\r%*s\r' 110 ''
  if [ "$rc" != 0 ]; then
    echo "demo: stage '$name' failed (exit $rc); the end of its log ($log):" >&2
    tail -n 25 "$log" >&2
    exit 1
  fi
  DONE_WEIGHT=$(( DONE_WEIGHT + weight ))
  echo "  done in $(fmt_time $(( $(date +%s) - start ))) (overall $(fmt_time $(( $(date +%s) - T0 ))))"
}

# ---- the stages --------------------------------------------------------------------------------
M=$OUT/models C=$OUT/corpus E=$OUT/eval R=$OUT/runs
DOMAINS=(code docs legal)
declare -A SOURCE_DOMAIN=([llama]=legal [neox]=code [mpt]=docs)

train_clm() {  # model dir, corpus dir, output name, steps, lr, [extra --set ...]
  local model=$1 corpus=$2 name=$3 steps=$4 lr=$5
  shift 5
  "$BIN" train --job jobs/demo/clm.toml --set target.path="$model" --set corpus.path="$corpus" \
    --set job.output_dir="$R/$name" --set train.max_steps="$steps" --set optim.lr="$lr" "$@" \
    --export "$M/$name"
}

# FuseLLM continual training of the base; $1: output name; the rest: --set overrides.
# $1: how many of the sources the job file lists (llama, neox, mpt in that order).
fuse_sets() {
  local i=0 s
  for s in llama neox mpt; do
    [ $i -lt "${1:-3}" ] && echo --set "source[$i].path=$M/source-$s"
    i=$(( i + 1 ))
  done
  echo --set target.path="$M/base-llama" --set corpus.path="$C/fusion" \
    --set train.max_steps="$CONT_STEPS" --set optim.lr="$CONT_LR"
}
# The sources of each job file: fuse (llama, neox, mpt), fuse2 (llama, neox), kd (llama).
sources_of() { case $1 in kd) echo 1 ;; fuse2) echo 2 ;; *) echo 3 ;; esac; }
train_fused_online() {  # job, name, extra --set ...
  local job=$1 name=$2 n
  shift 2
  n=$(sources_of "$job")
  # shellcheck disable=SC2046  # fuse_sets prints words that are meant to split
  local args=(train --job "jobs/demo/$job.toml" $(fuse_sets "$n") --set job.output_dir="$R/$name"
              --set checkpoint.interval="$CURVE_EVERY" --set checkpoint.keep=100 "$@" --export "$M/$name")
  if [ "$NP" -gt 1 ]; then
    # One MPI job: a teacher rank per source, one student rank (README, "The MPI job").
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 \
      mpirun --oversubscribe -np $(( n + 1 )) "$BIN" "${args[@]}"
  else
    "$BIN" "${args[@]}"
  fi
}
teach_all() {  # alignment; writes the three sources' caches to $R/cache-<alignment>
  local s i=0
  for s in llama neox mpt; do
    # shellcheck disable=SC2046
    "$BIN" teach --job jobs/demo/fuse.toml $(fuse_sets) --set distill.alignment="$1" --source "$s" \
      --cache-dir "$R/cache-$1"
    i=$(( i + 1 ))
  done
}
train_fused_offline() {  # name, alignment, extra --set ...: the three sources, from their caches
  local name=$1 alignment=$2
  shift 2
  # shellcheck disable=SC2046
  "$BIN" train --job jobs/demo/fuse.toml $(fuse_sets 3) --set job.output_dir="$R/$name" \
    --set distill.alignment="$alignment" --cache-dir "$R/cache-$alignment" "$@" --export "$M/$name"
}

# Scores a model (or, with several, their ensemble) on each domain's test documents: one
# `fusellm eval` with a perplexity task per domain (named after its directory).
evaluate_all() {
  local spec name d
  for spec in "$@"; do
    name=${spec%%=*}
    local models=() dirs=()
    IFS=, read -r -a dirs <<< "${spec#*=}"
    for d in "${dirs[@]}"; do models+=(--model "$M/$d"); done
    "$BIN" eval "${models[@]}" --perplexity "$C/test/code" --perplexity "$C/test/docs" --perplexity "$C/test/legal" \
      --output "$E/$name.json"
  done
}

# The learning curves: average validation BPB of the base and of every checkpoint of the CLM-only
# and the FuseLLM run (exported, then scored), against the tokens the target has seen.
curve() {
  local run ck step dir bpb
  for run in clm-only fuse-3; do
    for ck in "$M/base-llama" "$R/$run"/checkpoints/step-*; do
      step=0 dir=$ck
      if [ "$ck" != "$M/base-llama" ]; then
        step=${ck##*step-} dir=$OUT/tmp-curve
        rm -rf "$dir"
        "$BIN" export --checkpoint "$ck" --out "$dir" > /dev/null
      fi
      "$BIN" eval --model "$dir" --perplexity "$C/valid/code" --perplexity "$C/valid/docs" \
        --perplexity "$C/valid/legal" --output "$E/curve.json"
      bpb=$(jq '[.results.code, .results.docs, .results.legal | .["bits_per_byte,none"]] | add / 3' "$E/curve.json")
      printf '%s\t%s\t%s\t%s\n' "$run" "$step" $(( step * 16 * 256 )) "$bpb"
    done | sort -t$'\t' -k2,2n >> "$E/curve.tsv"
  done
  rm -rf "$OUT/tmp-curve" "$E/curve.json"
}
# Stage weights: tenths of a second on this 2-core machine (seconds per step measured there).
plan corpus 120; plan init 30
plan source-llama $(( SRC_STEPS * 3 )); plan source-neox $(( SRC_STEPS * 4 )); plan source-mpt $(( SRC_STEPS * 5 ))
plan base $(( BASE_STEPS * 3 )); plan clm-only $(( CONT_STEPS * 3 ))
plan fuse-online $(( CONT_STEPS * 9 )); plan teach-mined 300; plan teach-em 300
plan avgce $(( CONT_STEPS * 4 )); plan em $(( CONT_STEPS * 4 )); plan kd $(( CONT_STEPS * 5 )); plan fuse-2 $(( CONT_STEPS * 7 ))
plan same-arch-tune $(( TUNE_STEPS * 9 )); plan same-arch-merge 20; plan same-arch-fuse $(( CONT_STEPS * 9 ))
plan eval 400; plan curve 250; plan report 30

rm -rf "$OUT/corpus" "$M" "$E" "$R" "$OUT/report"
mkdir -p "$OUT/logs" "$M" "$E" "$R"
echo "demo: output in $OUT ($( [ "$QUICK" = 1 ] && echo quick || echo default ) mode, $CORES cores, teachers $( [ "$NP" -gt 1 ] && echo "as MPI ranks (mpirun -np $NP)" || echo "in one process"))"

jq -n --argjson quick "$QUICK" --argjson cores "$CORES" --argjson np "$NP" --argjson scale "$CORPUS_SCALE" \
  --argjson src "$SRC_STEPS" --argjson base "$BASE_STEPS" --argjson cont "$CONT_STEPS" --argjson tune "$TUNE_STEPS" \
  --arg src_lr "$SRC_LR" --arg cont_lr "$CONT_LR" \
  '{mode: (if $quick == 1 then "quick" else "default" end), cores: $cores, mpi_ranks: $np, corpus_scale: $scale,
    tokens_per_step: (16 * 256), steps: {source: $src, base: $base, continual: $cont, same_arch_tune: $tune},
    lr: {pretraining: $src_lr, continual: $cont_lr}, distill: {lambda: 0.9, top_k: 10, temperature: 1.0}}' \
  > "$OUT/settings.json"
stage corpus perl scripts/demo/corpus.pl "$C" --scale "$CORPUS_SCALE"
init_models() {
  local seed=1 m
  for m in llama neox mpt; do
    "$BIN" init --from "examples/fusion_demo/models/$m" --out "$M/init-$m" --seed $seed
    seed=$(( seed + 1 ))
  done
  "$BIN" init --from examples/fusion_demo/models/llama --out "$M/init-base-llama" --seed 10
}
stage init init_models
for s in llama neox mpt; do
  stage "source-$s" train_clm "$M/init-$s" "$C/source/${SOURCE_DOMAIN[$s]}" "source-$s" "$SRC_STEPS" "$SRC_LR"
done
stage base train_clm "$M/init-base-llama" "$C/fusion" base-llama "$BASE_STEPS" "$SRC_LR"
stage clm-only train_clm "$M/base-llama" "$C/fusion" clm-only "$CONT_STEPS" "$CONT_LR" \
  --set checkpoint.interval="$CURVE_EVERY" --set checkpoint.keep=100
stage fuse-online train_fused_online fuse fuse-3
stage teach-mined teach_all mined
stage teach-em teach_all em
stage avgce train_fused_offline avgce mined --set distill.fusion=avgCE
stage em train_fused_offline em em
stage kd train_fused_online kd kd-llama
stage fuse-2 train_fused_online fuse2 fuse-2
same_arch_tune() {
  local dom
  for dom in "${DOMAINS[@]}"; do
    train_clm "$M/base-llama" "$C/source/$dom" "tuned-$dom" "$TUNE_STEPS" "$CONT_LR"
  done
}
stage same-arch-tune same_arch_tune
stage same-arch-merge "$BIN" merge --model "$M/tuned-code" --model "$M/tuned-docs" --model "$M/tuned-legal" --out "$M/merged"
stage same-arch-fuse train_fused_online fuse same-arch-fuse \
  --set source[0].path="$M/tuned-code" --set source[1].path="$M/tuned-docs" --set source[2].path="$M/tuned-legal" \
  --set source[0].name=code --set source[1].name=docs --set source[2].name=legal
stage eval evaluate_all source-llama=source-llama source-neox=source-neox source-mpt=source-mpt \
  base=base-llama clm-only=clm-only fuse-3=fuse-3 avgce=avgce em=em kd-llama=kd-llama fuse-2=fuse-2 \
  tuned-code=tuned-code tuned-docs=tuned-docs tuned-legal=tuned-legal \
  ensemble=tuned-code,tuned-docs,tuned-legal merged=merged same-arch-fuse=same-arch-fuse
stage curve curve
stage report bash scripts/demo/report.sh "$OUT"
echo
cat "$OUT/report/table.md"
echo
echo "demo: finished in $(fmt_time $(( $(date +%s) - T0 ))); table and plots in $OUT/report/ (table.json, table.md, *.png)"
