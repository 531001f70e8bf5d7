"""Compare two sets of fine-tuning cells seed by seed, from any run folders: ``python -m bench.compare_cells``.

A grid's report compares the arms of that grid. This compares cells that no one grid holds: an arm
against a control trained for as many optimiser steps, the same arm on two machines, the cells of an
export (``docs/results/<preset>/cells``) against a new run. Cells pair by the ``seed`` in their
``metrics.json``; a seed on one side only is listed and left out, and no pair at all is an error. The
two cells of every pair must have been tested on the same images (the same split settings). For each
class (default: the minority classes and nevus) it gives the paired difference in test recall and in
one-vs-rest AUROC (from the ``prob_<class>`` columns), ``--cells`` minus ``--against``, with the grid
report's two intervals (a bootstrap over seeds, then test images, and the Student-t interval of the
per-seed differences) and verdict, then the difference in balanced accuracy the same way (bootstrap
within classes); with ``--target``, whether the comparison meets issue 12's target, by the grid report's
rule (``--against`` then being an oversampling arm). ``--plan-out`` writes a seed plan of these
comparisons (commit it before running more seeds); ``--plan`` marks the comparisons a plan registered.
It reads ``metrics.json`` and ``predictions.csv`` only, so an export is enough; every path is checked
before any work.

Example (issue 12's equal-steps control)::

    python -m bench.compare_cells --names synth8 oversample-e71 \\
        --cells $R/bench/cpu-synth/cells/f0.1-random-synth8-s{0,1,2} \\
        --against $R/steps-control/f0.1-random-oversample-e71-s{0,1,2} --target --out compare.md
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from dermkit.console import console, entry_point
from dermkit.errors import DermkitError
from dermkit.vocab import MINORITY_CLASSES
from bench.report.comparison_plan import (ComparisonKey, PlannedComparison, SeedPlan, check_parent, check_plan_path, new_plan,
                        planned_comparison, read_plan, write_plan)
from bench.report.effects import (BALANCED_ACCURACY, MAJORITY_CLASS, METRIC_NAMES, TARGET_CLASSES, TARGET_GAIN, CellKey,
                                  ReportContext, meets_target, paired_balanced_accuracy, synthetic_effects,
                                  target_gains)
from bench.report.markdown import _md_table, _signed, _signed_or_estimate, _verdict_cell
from bench.report.tables import AUROC_RULE, METRIC_HEADER, VERDICT_RULE, _metric_cells, target_rule, with_auroc
from bench.report.results import METRICS_FILE, PREDICTIONS_FILE, read_metrics, read_predictions
from bench.report.verdicts import DELTAS, decide

DEFAULT_CLASSES = [*MINORITY_CLASSES, MAJORITY_CLASS]
# The key both sides' cells share in synthetic_effects' table but for the arm: (fraction, init, arm, seed).
_FRACTION, _INIT = 0.0, "compared"
EPILOG = VERDICT_RULE.replace("**", "") + " " + AUROC_RULE


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.compare_cells", description=__doc__.splitlines()[0],
                                     epilog=EPILOG)
    parser.add_argument("--cells", nargs="+", required=True, type=Path, metavar="DIR",
                        help="cell folders of the side compared (metrics.json, predictions.csv), one per seed")
    parser.add_argument("--against", nargs="+", required=True, type=Path, metavar="DIR",
                        help="cell folders of the baseline, one per seed; differences are --cells minus --against")
    parser.add_argument("--names", nargs=2, default=["cells", "against"], metavar=("CELLS", "AGAINST"),
                        help="what the tables call the two sides")
    parser.add_argument("--classes", nargs="+", default=DEFAULT_CLASSES,
                        help="classes whose recall is compared (default: the minority classes and nv)")
    parser.add_argument("--n-bootstrap", type=int, default=5000, help="bootstrap replicates (the grid's report: "
                        "5000)")
    parser.add_argument("--level", type=float, default=0.95, help="confidence level of both intervals")
    parser.add_argument("--target", action="store_true",
                        help="also say whether --cells meets issue 12's target against --against (an oversampling "
                        f"arm): the grid report's rule, +{TARGET_GAIN * 100:.0f} recall points with the verdict helps "
                        f"in {TARGET_CLASSES} minority classes and balanced accuracy not lower")
    parser.add_argument("--out", type=Path, default=None, help="also write the tables to this markdown file")
    parser.add_argument("--plan-out", type=Path, default=None, metavar="PLAN.json",
                        help="write a seed plan of these comparisons: per class and metric the seeds the spread of the "
                        "per-seed differences says deciding needs (PLAN.json, and PLAN.md beside it); commit it before "
                        "running more seeds")
    parser.add_argument("--plan", type=Path, default=None, metavar="PLAN.json",
                        help="a seed plan (bench.seed_plan or --plan-out): mark the comparisons it registered as "
                        "planned")
    return parser.parse_args(argv)


@dataclass(frozen=True)
class SeedCell:
    """A cell folder, the test balanced accuracy its metrics.json gives and its label fraction (None: not
    recorded)."""

    path: Path
    balanced_accuracy: float
    fraction: float | None = None


@dataclass(frozen=True)
class Pairing:
    """The seeds of the two sides, paired.

    Attributes:
        seeds: seeds with a cell on both sides, sorted.
        cells_only: seeds with a ``--cells`` cell only.
        against_only: seeds with an ``--against`` cell only.
    """

    seeds: list[int]
    cells_only: list[int]
    against_only: list[int]


def pair_seeds(cells: dict[int, SeedCell], against: dict[int, SeedCell]) -> Pairing:
    """Pair the two sides by seed.

    Raises:
        DermkitError: no seed on both sides.
    """
    seeds = sorted(set(cells) & set(against))
    if not seeds:
        raise DermkitError(f"No seed in common: --cells has seeds {sorted(cells)}, --against {sorted(against)}; "
                           "give cells of the same seeds on both sides.")
    return Pairing(seeds, sorted(set(cells) - set(against)), sorted(set(against) - set(cells)))


def unpaired_lines(pairing: Pairing, cells: dict[int, SeedCell], against: dict[int, SeedCell]) -> list[str]:
    """A line naming each seed on one side only, left out of every comparison (nothing when all pair)."""
    left_out = [f"`--cells` seed {s} (`{cells[s].path}`)" for s in pairing.cells_only]
    left_out += [f"`--against` seed {s} (`{against[s].path}`)" for s in pairing.against_only]
    if not left_out:
        return []
    return [f"Unpaired, left out (no cell of the same seed on the other side): {'; '.join(left_out)}.", ""]


def _by_seed(dirs: list[Path], side: str) -> dict[int, SeedCell]:
    """Each cell by the seed its metrics.json names.

    Raises:
        DermkitError: a folder without readable metrics, or two folders of one seed.
    """
    seeds: dict[int, SeedCell] = {}
    for cell_dir in dirs:
        metrics = read_metrics(cell_dir)
        seed = metrics.get("seed")
        if seed is None:
            raise DermkitError(f"{cell_dir / 'metrics.json'} names no seed (written by finetune.train).")
        if int(seed) in seeds:
            raise DermkitError(f"{side}: {seeds[int(seed)].path} and {cell_dir} are both seed {seed}; give one "
                               "cell per seed.")
        fraction = metrics.get("fraction")
        seeds[int(seed)] = SeedCell(cell_dir, float(metrics["balanced_accuracy"]),
                                    None if fraction is None else float(fraction))
    return seeds


def check_paths(args: argparse.Namespace) -> None:
    """Every path, before any work: each cell folder holds its two files, ``--out`` and ``--plan-out`` can be
    written, ``--plan`` exists.

    Raises:
        DermkitError: naming the flag and the path.
    """
    if args.out is not None:
        if args.out.is_dir():
            raise DermkitError(f"--out {args.out} is a folder; give a file name for the markdown tables, e.g. "
                               f"{args.out / 'compare.md'}.")
        check_parent(args.out, "--out")
    if args.plan_out is not None:
        check_plan_path(args.plan_out, "--plan-out")
    if args.plan is not None and not args.plan.is_file():
        raise DermkitError(f"--plan {args.plan} is not a file; give a plan.json written by python -m bench.seed_plan "
                           "or --plan-out.")
    for flag, dirs in (("--cells", args.cells), ("--against", args.against)):
        for cell_dir in dirs:
            if not cell_dir.is_dir():
                raise DermkitError(f"{flag} {cell_dir} is not a folder; give the cell folders (each with "
                                   f"{METRICS_FILE} and {PREDICTIONS_FILE}).")
            missing = [name for name in (METRICS_FILE, PREDICTIONS_FILE) if not (cell_dir / name).is_file()]
            if missing:
                raise DermkitError(f"{flag} {cell_dir} has no {' or '.join(missing)} (written by finetune.train); "
                                   "give a finished cell.")


def check_oversampling(dirs: list[Path]) -> None:
    """``--target`` judges against oversampling: every ``--against`` cell must have trained with the balanced sampler
    (its ``config.yaml``, written by ``finetune.train``, says ``sampler: balanced``).

    Raises:
        DermkitError: a cell without a readable ``config.yaml``, or one that trained with another sampler.
    """
    for cell_dir in dirs:
        path = cell_dir / "config.yaml"
        try:
            sampler = OmegaConf.select(OmegaConf.load(path), "sampler")
        except Exception as err:  # missing, not YAML or not a mapping: how the cell sampled is unknown
            raise DermkitError(f"--target judges issue 12's target against oversampling, but {path} cannot be read "
                               f"to tell how that cell sampled ({err}). Copy the cell's config.yaml beside its "
                               "metrics, or leave --target out.") from None
        if sampler != "balanced":
            raise DermkitError(f"--target judges issue 12's target against oversampling, but {path} says "
                               f"sampler: {sampler}, not balanced. Give oversampling cells to --against, or leave "
                               "--target out.")


@dataclass(frozen=True)
class Comparison:
    """What :func:`compare` found.

    Attributes:
        lines: the tables as markdown lines.
        planned: every comparison with its intervals and decision, as a seed plan records it.
    """

    lines: list[str]
    planned: list[PlannedComparison]


def _planned_cell(plan: SeedPlan | None, fraction: float | None, *keys: ComparisonKey | None) -> list[str]:
    """The ``planned`` column (only with ``--plan``): which of the row's metrics the plan registered, for cells
    of ``fraction`` (:meth:`SeedPlan.planned`)."""
    if plan is None:
        return []
    return [", ".join(METRIC_NAMES[k.metric] for k in keys
                      if k is not None and plan.planned(k, fraction) is not None) or "no"]


def common_fraction(cells: list[SeedCell]) -> float | None:
    """The label fraction every cell records, or None where they differ or one does not record it."""
    fractions = {c.fraction for c in cells}
    return fractions.pop() if len(fractions) == 1 else None


def compare(cells: dict[int, SeedCell], against: dict[int, SeedCell], names: tuple[str, str], classes: list[str],
            ctx: ReportContext, target: bool = False, plan: SeedPlan | None = None) -> Comparison:
    """The comparison: per-seed balanced accuracy, recall and AUROC per class, balanced accuracy.

    Args:
        cells: cell by seed, the side compared.
        against: cell by seed, the baseline (seeds on one side only are listed and left out).
        names: what the tables call the two sides.
        classes: classes compared; those without test images are left out.
        ctx: the bootstrap settings (``n_bootstrap``, ``level``, ``bootstrap_seed``).
        target: end with issue 12's target verdict (``against`` being an oversampling arm).
        plan: a seed plan whose comparisons are marked planned.

    Raises:
        DermkitError: no seed in common, two sides named alike, or cells tested on different images.
    """
    name, baseline = names
    if name == baseline:
        raise DermkitError(f"--names: both sides are called {name!r}; give two names.")
    pairing = pair_seeds(cells, against)
    seeds = pairing.seeds
    table: dict[CellKey, dict[str, str]] = {}
    for seed in seeds:
        table[CellKey(_FRACTION, _INIT, name, seed)] = {"cell_id": str(cells[seed].path)}
        table[CellKey(_FRACTION, _INIT, baseline, seed)] = {"cell_id": str(against[seed].path)}
    predictions = {str(c.path): read_predictions(c.path) for s in seeds for c in (cells[s], against[s])}
    effects = [e for e in synthetic_effects(table, predictions.__getitem__, classes, ctx, name, baseline)
               if e.scope == "all"]
    pairs = [(predictions[str(against[s].path)], predictions[str(cells[s].path)]) for s in seeds]
    interval, per_seed, over_seeds = paired_balanced_accuracy(pairs, ctx, f"{name} and {baseline}")
    balanced = decide(interval, over_seeds, DELTAS[BALANCED_ACCURACY], ctx.level)
    balanced_key = ComparisonKey(BALANCED_ACCURACY, "", name, baseline)

    lines = [f"Seeds compared: {', '.join(map(str, seeds))}; differences are `{name}` minus `{baseline}`, paired by "
             "seed and test image.", "", *unpaired_lines(pairing, cells, against),
             *_md_table(["seed", f"`{name}` cell", f"`{baseline}` cell", f"balanced accuracy `{name}`",
                         f"balanced accuracy `{baseline}`", "difference"],
                        [[str(s), f"`{cells[s].path}`", f"`{against[s].path}`", f"{cells[s].balanced_accuracy:.3f}",
                          f"{against[s].balanced_accuracy:.3f}", f"{d:+.3f}"] for s, d in zip(seeds, per_seed)]), ""]
    planned_header = [] if plan is None else ["planned"]
    fraction = common_fraction([side[s] for s in seeds for side in (cells, against)])
    rows = [[e.klass, *_metric_cells(e), *_metric_cells(a), str(e.images),
             *_planned_cell(plan, fraction, e.key, a.key if a else None)] for e, a in with_auroc(effects)]
    rows.append(["balanced accuracy", _signed(interval), _signed_or_estimate(over_seeds), _verdict_cell(balanced),
                 "-", "-", "-", str(pairs[0][0].true.size), *_planned_cell(plan, fraction, balanced_key)])
    lines += _md_table(["class", *METRIC_HEADER, "test images", *planned_header], rows)
    lines += ["", f"{ctx.level:.0%} intervals: a percentile bootstrap over seeds, then test images "
              f"({ctx.n_bootstrap} replicates; for balanced accuracy within each class), and the Student-t interval "
              "of the per-seed differences. " + AUROC_RULE + " " + VERDICT_RULE]
    if plan is not None:
        lines += ["", f"*planned*: registered in the seed plan made {plan.created} from seeds "
                  f"{', '.join(map(str, plan.seeds))} of {plan.source}; the other rows are exploratory."]
    if target:
        gains = target_gains(effects, name, baseline)
        met = meets_target(gains, over_seeds.estimate)
        lines += ["", f"Target (issue 12): `{name}` {target_rule(f'`{baseline}`')} (the mean of the per-seed "
                  f"differences at least 0). Classes with the gain: {', '.join(gains) or 'none'}; balanced accuracy "
                  f"{over_seeds.estimate:+.3f}: **{'met' if met else 'not met'}**."]
    planned = [planned_comparison(e.key, e.interval, e.over_seeds, e.decision) for e in effects]
    planned.append(planned_comparison(balanced_key, interval, over_seeds, balanced))
    return Comparison(lines, planned)


@entry_point
def main(argv: list[str] | None = None) -> int:
    """Compare the cells, print the tables and, with ``--out``, write them; with ``--plan-out``, write the plan;
    returns 0."""
    args = parse_args(argv)
    if args.n_bootstrap < 1 or not 0 < args.level < 1:
        raise DermkitError(f"--n-bootstrap must be at least 1 and --level in (0, 1); got {args.n_bootstrap} and "
                           f"{args.level}.")
    check_paths(args)
    plan = read_plan(args.plan) if args.plan is not None else None
    ctx = ReportContext(preset="compare_cells", about="", command="", data={}, test_counts={},
                        minority_classes=list(args.classes), level=args.level, n_bootstrap=args.n_bootstrap)
    names = (args.names[0], args.names[1])
    if args.target:
        check_oversampling(args.against)
    cells, against = _by_seed(args.cells, "--cells"), _by_seed(args.against, "--against")
    result = compare(cells, against, names, list(args.classes), ctx, target=args.target, plan=plan)
    console.print("\n".join(result.lines), markup=False, highlight=False, soft_wrap=True)
    command = "python -m bench.compare_cells " + shlex.join(sys.argv[1:] if argv is None else argv)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join([f"# `{names[0]}` against `{names[1]}`", "", f"`{command}`", "", *result.lines,
                                       ""]))
        console.print(f"wrote {args.out}")
    if args.plan_out is not None:
        source = (f"`--cells` {', '.join(str(cells[s].path) for s in sorted(cells))} against `--against` "
                  f"{', '.join(str(against[s].path) for s in sorted(against))}")
        plan_paths = write_plan(args.plan_out, new_plan(command, source, pair_seeds(cells, against).seeds, args.level,
                                                        result.planned))
        console.print(f"wrote {' and '.join(map(str, plan_paths))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
