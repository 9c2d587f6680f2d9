#!/usr/bin/env bash
# One more row for a finished demo's table: the FuseLLM stage again (three sources, MinED,
# offline from `fusellm teach` caches) with other settings, on the demo's own sources, base, fusion
# split and step counts, scored like the table (bits per byte on each domain's test documents).
#   bash scripts/demo/variant.sh [--out DIR] [--teach] NAME --set KEY=VALUE [--set ...]
#     --out DIR   the demo's output (default runs/demo)
#     --teach     teach the sources again into a cache of this variant's own (needed when a
#                 setting changes the cached rows: distill.temperature, distill.top_k, ...);
#                 without it the demo's MinED caches are used
# Examples (the README's "What it showed here" lists their results):
#   bash scripts/demo/variant.sh lambda-0.8 --set distill.lambda=0.8
#   bash scripts/demo/variant.sh --teach temperature-2 --set distill.temperature=2
# Output: DIR/variants/NAME.json (`fusellm eval`'s results) and a line: code docs legal average.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
OUT=runs/demo TEACH=0
while [[ $# -gt 0 && $1 == --* ]]; do
  case $1 in
    --out) OUT=$2; shift 2 ;;
    --teach) TEACH=1; shift ;;
    -h|--help) sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "variant.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
NAME=${1:?usage: variant.sh [--out DIR] [--teach] NAME --set KEY=VALUE ...}
shift
BIN=${FUSELLM_BIN:-$ROOT/build/fusellm}
M=$OUT/models C=$OUT/corpus V=$OUT/variants
[[ -f $OUT/report/table.json ]] || { echo "variant.sh: $OUT has no finished demo (run scripts/demo.sh first)" >&2; exit 1; }
steps=$(jq -r ".settings.steps.continual // empty" "$OUT/report/table.json")
lr=$(jq -r ".settings.lr.continual // empty" "$OUT/report/table.json")
[[ -n $steps && -n $lr ]] || { echo "variant.sh: $OUT/report/table.json names no settings.steps.continual / settings.lr.continual" >&2; exit 1; }
mkdir -p "$V"
sets=(--set "source[0].path=$M/source-llama" --set "source[1].path=$M/source-neox" --set "source[2].path=$M/source-mpt"
      --set "target.path=$M/base-llama" --set "corpus.path=$C/fusion" --set "train.max_steps=$steps"
      --set "optim.lr=$lr" --set distill.alignment=mined "$@")
cache=$OUT/runs/cache-mined
if [[ $TEACH == 1 ]]; then
  cache=$V/$NAME-cache
  rm -rf "$cache"
  for s in llama neox mpt; do "$BIN" teach --job jobs/demo/fuse.toml "${sets[@]}" --source "$s" --cache-dir "$cache" > "$V/$NAME.log" 2>&1; done
fi
rm -rf "$V/$NAME-run" "$M/variant-$NAME"
"$BIN" train --job jobs/demo/fuse.toml "${sets[@]}" --set job.output_dir="$V/$NAME-run" --cache-dir "$cache" \
  --export "$M/variant-$NAME" >> "$V/$NAME.log" 2>&1
"$BIN" eval --model "$M/variant-$NAME" --perplexity "$C/test/code" --perplexity "$C/test/docs" \
  --perplexity "$C/test/legal" --output "$V/$NAME.json" >> "$V/$NAME.log" 2>&1
jq -r --arg n "$NAME" '.results | [.code, .docs, .legal] | map(."bits_per_byte,none") |
  "\($n): code \(.[0] * 1000 | round / 1000) docs \(.[1] * 1000 | round / 1000) legal \(.[2] * 1000 | round / 1000) average \((add / 3) * 1000 | round / 1000)"' "$V/$NAME.json"
