#!/bin/bash
# Equal-steps control of issue 12 (docs/results/README.md, "cpu-synth-f0.1"): the 10% cells of an arm at
# 71 epochs (781 steps, synth8's 780), the grid's command otherwise; two at a time on one thread each.
# SEEDS="3 4 5" ARMS="oversample" ~/dermkit-runs/steps_control.sh   (re-run resumes each cell from its last.ckpt)
R=${DERMKIT_RUNS:-$HOME/dermkit-runs}
cd $R/worktree-synth || exit 1
export PYTHONPATH=$PWD DERMKIT_CACHE=${DERMKIT_CACHE:-$R/cache} OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
: "${DERMKIT_HAM10000:?set DERMKIT_HAM10000 to the HAM10000 folder}"
PY=${PY:-python}
run_cell() {  # ARM SEED
  local arm=$1 s=$2 extra=""
  [ "$arm" = oversample ] && extra="sampler=balanced loss.weighting=none"
  local out=$R/steps-control/f0.1-random-$arm-e71-s$s
  [ -f $out/metrics.json ] && { echo "$(date -u +%T) $out done"; return; }
  mkdir -p $out
  echo "$(date -u +%T) start $out"
  /usr/bin/time -v nice -n 10 $PY -m finetune.train data.name=ham10000 data.image_size=64 data.split_seed=0 \
    data.val_fraction=0.15 data.test_fraction=0.15 data.skip_bad=False data.batch_size=64 data.num_workers=1 \
    data.augment_on=workers model.backbone=resnet18 model.small_stem=False trainer.accelerator=cpu loss.name=ce \
    loss.weighting=inverse optim.lr=0.001 optim.weight_decay=0.05 augment.rotation=0 trainer.max_epochs=71 \
    data.fraction=0.1 seed=$s $extra out_dir=$out >> $out/stage.log 2>&1
  echo "$(date -u +%T) end $out rc=$?"
}
jobs_list=()
for arm in ${ARMS:-oversample}; do for s in ${SEEDS:-3 4 5}; do jobs_list+=("$arm $s"); done; done
i=0
while [ $i -lt ${#jobs_list[@]} ]; do
  run_cell ${jobs_list[$i]} &
  [ $((i+1)) -lt ${#jobs_list[@]} ] && run_cell ${jobs_list[$((i+1))]} &
  wait; i=$((i+2))
done
