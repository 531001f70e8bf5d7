#!/bin/bash
# Issue 12's long runs on this machine's 2 cores (docs/benchmarks.md, "cpu-synth"). Re-run after a
# stop: every step resumes from its own checkpoint or is reused by key.
R=${DERMKIT_RUNS:-$HOME/dermkit-runs}
cd $R/worktree-synth || exit 1
export PYTHONPATH=$PWD DERMKIT_RUNS=$R DERMKIT_CACHE=${DERMKIT_CACHE:-$R/cache}
: "${DERMKIT_HAM10000:?set DERMKIT_HAM10000 to the HAM10000 folder}"
PY=${PY:-python}
G="$PY -m bench.label_efficiency --preset cpu-synth --out $R/bench/cpu-synth"
# On a new machine the committed 10% cells count as done (--reuse; the synthetic ones only with their generator).
REUSE="--reuse docs/results/cpu-synth-f0.1"
echo "$(date -u +%F' '%T) chain start at $(git rev-parse --short HEAD)"
# 1b. seeds 3-5 of the 10% half, the arms that need no generator. (Their equal-steps control at 71 epochs,
#    steps_control.sh, is committed as docs/results' oversample-e71; the grid's oversample8 arm now does that job.)
nice -n 10 $G --jobs 2 --threads 1 'grid.fractions=[0.1]' 'grid.seeds=[3,4,5]' 'grid.arms=[real,oversample]' $REUSE \
    --export $R/export-cpu-synth-f0.1-s345 || exit 1
echo "$(date -u +%F' '%T) chain: phase 1b done"
# 2. the 10% generator, started on the H200 (checkpoint at step 9,147) and resumed here alone on both cores; its generation,
#    judged in the SimCLR space (the 100-epoch backbone, also made on the H200), then synth8 for seeds 3-5
nice -n 10 $G --jobs 2 --threads 1 'grid.fractions=[0.1]' 'grid.seeds=[3,4,5]' 'grid.arms=[real,oversample,synth8]' $REUSE \
    "synth.evaluate_weights=$R/ssl/simclr_ham64_long/backbone.safetensors" --export $R/export-cpu-synth-f0.1-s345 || exit 1
echo "$(date -u +%F' '%T) chain: phase 2 done"
# 2b. oversample8 (added 2026-12-04 night) for seeds 3-5: oversampling for as many steps as synth8, the fair comparison
nice -n 10 $G --jobs 2 --threads 1 'grid.fractions=[0.1]' 'grid.seeds=[3,4,5]' \
    'grid.arms=[real,oversample,oversample8,synth8]' $REUSE \
    "synth.evaluate_weights=$R/ssl/simclr_ham64_long/backbone.safetensors" --export $R/export-cpu-synth-f0.1-s345 || exit 1
echo "$(date -u +%F' '%T) chain: phase 2b done"
# 3. the whole grid: the 100% generator (started on the H200: checkpoint at step 9,744), its generation and the 100% cells
nice -n 10 $G --jobs 2 --threads 1 $REUSE "synth.evaluate_weights=$R/ssl/simclr_ham64_long/backbone.safetensors" \
    --export $R/export-cpu-synth || exit 1
echo "$(date -u +%F' '%T) chain: phase 3 done"
