#!/usr/bin/env bash
# The prepared run for a lent GPU (issue 41): bench.gpu_check, the gpu-quick grid, then (time left) SimCLR
# against random at 10% labels, 128 px, ResNet-50, 3 seeds; everything into docs/results/gpu-<date>/.
#
#   bash bench/gpu_window.sh                 # from any folder; the data at ../shared/data/ham10000
#   GPU_WINDOW_SECONDS=540 bash bench/gpu_window.sh --check-budget 150
#   GPU_WINDOW_SECONDS=100 bash bench/gpu_window.sh --tiny   # the CPU dry run (demo data, tiny sizes)
#
# The window (GPU_WINDOW_SECONDS, default 540) counts from this script's start: setting up Python is part
# of it. With a .venv that imports the dependencies, that one is used; else a system python3 that does
# (a machine image with torch); else .venv is made (--system-site-packages, so a system torch is kept)
# and pyproject.toml's dependencies are installed with pip, within GPU_WINDOW_INSTALL_SECONDS (default
# 240; wheels in .whl/ are used when present, torch==2.14.1 and torchvision==0.29.1 when none is there).
# Arguments go to `python -m bench.gpu_window` (see its --help). With $OUT set (the device tool's
# folder), the results folder is copied there at the end. Exit status: 0 every phase finished, 3 some
# did not (the results say which), 1 no usable Python.
set -u
START=$(date +%s)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
WINDOW=${GPU_WINDOW_SECONDS:-540}
INSTALL_LIMIT=${GPU_WINDOW_INSTALL_SECONDS:-240}
RESULTS=${GPU_WINDOW_OUT:-docs/results/gpu-$(date -u +%Y-%m-%d)}
[ -e "$RESULTS" ] && RESULTS=$RESULTS-$(date -u +%H%M)
mkdir -p "$RESULTS"
NEEDED="import torch, torchvision, pytorch_lightning, torchmetrics, lightly, diffusers, kornia, omegaconf, rich, \
safetensors, matplotlib, tensorboard, pytorch_grad_cam"
say() { echo "[$(( $(date +%s) - START )) s] $*" | tee -a "$RESULTS/setup.log"; }
give_back() { [ -n "${OUT:-}" ] && mkdir -p "$OUT" && cp -r "$RESULTS" "$OUT/"; }

if [ -x .venv/bin/python ] && .venv/bin/python -c "$NEEDED" 2> /dev/null; then
  PY=.venv/bin/python
elif python3 -c "$NEEDED" 2> /dev/null; then
  PY=python3
else
  say "no Python with the dependencies: setting up .venv (at most ${INSTALL_LIMIT} s)"
  [ -d .whl ] && export PIP_FIND_LINKS=$ROOT/.whl
  python3 -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
    > /tmp/gpu_window_requirements.txt 2>> "$RESULTS/setup.log" \
    || sed -n '/^dependencies = \[/,/^\]/p' pyproject.toml | grep -o '"[^"]*"' | tr -d '"' > /tmp/gpu_window_requirements.txt
  timeout "$INSTALL_LIMIT" bash -c '
    test -x .venv/bin/python || python3 -m venv --system-site-packages .venv || exit 1
    .venv/bin/python -c "import torch" 2> /dev/null \
      || .venv/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1 || exit 1
    .venv/bin/python -m pip install -q -r /tmp/gpu_window_requirements.txt' >> "$RESULTS/setup.log" 2>&1
  if ! .venv/bin/python -c "$NEEDED" >> "$RESULTS/setup.log" 2>&1; then
    say "setting up .venv failed or took over ${INSTALL_LIMIT} s: nothing ran (see setup.log)"
    give_back
    exit 1
  fi
  PY=.venv/bin/python
fi
say "python: $PY ($($PY -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'))"
"$PY" -m bench.gpu_window --deadline $(( START + WINDOW )) --out "$RESULTS" "$@"
STATUS=$?
say "bench.gpu_window exit status $STATUS"
give_back
exit $STATUS
