#!/usr/bin/env bash
# The main command (README): installs what is missing, builds, and runs the shipped demo on the
# two tiny checkpoints in examples/demo/ (a Llama with a SentencePiece-style BPE tokenizer and a
# GPT-NeoX with a byte-level BPE tokenizer):
#   1. describes them and scores a held-out sample with each (per-token log-probs, perplexity,
#      bits per byte), next to the numbers `transformers` computed for the same weights;
#   2. runs the FuseLLM job jobs/tiny.toml offline: `fusellm teach` for each source (segments,
#      top-10, MinED alignment into the target's vocabulary, HDF5 caches), `fusellm train`
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

echo; echo "== the FuseLLM job jobs/tiny.toml (offline: teach each source, then train the target)"
rm -rf runs/tiny
"$BIN" teach --job jobs/tiny.toml --source llama --cache-dir runs/tiny/cache -q
"$BIN" teach --job jobs/tiny.toml --source neox --cache-dir runs/tiny/cache -q
"$BIN" train --job jobs/tiny.toml --cache-dir runs/tiny/cache
echo; echo "== fusellm score --model runs/tiny/export $D/sample.txt --quiet (the fused target)"
"$BIN" score --model runs/tiny/export "$D/sample.txt" --quiet
