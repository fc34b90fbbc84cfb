#!/bin/sh
# The demo's acceptance numbers (issue 5): test Spearman of the DNA+RNA tiny config against the
# two single-modality baselines (same optimizer, steps, batch and seed, configs/demo/demo.yaml
# overlay), and of the DNA+RNA config on shuffled labels, for seeds 1 2 3. Needs `make build`.
# Prints one table; work files go to ${OUT:-/tmp/aidomm-demo-eval}.
set -eu
cd "$(dirname "$0")/../.."
BIN=build/bin
OUT=${OUT:-/tmp/aidomm-demo-eval}
SEEDS=${SEEDS:-"1 2 3"}
mkdir -p "$OUT"
$BIN/aidomm-demodata demo-data -q
$BIN/aidomm-demodata "$OUT/shuffled" --shuffle-labels -q
spearman() { grep '^test,0,0,test_spearman,' "$1/metrics.csv" | tail -1 | cut -d, -f5; }
run() { # name config data seed
  d="$OUT/$1-s$4"
  rm -rf "$d"
  $BIN/aidommc compile "configs/$2" --config configs/demo/demo.yaml -o "$d.plan" 2>/dev/null
  $BIN/aidomm-rt run "$d.plan" --progress off --output_dir "$d" --data.init_args.path "$3" \
    --seed_everything "$4" > "$d.fit.log"
  $BIN/aidomm-rt run "$d.plan" --job test --progress off --output_dir "$d" \
    --data.init_args.path "$3" --ckpt_path "$d/last.safetensors" --seed_everything "$4" \
    > "$d.test.log"
  spearman "$d"
}
printf '%-6s %12s %12s %12s %14s\n' seed dna+rna dna_only rna_only shuffled
for s in $SEEDS; do
  a=$(run both tiny_isoform_expression_dna_rna_concat.yaml demo-data "$s")
  b=$(run dna tiny_isoform_expression_dna_only.yaml demo-data "$s")
  c=$(run rna tiny_isoform_expression_rna_only.yaml demo-data "$s")
  d=$(run shuf tiny_isoform_expression_dna_rna_concat.yaml "$OUT/shuffled" "$s")
  printf '%-6s %12.4f %12.4f %12.4f %14.4f\n' "$s" "$a" "$b" "$c" "$d"
done
