#!/usr/bin/env bash
# The main command (README): installs what is missing, builds, and runs the shipped demo.
# Until the fusion job lands (see README, status), the demo reads the two shipped tiny
# checkpoints (a Llama with a SentencePiece-style BPE tokenizer and a GPT-NeoX with a byte-level
# BPE tokenizer, examples/demo/), describes them, and scores a held-out sample text with each:
# per-token log-probs, perplexity and bits per UTF-8 byte, next to the numbers `transformers`
# computed for the same weights and text when the checkpoints were made.
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
