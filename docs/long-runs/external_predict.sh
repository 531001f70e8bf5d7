#!/usr/bin/env bash
# Blind predictions of every finished external-recipe cell (issue 39) on both external sets, with and
# without TTA (finetune.predict --tta writes both files). A cell's predictions are written once; re-running
# writes only what is missing. Results: $RUNS/external-recipes/<cell>/external/<set>/.
set -u
RUNS=${DERMKIT_RUNS:-$HOME/dermkit-runs}
WT=${WT:-$RUNS/worktree-external}
PY=${PY:-/work/main/.venv/bin/python}
EXTERNAL=${DERMKIT_EXTERNAL:-/work/shared/data/external}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
for metrics in "$RUNS"/external-recipes/*/metrics.json; do
  cell=$(dirname "$metrics")
  best=$("$PY" -c "import json,sys,pathlib; b=json.load(open(sys.argv[1])).get('best_checkpoint'); print(pathlib.Path(b).name if b else 'last.ckpt')" "$metrics")
  for set in isic2018_test ph2; do
    out=$cell/external/$set
    [ -f "$out/predictions_without_tta.csv" ] && continue
    echo "$(date +%T) $(basename "$cell") on $set"
    (cd "$WT" && nice -n 10 "$PY" -m finetune.predict --checkpoint "$cell/checkpoints/$best" \
       --root "$EXTERNAL/$set/images" --out "$out" --tta data.num_workers=0) > "$cell/predict-$set.log" 2>&1 \
       || { echo "failed: see $cell/predict-$set.log"; tail -3 "$cell/predict-$set.log"; }
  done
done
