#!/bin/bash
# Re-score finished cpu-decisive-ssl cells on the test split from their best checkpoints, with predictions.csv at
# 9 significant digits (commit 9c0e70a): cells that ran before it wrote 6 decimals, which turned a saturated
# model's small probabilities into ties at 0 and biased per-class AUROC read from the files (issue 40's note).
# usage: rescore_cells.sh CELL...   (e.g. f0.1-random-real-s0); writes $DERMKIT_RUNS/rescored/CELL/, skips done ones
# Run from the checkout. Balanced accuracy and predicted classes come out the same as the cell's (checked below).
R=${DERMKIT_RUNS:-$HOME/dermkit-runs}; C=$R/bench/cpu-decisive-ssl/cells
: "${DERMKIT_HAM10000:?set DERMKIT_HAM10000 to the HAM10000 folder}"
export OMP_NUM_THREADS=1
for cell in "$@"; do
  out=$R/rescored/$cell
  [ -f $out/metrics.json ] && [ -f $out/rescored.ok ] && continue
  ck=$(${PY:-python} -c "import json,sys; print(json.load(open(sys.argv[1]))['best_checkpoint'])" $C/$cell/metrics.json)
  nice -n 5 ${PY:-python} -m finetune.evaluate --checkpoint $ck --data ham10000 --split test --out $out --no-tta \
    report.explain=0 data.num_workers=0 > $out.log 2>&1 || { echo "$(date +%T) $cell failed: $out.log"; continue; }
  # the same model must give the same balanced accuracy as the cell's own test
  ${PY:-python} -c "import json,sys; a,b=(json.load(open(p))['balanced_accuracy'] for p in sys.argv[1:]); \
assert abs(a-b)<1e-9, (a,b)" $C/$cell/metrics.json $out/metrics.json && touch $out/rescored.ok
  echo "$(date +%T) $cell rescored"
done
