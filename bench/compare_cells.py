"""Compare two sets of fine-tuning cells seed by seed, from any run folders: ``python -m bench.compare_cells``.

A grid's report compares the arms of that grid. This compares cells that no one grid holds: an arm
against a control trained for as many optimiser steps, the same arm on two machines, the cells of an
export (``docs/results/<preset>/cells``) against a new run. Cells pair by the ``seed`` in their
``metrics.json``, and the two cells of every pair must have been tested on the same images (the same
split settings). For each class (default: the minority classes and nevus) it gives the paired
difference in test recall, ``--cells`` minus ``--against``, with the grid report's two intervals (a
percentile bootstrap over seeds and test images, and the Student-t interval of the per-seed
differences) and verdict, then the difference in balanced accuracy the same way (bootstrap within
classes); with ``--target``, whether the comparison meets issue 12's target, by the grid report's rule
(``--against`` then being an oversampling arm). It reads ``metrics.json`` and ``predictions.csv`` only,
so an export is enough.

Example (issue 12's equal-steps control)::

    python -m bench.compare_cells --names synth8 oversample-e71 \\
        --cells $R/bench/cpu-synth/cells/f0.1-random-synth8-s{0,1,2} \\
        --against $R/steps-control/f0.1-random-oversample-e71-s{0,1,2} --target --out compare.md
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import NamedTuple

from omegaconf import OmegaConf

from dermkit.console import console, entry_point
from dermkit.errors import DermkitError
from dermkit.vocab import MINORITY_CLASSES
from bench.report import (MAJORITY_CLASS, TARGET_CLASSES, TARGET_GAIN, CellKey, ReportContext, _md_table, _signed,
                          _signed_or_estimate, meets_target, paired_balanced_accuracy, synthetic_effects, target_gains,
                          target_rule)
from bench.results import read_metrics, read_predictions
from bench.stats import verdict

DEFAULT_CLASSES = [*MINORITY_CLASSES, MAJORITY_CLASS]
# The key both sides' cells share in synthetic_effects' table but for the arm: (fraction, init, arm, seed).
_FRACTION, _INIT = 0.0, "compared"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.compare_cells", description=__doc__.splitlines()[0])
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
    return parser.parse_args(argv)


class Cell(NamedTuple):
    """A cell folder and the test balanced accuracy its metrics.json gives."""

    path: Path
    balanced_accuracy: float


def _by_seed(dirs: list[Path], side: str) -> dict[int, Cell]:
    """Each cell by the seed its metrics.json names.

    Raises:
        DermkitError: a folder without readable metrics, or two folders of one seed.
    """
    seeds: dict[int, Cell] = {}
    for cell_dir in dirs:
        metrics = read_metrics(cell_dir)
        seed = metrics.get("seed")
        if seed is None:
            raise DermkitError(f"{cell_dir / 'metrics.json'} names no seed (written by finetune.train).")
        if int(seed) in seeds:
            raise DermkitError(f"{side}: {seeds[int(seed)].path} and {cell_dir} are both seed {seed}; give one "
                               "cell per seed.")
        seeds[int(seed)] = Cell(cell_dir, float(metrics["balanced_accuracy"]))
    return seeds


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


def compare(cells: dict[int, Cell], against: dict[int, Cell], names: tuple[str, str], classes: list[str],
            ctx: ReportContext, target: bool = False) -> list[str]:
    """The comparison as markdown lines: per-seed balanced accuracy, recall per class, balanced accuracy.

    Args:
        cells: cell by seed, the side compared.
        against: cell by seed, the baseline (only seeds in both are compared).
        names: what the tables call the two sides.
        classes: classes whose recall is compared; those without test images are left out.
        ctx: the bootstrap settings (``n_bootstrap``, ``level``, ``bootstrap_seed``).
        target: end with issue 12's target verdict (``against`` being an oversampling arm).

    Raises:
        DermkitError: no seed in common, two sides named alike, or cells tested on different images.
    """
    name, baseline = names
    if name == baseline:
        raise DermkitError(f"--names: both sides are called {name!r}; give two names.")
    seeds = sorted(set(cells) & set(against))
    if not seeds:
        raise DermkitError(f"No seed in common: --cells has seeds {sorted(cells)}, --against {sorted(against)}.")
    table: dict[CellKey, dict[str, str]] = {}
    for seed in seeds:
        table[(_FRACTION, _INIT, name, seed)] = {"cell_id": str(cells[seed].path)}
        table[(_FRACTION, _INIT, baseline, seed)] = {"cell_id": str(against[seed].path)}
    predictions = {str(c.path): read_predictions(c.path) for s in seeds for c in (cells[s], against[s])}
    effects = [e for e in synthetic_effects(table, predictions.__getitem__, classes, ctx, name, baseline)
               if e.scope == "all"]
    pairs = [(predictions[str(against[s].path)], predictions[str(cells[s].path)]) for s in seeds]
    interval, per_seed, over_seeds = paired_balanced_accuracy(pairs, ctx, f"{name} and {baseline}")

    lines = [f"Seeds compared: {', '.join(map(str, seeds))}; differences are `{name}` minus `{baseline}`, paired by "
             "seed and test image.", "",
             *_md_table(["seed", f"`{name}` cell", f"`{baseline}` cell", f"balanced accuracy `{name}`",
                         f"balanced accuracy `{baseline}`", "difference"],
                        [[str(s), f"`{cells[s].path}`", f"`{against[s].path}`", f"{cells[s].balanced_accuracy:.3f}",
                          f"{against[s].balanced_accuracy:.3f}", f"{d:+.3f}"] for s, d in zip(seeds, per_seed)]), ""]
    rows = [[e.klass, _signed(e.interval), _signed_or_estimate(e.over_seeds), str(e.images), f"**{e.verdict}**"]
            for e in effects]
    rows.append(["balanced accuracy", _signed(interval), _signed_or_estimate(over_seeds), str(pairs[0][0].true.size),
                 f"**{verdict(interval, over_seeds)}**"])
    lines += _md_table(["class", "Δ recall [bootstrap]", "over seeds [t-interval]", "test images", "verdict"],
                       rows)
    lines += ["", f"{ctx.level:.0%} intervals: a percentile bootstrap over seeds and test images ({ctx.n_bootstrap} "
              "replicates; for balanced accuracy within each class) and the Student-t interval of the per-seed "
              "differences. **helps** / **hurts**: both on the same side of 0; otherwise no detectable effect."]
    if target:
        gains = target_gains(effects, name, baseline)
        met = meets_target(gains, over_seeds.estimate)
        lines += ["", f"Target (issue 12): `{name}` {target_rule(f'`{baseline}`')} (the mean of the per-seed "
                  f"differences at least 0). Classes with the gain: {', '.join(gains) or 'none'}; balanced accuracy "
                  f"{over_seeds.estimate:+.3f}: **{'met' if met else 'not met'}**."]
    return lines


@entry_point
def main(argv: list[str] | None = None) -> None:
    """Compare the cells, print the tables and, with ``--out``, write them."""
    args = parse_args(argv)
    if args.n_bootstrap < 1 or not 0 < args.level < 1:
        raise DermkitError(f"--n-bootstrap must be at least 1 and --level in (0, 1); got {args.n_bootstrap} and "
                           f"{args.level}.")
    ctx = ReportContext(preset="compare_cells", about="", command="", data={}, test_counts={},
                        minority_classes=list(args.classes), level=args.level, n_bootstrap=args.n_bootstrap)
    names = (args.names[0], args.names[1])
    if args.target:
        check_oversampling(args.against)
    lines = compare(_by_seed(args.cells, "--cells"), _by_seed(args.against, "--against"), names,
                    list(args.classes), ctx, target=args.target)
    console.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)
    if args.out is not None:
        command = "python -m bench.compare_cells " + shlex.join(sys.argv[1:] if argv is None else argv)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join([f"# `{names[0]}` against `{names[1]}`", "", f"`{command}`", "", *lines, ""]))
        console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
