#!/usr/bin/env bash
# One lane of the external-recipe runs (issue 39): trains each cell in turn with finetune.train,
# then writes its blind predictions. Each cell resumes from its own last.ckpt; a finished one
# (metrics.json) is not trained again. Before each cell the worktree moves to the newest main.
# usage: lane2.sh NAME:CONFIG:OVERRIDES...   (CONFIG under configs/, OVERRIDES comma-separated)
# env: WAIT_PID=<pid> waits for that process to end first.
set -u
RUNS=${DERMKIT_RUNS:-$HOME/dermkit-runs}
WT=$RUNS/worktree-external
PY=${PY:-/work/main/.venv/bin/python}
export DERMKIT_HAM10000=${DERMKIT_HAM10000:-/work/shared/data/ham10000} OMP_NUM_THREADS=1
if [ -n "${WAIT_PID:-}" ]; then while kill -0 "$WAIT_PID" 2>/dev/null; do sleep 30; done; fi
for cell in "$@"; do
  IFS=: read -r name config overrides <<< "$cell"
  out=$RUNS/external-recipes/$name
  if [ ! -f "$out/metrics.json" ]; then
    git -C "$WT" checkout -q --detach main
    echo "$(date +%T) $name: start at $(git -C "$WT" rev-parse --short HEAD)"
    (cd "$WT" && /usr/bin/time -f "$name cpu_user_s=%U cpu_sys_s=%S wall_s=%e" nice -n 10 $PY -m finetune.train \
       --config configs/$config ${overrides//,/ } out_dir=$out) >> "$RUNS/external-recipes/$name.log" 2>&1
    status=$?  # before any command substitution below resets it
    echo "$(date +%T) $name: exit $status ($(tail -1 "$RUNS/external-recipes/$name.log"))"
  fi
done
