#!/bin/bash
# What is still to run of issues 40 and 39 on 2 CPU cores, resumable. Issue 40's SSL half is done and committed
# (chain_decisive_ssl.sh made it); this chain runs, in order:
#   1. two lanes side by side:
#      a. cpu-decisive-synth (issue 40's open target: synth8 against oversampling per class at 10% labels, 10 seeds):
#         the 10% generator alone on both cores (20,000 steps, resumable every 100 steps; its oversample cells are
#         committed, so nothing runs beside it); then its images, and the synth8 cells. Its real arm is
#         cpu-decisive-ssl's 10% random cells, taken from the committed export by key (a random cell's key holds
#         no backbone).
#      b. at nice 19, so that it only takes what lane a leaves (all 9 are committed, so it takes them back and
#         ends): cpu-real's random cells again, 10% then 1% then 100%, each with blind predictions on the
#         external sets (issue 39 item 4: the committed cells' checkpoints are gone; random cells keep their keys).
#   2. the 100-epoch SimCLR backbone (docs/benchmarks.md, "Long SimCLR runs"), alone on both cores.
#   3. cpu-decisive-synth again with the backbone: only its synth.evaluate runs again (generator quality in the
#      SimCLR feature space, as cpu-synth's report has it); the export.
#   4. cpu-real's SimCLR cells (from this machine's backbone, so not the committed cells' keys), then cpu-synth with
#      blind predictions: its 10% cells first (generator and images copied from cpu-decisive-synth: same keys),
#      then the 100% generator (20,000 steps) and cells.
# Running time on 2 cores: the 10% generator alone 4 h on machine G, 7.7 h on machine H, 16 h on one thread
# (docs/benchmarks.md, "Training step"), so step 1 outlasts a 3-hour session; every step keeps
# what it finished in its run folder, and a new machine takes the finished cells back from the committed exports
# (docs/results/cpu-decisive-synth, where there is one) but starts the generator again.
# Re-run after any stop, from the checkout, with the same commands (a new machine: all four lines; else the last):
#   export DERMKIT_RUNS=~/dermkit-runs DERMKIT_HAM10000=/path/to/ham10000 PY=/path/to/.venv/bin/python
#   git worktree add --detach $DERMKIT_RUNS/worktree-decisive HEAD      # once
#   cp docs/long-runs/chain_decisive.sh $DERMKIT_RUNS/      # it sources chain_setup.sh from the worktree
#   nohup $DERMKIT_RUNS/chain_decisive.sh >> $DERMKIT_RUNS/chain_decisive.log 2>&1 &
set -u
R=${DERMKIT_RUNS:-$HOME/dermkit-runs}
WT=$R/worktree-decisive
git -C "$WT" checkout -q --detach main || exit 1
. "$WT/docs/long-runs/chain_setup.sh"
# --reuse takes one folder: this grid's committed export where there is one (it holds the real arm too), else
# cpu-decisive-ssl's, for the real arm.
SYNTH_REUSE=docs/results/cpu-decisive-ssl
[ -d docs/results/cpu-decisive-synth/cells ] && SYNTH_REUSE=docs/results/cpu-decisive-synth
decisive_synth() {  # $@: extra settings
  nice -n 10 $PY -m bench.label_efficiency --preset cpu-decisive-synth --out $R/bench/cpu-decisive-synth \
    --reuse $SYNTH_REUSE "$EXT" "$@" --export $R/export-cpu-decisive-synth
}
# cpu-real's cells again: the committed re-run export, where there is one, brings back the cells finished with
# their predictions (the committed cpu-real/ cells have none, and no checkpoint to make them from).
REAL_REUSE=(); [ -d docs/results/cpu-real-rerun/cells ] && REAL_REUSE=(--reuse docs/results/cpu-real-rerun)
cpu_real() {  # $1: niceness, $2: the fractions to run, in order; then extra settings
  local niceness=$1 fractions=$2; shift 2
  nice -n $niceness $PY -m bench.label_efficiency --preset cpu-real --out $R/bench/cpu-real "${REAL_REUSE[@]}" \
    "grid.fractions=$fractions" "$EXT" "$@" --export $R/export-cpu-real-rerun
}
# 1. the two lanes (the generator's quality is measured in the SimCLR space once step 2 has made the backbone).
#    On a CPU without bfloat16 instructions (no AVX512-BF16 or AMX) the generator's bf16-mixed steps are slower
#    than float32 (2x emulated on plain AVX-512, 24x on AVX2: docs/benchmarks.md, "Training step"), and in
#    float32 the generator takes ~10 h (machine J): there the chain runs only what needs no generator, on both
#    cores, and stops: cpu-real's random cells, cpu-synth's real and oversample cells (10% first), the backbone
#    in float32 (3 h on machine J) and cpu-real's SimCLR cells.
if ! cpu_has_bf16; then
  echo "$(date -u +%F' '%T) chain: no bfloat16 instructions here; only what needs no generator runs"
  cpu_real 10 "[0.1,0.01,1.0]" "grid.inits=[random]" run.jobs=2 || exit 1
  OVERSAMPLE_REUSE=$R/bench/cpu-real
  [ -d docs/results/cpu-synth-rerun/cells ] && OVERSAMPLE_REUSE=docs/results/cpu-synth-rerun
  nice -n 10 $PY -m bench.label_efficiency --preset cpu-synth --out $R/bench/cpu-synth --reuse $OVERSAMPLE_REUSE \
    "grid.arms=[real,oversample]" "grid.fractions=[0.1,1.0]" "$EXT" --export $R/export-cpu-synth-rerun || exit 1
  echo "$(date -u +%F' '%T) chain: cells without generator or backbone done"
  make_backbone || exit 1
  cpu_real 10 "[0.1,0.01,1.0]" "pretrain.backbones={simclr: $BACKBONE}" run.jobs=2 || exit 1
  echo "$(date -u +%F' '%T) chain: cpu-real done; the generators need AVX512-BF16 or AMX"
  exit 0
