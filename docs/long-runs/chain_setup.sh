# Sourced by chain_decisive.sh and chain_decisive_ssl.sh (R and WT set, the worktree WT moved to main; set -u):
# their settings, the backbone step, and the move into the worktree.
PY=${PY:-python}
EXTERNAL=${DERMKIT_EXTERNAL:-/work/shared/data/external}
: "${DERMKIT_HAM10000:?set DERMKIT_HAM10000 to the HAM10000 folder}"
export DERMKIT_RUNS=$R DERMKIT_CACHE=${DERMKIT_CACHE:-$R/cache}
BACKBONE=$R/ssl/simclr_ham64_long/backbone.safetensors
EXT="grid.external={isic2018_test: $EXTERNAL/isic2018_test/images, ph2: $EXTERNAL/ph2/images}"
cd "$WT" || exit 1
echo "$(date -u +%F' '%T) chain start at $(git rev-parse --short HEAD)"

cpu_has_bf16() {  # bfloat16 instructions (AVX512-BF16 or AMX): dermkit.precision's rule
  $PY -c "import sys, dermkit.precision as p; sys.exit(not p.cpu_runs_bf16_natively())"
}

make_backbone() {  # the 100-epoch SimCLR backbone, alone on both cores, unless it is there (docs/benchmarks.md,
  # "Long SimCLR runs"; float32 would be the evidence default; bf16-mixed with device augmentation is how
  # cpu-real's was made, and float32 where the CPU has no bfloat16 instructions, as bf16 is slower there)
  [ -f "$BACKBONE" ] && return 0
  local precision=bf16-mixed
  cpu_has_bf16 || precision=32-true
  OMP_NUM_THREADS=2 nice -n 10 $PY -m ssl.pretrain --config configs/ssl_simclr_ham64_long.yaml \
    --out $R/ssl/simclr_ham64_long trainer.precision=$precision data.augment_on=device
}
