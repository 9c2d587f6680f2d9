#!/usr/bin/env bash
# The demo's report (scripts/demo.sh, last stage): the table of bits per UTF-8 byte per domain and
# on average for every model, like the FuseLLM paper's Table 7, as JSON and Markdown, the claims
# checked against it, and two PNG plots drawn with gnuplot:
#   curve.png  average validation BPB against tokens seen, FuseLLM against CLM-only
#   table.png  the test BPB of every model as grouped bars, one group per domain
# Reads OUT/eval/<model>.json (`fusellm eval` output in lm-evaluation-harness's layout, a
# perplexity task per domain),
# OUT/eval/curve.tsv and OUT/settings.json; writes OUT/report/.
#   bash scripts/demo/report.sh OUT
set -euo pipefail
OUT=${1:?usage: report.sh OUT}
E=$OUT/eval D=$OUT/report
mkdir -p "$D"
DOMAINS=(code docs legal)

# name|setting|label, in the table's order
ROWS=(
  "source-llama|A|Llama source (trained on licenses)"
  "source-neox|A|GPT-NeoX source (trained on C headers)"
  "source-mpt|A|MPT source (trained on documentation)"
  "base|A|Llama target before continual training"
  "clm-only|A|continual training, CLM only"
  "kd-llama|A|knowledge distillation from the Llama source"
  "fuse-2|A|FuseLLM, 2 sources (Llama, GPT-NeoX)"
  "avgce|A|FuseLLM, AvgCE instead of MinCE"
  "em|A|FuseLLM, EM alignment instead of MinED"
  "fuse-3|A|FuseLLM (MinCE, MinED, 3 sources)"
  "base|B|Llama base"
  "tuned-code|B|base tuned on C headers"
  "tuned-docs|B|base tuned on documentation"
  "tuned-legal|B|base tuned on licenses"
  "ensemble|B|ensemble of the three (probabilities averaged)"
  "merged|B|weight merging of the three (parameters averaged)"
  "same-arch-fuse|B|FuseLLM of the three into the base"
)

# The bits per byte of one domain in a model's eval file.
bpb() {  # file, domain
  jq -e --arg d "$2" '.results[$d]["bits_per_byte,none"] | numbers' "$1" ||
    { echo "report: no bits_per_byte of '$2' in $1" >&2; exit 1; }
}

rows_json=$(
  for row in "${ROWS[@]}"; do
    IFS='|' read -r name setting label <<< "$row"
    vals=()
    for dom in "${DOMAINS[@]}"; do vals+=("$(bpb "$E/$name.json" "$dom")"); done
    jq -n --arg name "$name" --arg setting "$setting" --arg lab "$label" \
      --argjson code "${vals[0]}" --argjson docs "${vals[1]}" --argjson legal "${vals[2]}" \
      '{name: $name, setting: $setting, "label": $lab, bpb: {code: $code, docs: $docs, legal: $legal},
        average: (($code + $docs + $legal) / 3)}'
  done | jq -s .
)
[ "$(jq length <<< "$rows_json")" = "${#ROWS[@]}" ] || { echo "report: the table is incomplete" >&2; exit 1; }

# The paper's claims, checked on this run's numbers (the demo prints whatever holds).
claims_json=$(jq -n --argjson rows "$rows_json" '
  def avg($n; $s): [$rows[] | select(.name == $n and .setting == $s) | .average][0];
  [
    {claim: "FuseLLM (3 sources) has a lower average BPB than every source",
     holds: ([avg("source-llama"; "A"), avg("source-neox"; "A"), avg("source-mpt"; "A")] | all(. > avg("fuse-3"; "A"))),
     values: {fuse: avg("fuse-3"; "A"), best_source: ([avg("source-llama"; "A"), avg("source-neox"; "A"), avg("source-mpt"; "A")] | min)}},
    {claim: "FuseLLM has a lower average BPB than CLM-only continual training on the same tokens",
     holds: (avg("fuse-3"; "A") < avg("clm-only"; "A")),
     values: {fuse: avg("fuse-3"; "A"), clm_only: avg("clm-only"; "A")}},
    {claim: "MinED beats or ties EM",
     holds: (avg("fuse-3"; "A") <= avg("em"; "A") + 0.0005),
     values: {mined: avg("fuse-3"; "A"), em: avg("em"; "A")}},
    {claim: "MinCE beats or ties AvgCE",
     holds: (avg("fuse-3"; "A") <= avg("avgce"; "A") + 0.0005),
     values: {mince: avg("fuse-3"; "A"), avgce: avg("avgce"; "A")}},
    {claim: "3 sources beat 2, which beat 1 (KD)",
     holds: (avg("fuse-3"; "A") < avg("fuse-2"; "A") and avg("fuse-2"; "A") < avg("kd-llama"; "A")),
     values: {three: avg("fuse-3"; "A"), two: avg("fuse-2"; "A"), one: avg("kd-llama"; "A")}},
    {claim: "same architecture: FuseLLM beats the ensemble and weight merging",
     holds: (avg("same-arch-fuse"; "B") < avg("ensemble"; "B") and avg("same-arch-fuse"; "B") < avg("merged"; "B")),
     values: {fuse: avg("same-arch-fuse"; "B"), ensemble: avg("ensemble"; "B"), merged: avg("merged"; "B")}}
  ]')

settings=$( [ -f "$OUT/settings.json" ] && cat "$OUT/settings.json" || echo '{}')
jq -n --argjson rows "$rows_json" --argjson claims "$claims_json" --argjson settings "$settings" \
  '{metric: "bits per UTF-8 byte (lower is better), lm-evaluation-harness loglikelihood_rolling on each domain'"'"'s test documents",
    settings: $settings, rows: $rows, claims: $claims}' > "$D/table.json"

