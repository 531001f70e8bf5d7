#!/bin/bash
# The per-class tables of cpu-decisive-synth from its export (bench.compare_cells: paired by seed, hierarchical
# bootstrap over seeds then test images, verdicts): synth8 against oversample (the planned comparison, marked from
# its seed plan), and each against real. Reads cells, writes <arm>-vs-<baseline>-f0.1.md beside them (a comparison
# whose arm has no finished cells yet is skipped).
# usage, from the checkout: docs/long-runs/tables_decisive_synth.sh docs/results/cpu-decisive-synth
D=${1:?give the export folder}
[ -d "$D/cells" ] || { echo "$D has no cells/ folder: give the folder --export wrote" >&2; exit 2; }
PLAN=docs/results/decisive-plan/synth8-vs-oversample.json
RESCORED=docs/results/cpu-decisive-ssl/rescored-f0.1
cells_of() {  # ARM: its cells in seed order; the real arm's seeds 0-3 (reused from cpu-decisive-ssl, whose
  # predictions.csv kept 6 decimals) are read from that export's 9-digit re-scoring, as its own tables are
  local cell
  for cell in $(ls -d "$D"/cells/f0.1-random-$1-s* | sort -V); do
    if [ -d "$RESCORED/$(basename "$cell")" ]; then echo "$RESCORED/$(basename "$cell")"; else echo "$cell"; fi
  done
}
compare() {  # ARM BASELINE [PLAN]
  local cells against
  cells=$(cells_of "$1" 2>/dev/null)
  against=$(cells_of "$2" 2>/dev/null)
  [ -n "$cells" ] && [ -n "$against" ] || { echo "$1 against $2: no $1 or $2 cells in $D yet, skipped"; return 0; }
  ${PY:-python} -m bench.compare_cells --cells $cells --against $against --names "$1" "$2" ${3:+--plan "$3"} \
    --out "$D/$1-vs-$2-f0.1.md" || exit 1
}
compare synth8 oversample $PLAN
compare synth8 real
compare oversample real
