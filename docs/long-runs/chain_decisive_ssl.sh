#!/bin/bash
# Issue 40's SSL half on 2 CPU cores (docs/results/decisive-plan/, configs/bench_cpu_decisive_ssl.yaml), in order:
#   1. the 100-epoch SimCLR backbone (docs/benchmarks.md, "Long SimCLR runs");
#   2. the SimCLR schedules at 1% labels, chosen on validation (sweep_1pct.sh, seeds 0-2);
#   3. cpu-decisive-ssl: random / SimCLR fine-tuned / SimCLR linear at 1% and 10% labels, 13 seeds;
#   4. the bf16-mixed check: three 10% random cells of step 3 again in bf16-mixed (seeds 0-2), paired with step 3's.
# All four finished on machine G (2026-12-07) and are committed (docs/results/cpu-decisive-ssl/, docs/benchmarks.md).
# This is how to make them again, about 12 h on 2 cores: on a new machine the backbone is a new file, and the SimCLR
# cells' keys hold its digest, so all 52 SimCLR cells train again (the random cells are taken from the committed
# export by key). What is still to run is chain_decisive.sh.
# Re-run after any stop: every step resumes from its own checkpoint or is reused by key.
#   export DERMKIT_RUNS=~/dermkit-runs DERMKIT_HAM10000=/path/to/ham10000 PY=/path/to/.venv/bin/python
#   git worktree add --detach $DERMKIT_RUNS/worktree-decisive HEAD      # once
#   cp docs/long-runs/{chain_decisive_ssl,sweep_1pct}.sh $DERMKIT_RUNS/
#   nohup $DERMKIT_RUNS/chain_decisive_ssl.sh >> $DERMKIT_RUNS/chain_decisive_ssl.log 2>&1 &
set -u
R=${DERMKIT_RUNS:-$HOME/dermkit-runs}
WT=$R/worktree-decisive
git -C "$WT" checkout -q --detach main || exit 1
. "$WT/docs/long-runs/chain_setup.sh"
# 1. the backbone
make_backbone || exit 1
echo "$(date -u +%F' '%T) chain: backbone done"
# 2. the 1% schedules (each finished run is skipped)
PY=$PY "$R/sweep_1pct.sh" || exit 1
# 3. the SSL grid; the committed export, where there is one, brings back its cells
reuse() { [ -d "docs/results/$1/cells" ] && echo "--reuse docs/results/$1"; }
nice -n 10 $PY -m bench.label_efficiency --preset cpu-decisive-ssl --out $R/bench/cpu-decisive-ssl $(reuse cpu-decisive-ssl) \
  "pretrain.backbones={simclr: $BACKBONE}" "$EXT" --export $R/export-cpu-decisive-ssl || exit 1
echo "$(date -u +%F' '%T) chain: cpu-decisive-ssl done"
# 4. bf16-mixed against float32, paired by seed: step 3's f0.1-random-real cells, again in bf16-mixed
for seed in 0 1 2; do
  cell=$R/bench/cpu-decisive-ssl/cells/f0.1-random-real-s$seed out=$R/bf16-check/f0.1-random-real-bf16-s$seed
  [ -f "$out/metrics.json" ] && continue
  [ -f "$cell/config.yaml" ] || { echo "no $cell/config.yaml: skipping the bf16 check"; break; }
  mkdir -p $R/bf16-check
  OMP_NUM_THREADS=1 nice -n 10 $PY -m finetune.train --config $cell/config.yaml trainer.precision=bf16-mixed \
    out_dir=$out > $out.log 2>&1 &
  [ "$seed" = 1 ] && wait
done
wait
echo "$(date -u +%F' '%T) chain: bf16 check done"
