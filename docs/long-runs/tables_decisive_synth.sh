#!/bin/bash
# The per-class tables of cpu-decisive-synth from its export (bench.compare_cells: paired by seed, hierarchical
# bootstrap over seeds then test images, verdicts): synth8 against oversample (the planned comparison, marked from
# its seed plan), and each against real. Reads cells, writes <arm>-vs-<baseline>-f0.1.md beside them.
# usage, from the checkout: docs/long-runs/tables_decisive_synth.sh docs/results/cpu-decisive-synth
D=${1:?give the export folder}
[ -d "$D/cells" ] || { echo "$D has no cells/ folder: give the folder --export wrote" >&2; exit 2; }
PLAN=docs/results/decisive-plan/synth8-vs-oversample.json
compare() {  # ARM BASELINE [PLAN]
  local cells against
  cells=$(ls -d "$D"/cells/f0.1-random-$1-s* | sort -V)
  against=$(ls -d "$D"/cells/f0.1-random-$2-s* | sort -V)
  ${PY:-python} -m bench.compare_cells --cells $cells --against $against --names "$1" "$2" ${3:+--plan "$3"} \
    --out "$D/$1-vs-$2-f0.1.md" || exit 1
}
compare synth8 oversample $PLAN
compare synth8 real
compare oversample real