# Markdown: two tables (the settings), then the claims.
{
  echo "Bits per UTF-8 byte on each domain's test documents (lower is better)."
  for setting in A B; do
    echo
    if [ "$setting" = A ]; then
      echo "**Different architectures and tokenizers** (sources: Llama, GPT-NeoX, MPT; target: Llama)"
    else
      echo "**Same architecture** (like the paper's Pythia experiment: three domain-tuned copies of one base)"
    fi
    echo
    echo "| model | code | docs | legal | average |"
    echo "|---|---|---|---|---|"
    jq -r --arg s "$setting" '.rows[] | select(.setting == $s) |
      "| \(."label") | \(.bpb.code * 1000 | round / 1000) | \(.bpb.docs * 1000 | round / 1000) | \(.bpb.legal * 1000 | round / 1000) | \(.average * 1000 | round / 1000) |"' "$D/table.json"
  done
  echo
  echo "Claims of the paper, on this run:"
  echo
  jq -r '.claims[] | "- \(if .holds then "holds" else "DOES NOT HOLD" end): \(.claim) (\(.values | to_entries | map("\(.key) \(.value * 1000 | round / 1000)") | join(", ")))"' "$D/table.json"
} > "$D/table.md"

# Plot data: per setting, one row per domain (code, docs, legal, average), one column per model.
for setting in A B; do
  jq -r --arg s "$setting" '["domain"] + [.rows[] | select(.setting == $s) | ."label"] | @tsv' "$D/table.json" > "$D/bars-$setting.tsv"
  for key in code docs legal average; do
    jq -r --arg k "$key" --arg s "$setting" \
      '[$k] + [.rows[] | select(.setting == $s) | if $k == "average" then .average else .bpb[$k] end] | @tsv' "$D/table.json"
  done >> "$D/bars-$setting.tsv"
done
ncols_a=$(( $(head -n1 "$D/bars-A.tsv" | awk -F'\t' '{ print NF }') ))
ncols_b=$(( $(head -n1 "$D/bars-B.tsv" | awk -F'\t' '{ print NF }') ))
# The y axis starts half a bit below the smallest value (rounded down to 0.5): gnuplot's autoscale
# would start at that value's own tick and hide its bar (Llama's 1.502 on legal, on a 1.5 axis).
ymin() { awk -F'\t' 'NR > 1 { for (i = 2; i <= NF; i++) if (m == "" || $i < m) m = $i } END { v = int((m - 0.5) * 2) / 2; print (v < 0 ? 0 : v) }' "$1"; }
ymin_a=$(ymin "$D/bars-A.tsv"); ymin_b=$(ymin "$D/bars-B.tsv")
gnuplot <<EOF
set terminal pngcairo size 1500,1100 font ",10"
set output "$D/table.png"
set datafile separator "\t"
set style data histograms
set style histogram clustered gap 2
set style fill solid 0.85 border -1
set key outside right top vertical font ",9"
set ylabel "bits per byte (lower is better)"
set grid ytics
set multiplot layout 2,1
set title "Different architectures and tokenizers: test BPB per domain"
set yrange [$ymin_a:*]
plot for [i=2:$ncols_a] "$D/bars-A.tsv" using i:xtic(1) title columnheader(i)
set title "Same architecture (like the paper's Pythia experiment): test BPB per domain"
set yrange [$ymin_b:*]
plot for [i=2:$ncols_b] "$D/bars-B.tsv" using i:xtic(1) title columnheader(i)
unset multiplot
EOF
if [ -s "$E/curve.tsv" ]; then
  gnuplot <<EOF
set terminal pngcairo size 900,550 font ",10"
set output "$D/curve.png"
set title "Average validation BPB against tokens seen (continual training of the base Llama)"
set xlabel "tokens seen"
set ylabel "bits per byte (mean of the three domains)"
set key top right
set grid
plot "< awk '\$1 == \"clm-only\"' $E/curve.tsv" using 3:4 with linespoints lw 2 title "CLM only", \
     "< awk '\$1 == \"fuse-3\"' $E/curve.tsv" using 3:4 with linespoints lw 2 title "FuseLLM (MinCE, MinED, 3 sources)"
EOF
fi
echo "report: $D/table.json, $D/table.md, $D/table.png$( [ -s "$E/curve.tsv" ] && echo ", $D/curve.png")"