fi
evaluate_space=(); [ -f "$BACKBONE" ] && evaluate_space=("synth.evaluate_weights=$BACKBONE")
decisive_synth "${evaluate_space[@]}" & lane_a=$!
cpu_real 19 "[0.1,0.01,1.0]" "grid.inits=[random]" run.jobs=1 & lane_b=$!
wait $lane_a || exit 1
wait $lane_b || exit 1
echo "$(date -u +%F' '%T) chain: lanes done (cpu-decisive-synth's cells, cpu-real's random cells)"
# 2. the backbone
make_backbone || exit 1
echo "$(date -u +%F' '%T) chain: backbone done"
# 3. the generator's quality in the SimCLR space, and cpu-decisive-synth's export
decisive_synth "synth.evaluate_weights=$BACKBONE" || exit 1
echo "$(date -u +%F' '%T) chain: cpu-decisive-synth done"
# 4. cpu-real whole, then cpu-synth. cpu-synth's real arm is cpu-real's random cells (same keys; the run folder has
#    the checkpoints its filtered arm reads). Its 10% generator and images are step 1's: same arguments, so same keys,
#    and a step's key writes its output root as <out>, so the finished folders are copied in and count as done.
SYNTH=$R/bench/cpu-synth
cpu_synth() {  # $1: the fractions to run, in order
  for done in $R/bench/cpu-decisive-synth/synth/*-f0.1/done.json; do
    [ -f "$done" ] || continue
    step=$(dirname "$done")
    [ -e "$SYNTH/synth/$(basename "$step")" ] || { mkdir -p $SYNTH/synth && cp -a "$step" $SYNTH/synth/; }
  done
  nice -n 10 $PY -m bench.label_efficiency --preset cpu-synth --out $SYNTH --reuse $R/bench/cpu-real \
    "synth.evaluate_weights=$BACKBONE" "grid.fractions=$1" "$EXT" --export $R/export-cpu-synth
}
cpu_real 10 "[0.1,0.01,1.0]" "pretrain.backbones={simclr: $BACKBONE}" || exit 1
echo "$(date -u +%F' '%T) chain: cpu-real done"
cpu_synth "[0.1]" || exit 1
echo "$(date -u +%F' '%T) chain: the 10% cells of cpu-synth done"
cpu_synth "[0.1,1.0]" || exit 1
echo "$(date -u +%F' '%T) chain: cpu-synth done"
