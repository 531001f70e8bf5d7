"""A seed plan from a grid's finished cells: ``python -m bench.seed_plan --grid DIR --out plan.json``.

Reads a grid's folder (a run folder, or an export such as ``docs/results/<preset>``: ``results.csv`` and
``cells/<cell>/predictions.csv``), makes every paired comparison its report makes (:func:`bench.report.tables.
report_comparisons`: each synthetic arm against its baselines, per class, on recall and one-vs-rest
AUROC; each initialisation against random on balanced accuracy), and writes per comparison its
verdict and, undecided, the seeds the spread of its per-seed differences says deciding needs
(:func:`bench.report.verdicts.seeds_needed`), as ``plan.json`` and ``plan.md``. Commit the plan before running
the seeds; then give it to the grid's report (``report.plan=plan.json``), which marks the comparisons
it registered as planned and the others as exploratory. For two sets of cells outside one grid,
``python -m bench.compare_cells --plan-out`` writes the same kind of plan.

By default the plan registers the comparisons that carry the report's verdicts (pooled over fractions
and initialisations, and every initialisation against random); ``--scopes``, ``--arms``,
``--baselines``, ``--classes`` and ``--metrics`` choose among all of them.

Example::

    python -m bench.seed_plan --grid docs/results/cpu-synth --arms synth8 --baselines oversample oversample8 \\
        --scopes "fraction 0.1" --out docs/results/cpu-synth/plan.json
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from dermkit.console import console, entry_point, print_table
from dermkit.errors import DermkitError
from dermkit.vocab import MINORITY_CLASSES
from bench.report.comparison_plan import (PLAN_COLUMNS, PlannedComparison, check_plan_path, new_plan, plan_rows, planned_comparison,
                        write_plan)
from bench.report.effects import (AUROC, BALANCED_ACCURACY, RECALL, Comparisons, Effect, InitEffect, ReportContext,
                                  cell_table, report_comparisons)
from bench.report.tables import VERDICT_RULE
from bench.report.results import read_predictions, read_results

PROG = "python -m bench.seed_plan"
RESULTS_FILE = "results.csv"
CONSOLE_COLUMNS = ("metric", "class", "arm", "against", "conditions", "Δ", "verdict", "seeds needed")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0],
                                     epilog=VERDICT_RULE.replace("**", ""))
    parser.add_argument("--grid", required=True, type=Path, metavar="DIR",
                        help="a grid's run folder or export (results.csv and cells/)")
    parser.add_argument("--out", required=True, type=Path, metavar="PLAN.json",
                        help="the plan to write (PLAN.json, and PLAN.md beside it)")
    parser.add_argument("--minority", nargs="+", default=list(MINORITY_CLASSES), metavar="CLASS",
                        help="the grid's minority classes, as its synth.classes (default: "
                        f"{' '.join(MINORITY_CLASSES)}); nevus is compared besides")
    parser.add_argument("--arms", nargs="+", default=None, metavar="ARM",
                        help="plan only these sides compared (synthetic arms, or initialisations)")
    parser.add_argument("--baselines", nargs="+", default=None, metavar="ARM",
                        help="plan only comparisons against these (arms, or random)")
    parser.add_argument("--classes", nargs="+", default=None, metavar="CLASS", help="plan only these classes")
    parser.add_argument("--metrics", nargs="+", default=None, choices=[RECALL, AUROC, BALANCED_ACCURACY],
                        help="plan only these metrics")
    parser.add_argument("--scopes", nargs="+", default=None, metavar="SCOPE",
                        help="plan the comparisons pooled over these conditions ('all', 'fraction 0.1', 'init "
                        "simclr'; an initialisation's comparison at 'fraction 0.1' too) instead of the ones that carry "
                        "the report's verdicts")
    parser.add_argument("--n-bootstrap", type=int, default=5000, help="bootstrap replicates (the grid's report: 5000)")
    parser.add_argument("--level", type=float, default=0.95, help="confidence level (the grid's report: 0.95)")
    return parser.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    """Every path and number, before any work.

    Raises:
        DermkitError: naming the flag.
    """
    if args.n_bootstrap < 100 or not 0 < args.level < 1:
        raise DermkitError(f"--n-bootstrap must be at least 100 and --level in (0, 1); got {args.n_bootstrap} and "
                           f"{args.level}.")
    if not (args.grid / RESULTS_FILE).is_file() or not (args.grid / "cells").is_dir():
        raise DermkitError(f"--grid {args.grid} has no {RESULTS_FILE} and cells/; give a grid's run folder or its "
                           "export (e.g. docs/results/<preset>).")
    check_plan_path(args.out, "--out")


def _in_scope(scope: str, scopes: list[str]) -> bool:
    """Whether a comparison's conditions are among ``scopes`` (``fraction 0.1`` also names an initialisation's
    comparison at that fraction, ``fraction 0.1, arm real``)."""
    return any(scope == s or scope.startswith(s + ",") for s in scopes)


def select(found: Comparisons, args: argparse.Namespace) -> list[Effect | InitEffect]:
    """The comparisons the flags choose (by default those that carry the report's verdicts)."""
    chosen: list[Effect | InitEffect]
    if args.scopes is None:
        chosen = found.pooled()
    else:
        chosen = [c for c in [*found.synthetic, *found.arms, *found.inits] if _in_scope(c.key.scope, args.scopes)]
    return [c for c in chosen
            if (args.arms is None or c.key.arm in args.arms) and (args.baselines is None or c.key.against in
                                                                  args.baselines)
            and (args.classes is None or c.key.klass in args.classes or c.key.metric == BALANCED_ACCURACY)
            and (args.metrics is None or c.key.metric in args.metrics)]


def plan_grid(args: argparse.Namespace) -> tuple[list[int], list[PlannedComparison]]:
    """The grid's seeds and the chosen comparisons with their decisions.

    Raises:
        DermkitError: an unreadable results.csv or cell, or no comparison chosen.
    """
    rows = read_results(args.grid / RESULTS_FILE)
    cells = cell_table(rows)
    ctx = ReportContext(preset="seed_plan", about="", command="", data={}, test_counts={},
                        minority_classes=list(args.minority), level=args.level, n_bootstrap=args.n_bootstrap)
    found = report_comparisons(cells, lambda cell_id: read_predictions(args.grid / "cells" / cell_id), ctx)
    chosen = select(found, args)
    if not chosen:
        available = sorted({(c.key.arm, c.key.against, c.key.scope) for c in [*found.synthetic, *found.arms,
                                                                              *found.inits]})
        raise DermkitError(f"No comparison of {args.grid} matches --arms/--baselines/--classes/--metrics/--scopes; "
                           "it has (arm, against, conditions): "
                           + "; ".join(", ".join(a) for a in available[:40]) + ".")
    return sorted({k.seed for k in cells}), [planned_comparison(c.key, c.interval, c.over_seeds, c.decision)
                                            for c in chosen]


@entry_point
def main(argv: list[str] | None = None) -> int:
    """Write the plan of a grid's comparisons and print its table; returns 0."""
    args = parse_args(argv)
    check_args(args)
    command = f"{PROG} " + shlex.join(sys.argv[1:] if argv is None else argv)
    seeds, comparisons = plan_grid(args)
    plan = new_plan(command, str(args.grid), seeds, args.level, comparisons)
    shown = [PLAN_COLUMNS.index(c) for c in CONSOLE_COLUMNS]  # a terminal is narrower than plan.md
    print_table(f"seed plan: {plan.seeds_to_run()} seeds decide every comparison more seeds can decide",
                CONSOLE_COLUMNS, [[row[i] for i in shown] for row in plan_rows(plan)])
    written = write_plan(args.out, plan)
    console.print(f"wrote {' and '.join(map(str, written))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
