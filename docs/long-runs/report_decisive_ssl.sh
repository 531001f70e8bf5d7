#!/bin/bash
# The cpu-decisive-ssl report and export from its finished cells, beside or after the running grid (starts nothing).
# usage: report_decisive_ssl.sh EXPORT_DIR     (e.g. /path/to/checkout/docs/results/cpu-decisive-ssl)
R=${DERMKIT_RUNS:-$HOME/dermkit-runs}; EXTERNAL=${DERMKIT_EXTERNAL:-/work/shared/data/external}
: "${DERMKIT_HAM10000:?set DERMKIT_HAM10000 to the HAM10000 folder}"
cd $R/worktree-decisive && nice -n 5 ${PY:-python} -m bench.label_efficiency --preset cpu-decisive-ssl \
  --out $R/bench/cpu-decisive-ssl "pretrain.backbones={simclr: $R/ssl/simclr_ham64_long/backbone.safetensors}" \
  "grid.external={isic2018_test: $EXTERNAL/isic2018_test/images, ph2: $EXTERNAL/ph2/images}" \
  --report-only --export ${1:?give the export folder}
