#!/usr/bin/env bash
# The demo's quick mode end to end (scripts/demo.sh --quick), then the structure and sanity of
# everything it writes: the corpus split, every stage's model, every eval file, the table (JSON
# and Markdown: complete, every BPB finite and plausible), the claims, the learning curve and the
# PNG plots (valid PNG files), and one more row from scripts/demo/variant.sh. Not the ML result:
# a quick run trains for a few steps only.
#   FUSELLM_BIN=build/fusellm bash tests/demo/test_demo_quick.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${FUSELLM_BIN:?set FUSELLM_BIN to the fusellm binary}
OUT=$(mktemp -d /tmp/fusellm_demo_quick.XXXXXX)
trap 'rm -rf "$OUT"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

start=$(date +%s)
FUSELLM_BUILD_DIR=$(dirname "$(realpath "$BIN")") bash "$ROOT/scripts/demo.sh" --quick --no-setup --out "$OUT/demo" \
  > "$OUT/stdout" 2>&1 || { tail -n 40 "$OUT/stdout"; fail "scripts/demo.sh --quick exited non-zero"; }
echo "demo --quick took $(( $(date +%s) - start )) s"
D=$OUT/demo

# Every stage ran and said so (stage i/n ... done), in order.
n=$(grep -cE '^stage [0-9]+/[0-9]+: ' "$OUT/stdout")
total=$(grep -oE '^stage 1/[0-9]+' "$OUT/stdout" | cut -d/ -f2)
[ "$n" = "$total" ] || fail "ran $n of $total stages"
[ "$(grep -c '  done in ' "$OUT/stdout")" = "$total" ] || fail "not every stage finished"
grep -q 'demo: finished in' "$OUT/stdout" || fail "no final line"

# The corpus: every split of every domain has documents, listed in the manifest.
for split in source fusion valid test; do
  for dom in code docs legal; do
    ls "$D/corpus/$split/$dom/"*.txt > /dev/null 2>&1 || fail "corpus $split/$dom is empty"
    grep -qP "^$split\t$dom\t" "$D/corpus/manifest.tsv" || fail "manifest lacks $split/$dom"
  done
done

# Every model the table names exists as a Hugging Face checkpoint.
for m in source-llama source-neox source-mpt base-llama clm-only fuse-3 avgce em kd-llama fuse-2 \
         tuned-code tuned-docs tuned-legal merged same-arch-fuse; do
  [ -f "$D/models/$m/config.json" ] || fail "model $m has no config.json"
  ls "$D/models/$m/"*.safetensors > /dev/null 2>&1 || fail "model $m has no weights"
done

# The table: 17 rows (10 + 7), each with three finite BPB in a plausible range and their mean.
J=$D/report/table.json
jq -e '.rows | length == 17' "$J" > /dev/null || fail "table.json does not have 17 rows"
jq -e '[.rows[] | .bpb.code, .bpb.docs, .bpb.legal, .average] | all(type == "number" and . > 0.05 and . < 16)' "$J" \
  > /dev/null || fail "a BPB is missing, not finite or implausible: $(jq -c '[.rows[] | .average]' "$J")"
jq -e '[.rows[] | ((.bpb.code + .bpb.docs + .bpb.legal) / 3 - .average) | fabs < 1e-9] | all' "$J" > /dev/null ||
  fail "an average is not the mean of its domains"
jq -e '.claims | length == 6 and all(.holds | type == "boolean")' "$J" > /dev/null || fail "claims incomplete"
jq -e '.settings.mode == "quick"' "$J" > /dev/null || fail "settings not recorded"
[ "$(grep -c "^| " "$D/report/table.md")" = $(( 17 + 2 )) ] || fail "table.md does not have 17 model rows"
[ "$(grep -cE '^- (holds|DOES NOT HOLD): ' "$D/report/table.md")" = 6 ] || fail "table.md lacks the claims"

# The learning curve: the base and at least one checkpoint for each run, BPB plausible.
for run in clm-only fuse-3; do
  [ "$(awk -F'\t' -v r="$run" '$1 == r && $4 > 0.05 && $4 < 16' "$D/eval/curve.tsv" | wc -l)" -ge 2 ] ||
    fail "curve of $run has fewer than 2 plausible points"
done

# The plots: PNG signature, an IHDR with a non-zero size, and the IEND chunk at the end.
for png in table curve; do
  f=$D/report/$png.png
  [ "$(head -c 8 "$f" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "$png.png is not a PNG"
  [ "$(head -c 16 "$f" | tail -c 4)" = IHDR ] || fail "$png.png: no IHDR"
  w=$(head -c 20 "$f" | tail -c 4 | od -An -tu1 | awk '{ print ($1 * 16777216) + ($2 * 65536) + ($3 * 256) + $4 }')
  [ "$w" -gt 100 ] || fail "$png.png: width $w"
  [ "$(tail -c 8 "$f" | head -c 4)" = IEND ] || fail "$png.png: truncated (no IEND)"
done
# One more row with other settings (scripts/demo/variant.sh): a line of four plausible BPB and
# its eval file.
line=$(FUSELLM_BIN=$BIN bash "$ROOT/scripts/demo/variant.sh" --out "$D" lambda-0.8 --set distill.lambda=0.8) ||
  fail "variant.sh exited non-zero"
echo "$line" | grep -qE '^lambda-0.8: code [0-9.]+ docs [0-9.]+ legal [0-9.]+ average [0-9.]+$' || fail "variant.sh printed: $line"
jq -e '[.results[] | ."bits_per_byte,none"] | length == 3 and all(. > 0.05 and . < 16)' "$D/variants/lambda-0.8.json" \
  > /dev/null || fail "variant.sh's eval file is incomplete or implausible"
echo "PASS: demo --quick wrote a complete, sane report"
