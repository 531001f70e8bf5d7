#!/bin/bash
# Issue 12 on one H200 (docs/benchmarks.md, "The H200 run"): the two 20,000-step generators of the
# cpu-synth grid (10% and 100% labels, trainer.accelerator=gpu, the preset's recipe otherwise) through the grid
# itself, so that their done.json keys are the ones the CPU grid computes with the same synth.train_overrides;
# beside them the 100-epoch SimCLR backbone (synth.evaluate's feature space) and, once SimCLR is done, one 100%
# real cell of the cpu-synth recipe on the GPU (the GPU path of finetune.train, and its speed).
# Everything stops at DEADLINE seconds; what finished (or the generators' last.ckpt) comes back in $OUT.
set -u
T0=$(date +%s)
DEADLINE=${DEADLINE:-515}
ROOT=$PWD
ACC=${ACC:-gpu}  # ACC=cpu SKIP_PIP=1 DEADLINE=90 OUT=/tmp/o: a plumbing check on a CPU machine
PY=${PY:-python3}
[ -n "${SKIP_PIP:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$ROOT PYTHONUNBUFFERED=1 DERMKIT_HAM10000=$ROOT/.gpudata/ham10000 \
    DERMKIT_CACHE=/tmp/cache DERMKIT_RUNS=${RUNS:-/tmp/runs}
R=$DERMKIT_RUNS
mkdir -p $R/logs
el() { echo $(( $(date +%s) - T0 )); }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
$PY -c "import torch, lightly, diffusers, kornia, omegaconf, pytorch_lightning as pl, torchmetrics as tm; \
print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'lightning', pl.__version__, 'torchmetrics', \
tm.__version__, 'diffusers', diffusers.__version__, 'lightly', lightly.__version__)" || exit 1
$PY -m dermkit.data --data ham10000 data.image_size=64 --out $R/data > $R/logs/data.log 2>&1 \
    || { tail -20 $R/logs/data.log; exit 1; }
echo "[$(el)s] cache built"

TRAIN="synth.train_overrides=[model.preset=small, trainer.max_steps=20000, data.batch_size=32, optim.lr=1.0e-3, optim.warmup_steps=500, trainer.accelerator=$ACC, trainer.precision=bf16-mixed, data.num_workers=0, checkpoint_every_n_steps=100]"
$PY -m bench.label_efficiency --preset cpu-synth --out $R/bench/cpu-synth --jobs 2 --threads 2 \
    'run.alone_kinds=[]' 'grid.arms=[synth8]' 'grid.seeds=[0]' "$TRAIN" > $R/logs/grid.log 2>&1 &
GRID=$!
( $PY -m ssl.pretrain --config configs/ssl_simclr_ham64_long.yaml \
      --out $R/ssl/simclr_ham64_long trainer.accelerator=$ACC trainer.precision=bf16-mixed data.augment_on=device \
      data.num_workers=6 checkpoint_every_n_steps=500 > $R/logs/simclr.log 2>&1
  rc=$?; echo "[$(el)s] simclr rc=$rc" >> $R/logs/events.log
  [ -f $R/STOP ] && exit 0
  $PY -m finetune.train data.name=ham10000 data.image_size=64 data.split_seed=0 \
      data.val_fraction=0.15 data.test_fraction=0.15 data.skip_bad=False data.batch_size=64 data.num_workers=4 \
      data.augment_on=workers model.backbone=resnet18 model.small_stem=False trainer.accelerator=$ACC loss.name=ce \
      loss.weighting=inverse optim.lr=0.001 optim.weight_decay=0.05 augment.rotation=0 trainer.max_epochs=15 \
      data.fraction=1.0 seed=0 out_dir=$R/gpu-cells/f1-random-real-s0 > $R/logs/cell.log 2>&1
  rc=$?; echo "[$(el)s] cell rc=$rc" >> $R/logs/events.log ) &
SIDE=$!

status() {
  local line="[$(el)s]"
  for p in $R/bench/cpu-synth/synth/train-f0.1 $R/bench/cpu-synth/synth/train-f1 $R/ssl/simclr_ham64_long \
           $R/gpu-cells/f1-random-real-s0; do
    local tag=$(basename $p)
    if [ -f $p/done.json ]; then line="$line $tag=done"
    elif [ -f $p/progress.json ]; then line="$line $tag=$($PY -c "import json,sys; d=json.load(open('$p/progress.json')); print(f\"{d.get('done')}/{d.get('total')}\")" 2>/dev/null)"
    else line="$line $tag=-"; fi
  done
  echo "$line gpu=$(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null | tr -d ' ')"
}
both_trained() { [ -f $R/bench/cpu-synth/synth/train-f0.1/done.json ] && [ -f $R/bench/cpu-synth/synth/train-f1/done.json ]; }
while [ $(el) -lt $DEADLINE ]; do
  sleep 15
  status
  both_trained && kill -0 $GRID 2>/dev/null && { echo "[$(el)s] both generators done: stopping the grid"; kill -TERM $GRID; }
  if ! kill -0 $GRID 2>/dev/null && ! kill -0 $SIDE 2>/dev/null; then break; fi
done
echo "[$(el)s] stopping what still runs"
touch $R/STOP
kill -TERM $GRID 2>/dev/null  # the grid stops its steps; each trainer saves last.ckpt on SIGTERM (dermkit.interrupt)
pkill -TERM -P $SIDE 2>/dev/null  # the stage the side chain runs, not its data-loader workers
# only this script's own processes: the same names may run beside it on a shared machine (a CPU chain)
for i in $(seq 1 30); do { kill -0 $GRID || pgrep -P $SIDE; } > /dev/null 2>&1 || break; sleep 1; done
pkill -KILL -P $GRID 2>/dev/null; pkill -KILL -P $SIDE 2>/dev/null; kill -KILL $GRID 2>/dev/null
status
cat $R/logs/events.log 2>/dev/null

# What comes back: logs and small files always; then, while under 58 MiB, the generators (the whole folder without
# checkpoints when done, else with checkpoints/last.ckpt for a resume), then the SimCLR backbone if it finished.
cd $R
find . -name "*.log" -o -name "*.json" -o -name "*.csv" -o -name "*.yaml" -o -name "*.md" | grep -v "/images/" \
    | grep -v "^./data/" > /tmp/small.txt
tar czf $OUT/logs.tar.gz -T /tmp/small.txt
: > /tmp/payload.txt
budget=$((58 * 1024 * 1024))
add() { local size=$(du -cb "$@" | tail -1 | cut -f1)
  if [ $size -le $budget ]; then printf '%s\n' "$@" >> /tmp/payload.txt; budget=$((budget - size)); echo "payload + $* ($size B)"
  else echo "payload: no room for $* ($size B)"; fi; }
for g in bench/cpu-synth/synth/train-f0.1 bench/cpu-synth/synth/train-f1; do
  [ -d $g ] || continue
  if [ -f $g/done.json ]; then add $(find $g -type f ! -path "*/checkpoints/*")
  elif [ -f $g/checkpoints/last.ckpt ]; then add $(find $g -type f ! -path "*/samples/*" ! -name last.prev.ckpt); fi
done
S=ssl/simclr_ham64_long
[ -f $S/backbone.safetensors ] && add $(find $S -maxdepth 1 -type f)
tar cf /tmp/payload.tar -T /tmp/payload.txt && split -b 15M -d /tmp/payload.tar $OUT/payload.tar.
ls -la $OUT
echo "[$(el)s] end"
