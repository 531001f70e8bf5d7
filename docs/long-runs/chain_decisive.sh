#!/bin/bash
# Issue 40's decisive grids on 2 CPU cores (docs/results/decisive-plan/, configs/bench_cpu_decisive_*.yaml), in order:
#   1. the 100-epoch SimCLR backbone (docs/benchmarks.md, "Long SimCLR runs");
#   2. the SimCLR schedules at 1% labels, chosen on validation (sweep_1pct.sh, seeds 0-2);
#   3. cpu-decisive-ssl: random / SimCLR fine-tuned / SimCLR linear at 1% and 10% labels, 13 seeds;
#   4. the bf16-mixed check: three 10% random cells of step 3 again in bf16-mixed (seeds 0-2), paired with step 3's;
#   5. cpu-decisive-synth: the 10% generator (20,000 steps alone on both cores: 4 h on machine G,
#      4.5 h on F, 7.5 h on E; it checkpoints every 100 steps), its images, oversample and synth8 for 10 seeds;
#   6. cpu-real and cpu-synth again (issue 39), every cell with blind predictions on the external sets: the 10% cells
#      of both first (the toolkit's two questions at 10% labels: SimCLR against random init, synth8 against
#      oversampling), then cpu-real's 1% and 100% cells, then cpu-synth's 100% generator (20,000 steps, about 4 h
#      alone on machine G) and 100% cells. cpu-real's SimCLR cells start from this machine's backbone (the committed
#      cells' checkpoints and backbone are gone with their machines).
# The generator goes before cpu-real because cpu-synth's 10% cells need the same generator (same key) for issue 39 too.
# Re-run after any stop, from the checkout: every step resumes from its own checkpoint or is reused by key; on a new
# machine the committed exports (docs/results/cpu-decisive-*) bring back their finished cells.
#   export DERMKIT_RUNS=~/dermkit-runs DERMKIT_HAM10000=/path/to/ham10000 PY=/path/to/.venv/bin/python
#   git worktree add --detach $DERMKIT_RUNS/worktree-decisive HEAD      # once
#   cp docs/long-runs/{chain_decisive,sweep_1pct}.sh $DERMKIT_RUNS/
#   nohup $DERMKIT_RUNS/chain_decisive.sh >> $DERMKIT_RUNS/chain_decisive.log 2>&1 &
set -u
R=${DERMKIT_RUNS:-$HOME/dermkit-runs}
WT=$R/worktree-decisive
PY=${PY:-python}
EXTERNAL=${DERMKIT_EXTERNAL:-/work/shared/data/external}
: "${DERMKIT_HAM10000:?set DERMKIT_HAM10000 to the HAM10000 folder}"
export DERMKIT_RUNS=$R DERMKIT_CACHE=${DERMKIT_CACHE:-$R/cache}
BACKBONE=$R/ssl/simclr_ham64_long/backbone.safetensors
git -C "$WT" checkout -q --detach main || exit 1
cd "$WT" || exit 1
echo "$(date -u +%F' '%T) chain start at $(git rev-parse --short HEAD)"
# 1. the backbone (float32 would be the evidence default; bf16-mixed with device augmentation is how cpu-real's was made)
if [ ! -f "$BACKBONE" ]; then
  OMP_NUM_THREADS=2 nice -n 10 $PY -m ssl.pretrain --config configs/ssl_simclr_ham64_long.yaml \
    --out $R/ssl/simclr_ham64_long trainer.precision=bf16-mixed data.augment_on=device || exit 1
fi
echo "$(date -u +%F' '%T) chain: backbone done"
# 2. the 1% schedules (each finished run is skipped)
PY=$PY "$R/sweep_1pct.sh" || exit 1
# 3. the SSL grid; the committed export, where there is one, brings back its cells
EXT="grid.external={isic2018_test: $EXTERNAL/isic2018_test/images, ph2: $EXTERNAL/ph2/images}"
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
# 5. the synthetic-data grid: its real arm is step 3's 10% random cells (same keys), or, where this grid's export is
#    committed, that export's (--reuse takes one folder)
SYNTH_REUSE=$(reuse cpu-decisive-synth); SYNTH_REUSE=${SYNTH_REUSE:---reuse $R/bench/cpu-decisive-ssl}
nice -n 10 $PY -m bench.label_efficiency --preset cpu-decisive-synth --out $R/bench/cpu-decisive-synth \
  $SYNTH_REUSE "synth.evaluate_weights=$BACKBONE" "$EXT" \
  --export $R/export-cpu-decisive-synth || exit 1
echo "$(date -u +%F' '%T) chain: cpu-decisive-synth done"
# 6. cpu-real and cpu-synth with blind predictions. cpu-real's random cells keep their committed keys; its SimCLR cells'
#    keys change with the backbone. cpu-synth's real arm is cpu-real's random cells (same keys; the run folder has the
#    checkpoints its filtered arm reads). cpu-synth's 10% generator and images are step 5's: same arguments, so same
#    keys, and a step's key writes its output root as <out>, so the finished folders are copied in and count as done
#    rather than training 4 h again.
SYNTH=$R/bench/cpu-synth
cpu_real() {  # $1: the fractions to run, in order
  nice -n 10 $PY -m bench.label_efficiency --preset cpu-real --out $R/bench/cpu-real \
    "pretrain.backbones={simclr: $BACKBONE}" "grid.fractions=$1" "$EXT" --export $R/export-cpu-real
}
cpu_synth() {  # $1: the fractions to run, in order
  for done in $R/bench/cpu-decisive-synth/synth/*-f0.1/done.json; do
    [ -f "$done" ] || continue
    step=$(dirname "$done")
    [ -e "$SYNTH/synth/$(basename "$step")" ] || { mkdir -p $SYNTH/synth && cp -a "$step" $SYNTH/synth/; }
  done
  nice -n 10 $PY -m bench.label_efficiency --preset cpu-synth --out $SYNTH --reuse $R/bench/cpu-real \
    "synth.evaluate_weights=$BACKBONE" "grid.fractions=$1" "$EXT" --export $R/export-cpu-synth
}
cpu_real "[0.1]" && cpu_synth "[0.1]" || exit 1
echo "$(date -u +%F' '%T) chain: the 10% cells of cpu-real and cpu-synth done"
cpu_real "[0.1,0.01,1.0]" || exit 1
echo "$(date -u +%F' '%T) chain: cpu-real done"
cpu_synth "[0.1,1.0]" || exit 1
echo "$(date -u +%F' '%T) chain: cpu-synth done"
