#!/usr/bin/env bash
# The main command (README): installs what is missing, builds, and runs the shipped demo on the
# two tiny checkpoints in examples/demo/ (a Llama with a SentencePiece-style BPE tokenizer and a
# GPT-NeoX with a byte-level BPE tokenizer):
#   1. describes them and scores a held-out sample with each (per-token log-probs, perplexity,
#      bits per byte), next to the numbers `transformers` computed for the same weights;
#   2. runs the FuseLLM job jobs/tiny.toml online as one MPI job (mpirun -np 3: a teacher rank per
#      source computing top-10 rows aligned into the target's vocabulary with MinED, one student
#      rank training the target on them; one process when mpirun is missing), `fusellm train`
#      (20 steps of 0.9 * CLM + 0.1 * MinCE fusion, checkpoints, metrics, Hugging Face export);
#   3. scores the sample again with the fused target.
# About 2-3 minutes on 2 cores. Output: runs/tiny/.
#   bash scripts/demo.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
FUSELLM_TARGETS=fusellm bash scripts/setup.sh
BIN=${FUSELLM_BUILD_DIR:-$ROOT/build}/fusellm
D=examples/demo

echo; echo "== fusellm info $D/llama"; "$BIN" info "$D/llama"
echo; echo "== fusellm info $D/neox"; "$BIN" info "$D/neox"
echo; echo "== fusellm tokenize (first line of the sample, both tokenizers)"
head -n1 "$D/sample.txt" | "$BIN" tokenize --tokenizer "$D/llama"
head -n1 "$D/sample.txt" | "$BIN" tokenize --tokenizer "$D/neox"
echo; echo "== fusellm score --model $D/llama $D/sample.txt"
"$BIN" score --model "$D/llama" "$D/sample.txt"
echo "transformers on the same weights: $(cat $D/llama/reference_score.json | tr -d '\n ')"
echo; echo "== fusellm score --model $D/neox $D/sample.txt --quiet"
"$BIN" score --model "$D/neox" "$D/sample.txt" --quiet
echo "transformers on the same weights: $(cat $D/neox/reference_score.json | tr -d '\n ')"

echo; echo "== the FuseLLM job jobs/tiny.toml (online: the teachers run as the target trains)"
rm -rf runs/tiny
if command -v mpirun >/dev/null && [ "${FUSELLM_DEMO_MPI:-1}" = 1 ]; then
  # One MPI job: 2 teacher ranks (one per source) and 1 student rank (README, "The MPI job").
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 \
    mpirun --oversubscribe -np 3 "$BIN" train --job jobs/tiny.toml
else
  "$BIN" train --job jobs/tiny.toml  # one process: teachers and student in turn
fi
echo; echo "== fusellm score --model runs/tiny/export $D/sample.txt --quiet (the fused target)"
"$BIN" score --model runs/tiny/export "$D/sample.txt" --quiet
