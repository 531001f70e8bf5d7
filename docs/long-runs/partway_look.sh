#!/bin/bash
# A look part-way at a generator in the SimCLR space (pipeline check): snapshot, 32 images a class, synth.evaluate.
# ~/dermkit-runs/partway_look.sh FRACTION TAG   (e.g. 0.1 s9101)
R=${DERMKIT_RUNS:-$HOME/dermkit-runs}; F=$1; TAG=$2
cd $R/worktree-synth || exit 1
export PYTHONPATH=$PWD DERMKIT_CACHE=${DERMKIT_CACHE:-$R/cache} OMP_NUM_THREADS=1
: "${DERMKIT_HAM10000:?set DERMKIT_HAM10000 to the HAM10000 folder}"
PY="nice -n 5 ${PY:-python}"
set -e
$PY -m synth.snapshot --run $R/bench/cpu-synth/synth/train-f$F --out $R/snap/f$F-$TAG
$PY -m synth.generate --model $R/snap/f$F-$TAG --out $R/snap/gen-f$F-$TAG --class mel --class vasc --class akiec \
    --class df --n 32 --sampler dpm --steps 20 --guidance 1.0 --batch-size 32 --device cpu
$PY -m synth.evaluate --synthetic $R/snap/gen-f$F-$TAG data.name=ham10000 data.image_size=64 data.split_seed=0 \
    data.val_fraction=0.15 data.test_fraction=0.15 data.skip_bad=False data.batch_size=64 data.num_workers=1 \
    weights=$R/ssl/simclr_ham64_long/backbone.safetensors --out $R/snap/eval-f$F-$TAG
