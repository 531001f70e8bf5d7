#!/usr/bin/env bash
# Copies what the external-recipe runs (issue 39) produced into docs/results/external-recipes/: per cell its
# HAM10000 test outputs and record (metrics.json, predictions.csv, per_class.csv, config.yaml, run.json, the
# lane's CPU time) and its blind predictions on the external sets; never a checkpoint or an image.
# usage: external_export.sh [DEST]   (run from the repository root)
set -eu
RUNS=${DERMKIT_RUNS:-$HOME/dermkit-runs}
DEST=${1:-docs/results/external-recipes}
for cell in "$RUNS"/external-recipes/*/; do
  name=$(basename "$cell")
  [ -f "$cell/metrics.json" ] || continue
  mkdir -p "$DEST/$name"
  for f in metrics.json predictions.csv per_class.csv config.yaml run.json; do
    [ -f "$cell/$f" ] && cp "$cell/$f" "$DEST/$name/"
  done
  grep -h "cpu_user_s=" "$RUNS/external-recipes/$name.log" > "$DEST/$name/cpu_time.txt" 2>/dev/null || true
  for set in "$cell"/external/*/; do
    [ -f "$set/predictions.csv" ] || continue
    mkdir -p "$DEST/$name/external/$(basename "$set")"
    cp "$set"/predictions.csv "$set"/predictions_without_tta.csv "$set"/run.json \
      "$DEST/$name/external/$(basename "$set")/"
  done
done
echo "exported to $DEST"
