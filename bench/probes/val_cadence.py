"""Replay cheaper validation cadences on runs that validated every epoch: ``python -m bench.val_cadence``.

``finetune.train`` trains the same whichever epochs it validates (``val.every_n_epochs``, ``val.start``;
``tests/finetune/test_validation_schedule.py``), so the epoch a cadence would pick, and its validation
balanced accuracy, can be read off the per-epoch validation log (``logs/metrics.csv``) of a run that
validated every epoch, without training again. For each run and cadence this prints the validations
made, the epoch picked (the first best among those validated, as the best checkpoint keeps it) and its
validation balanced accuracy minus the run's best (Δ), then per cadence over the runs: the mean
validations, the mean and the worst Δ, and in how many runs the epoch picked differs. The test score of an epoch that was not the
run's best is not known from the log (only the best epoch's checkpoint was kept).

Example (the cells of a grid that validated every epoch)::

    python -m bench.val_cadence $DERMKIT_RUNS/bench/cpu-real/cells/f0.01-*-real-s{0,1,2} --every 1 3 5 10 --start 0 0.5
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass
from pathlib import Path

from dermkit.console import entry_point, print_table
from dermkit.errors import DermkitError
from dermkit.validation_epochs import validated_epochs

MONITOR = "val/balanced_accuracy"  # what finetune.train's best checkpoint maximises


@dataclass(frozen=True)
class Pick:
    """What one cadence picks in one run.

    Attributes:
        validations: epochs validated.
        epoch: the 0-based epoch picked (the first best of those validated).
        score: its validation balanced accuracy.
    """

    validations: int
    epoch: int
    score: float


def read_curve(run_dir: Path) -> dict[int, float]:
    """``{epoch: validation balanced accuracy}`` from a ``finetune.train`` run's ``logs/metrics.csv``.

    Raises:
        DermkitError: no readable log, or it holds no validation score.
    """
    path = run_dir / "logs" / "metrics.csv"
    try:
        with path.open(newline="") as handle:
            curve = {int(row["epoch"]): float(row[MONITOR]) for row in csv.DictReader(handle) if row.get(MONITOR)}
    except (OSError, KeyError, ValueError) as err:
        raise DermkitError(f"{path}: cannot read the validation log of a finetune.train run ({err}).") from None
    if not curve:
        raise DermkitError(f"{path} holds no {MONITOR}: give a finetune.train run folder that validated.")
    return curve


def replay(curve: dict[int, float], every_n_epochs: int, start: float) -> Pick:
    """The epoch a cadence picks from a curve validated every epoch (its epochs: 0 to the last in the curve).

    Raises:
        DermkitError: the curve lacks an epoch the cadence validates (the run did not validate every epoch).
    """
    epochs = validated_epochs(max(curve) + 1, every_n_epochs, start)
    missing = [e for e in epochs if e not in curve]
    if missing:
        raise DermkitError(f"The run has no validation score for epoch(s) {missing}: replay needs a run that "
                           "validated every epoch (val.every_n_epochs=1, val.start=0).")
    best = max(epochs, key=lambda e: (curve[e], -e))
    return Pick(len(epochs), best, curve[best])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.val_cadence", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="finetune.train run folders (logs/metrics.csv)")
    parser.add_argument("--every", nargs="+", type=int, default=[1, 2, 3, 5], metavar="N",
                        help="val.every_n_epochs values to replay")
    parser.add_argument("--start", nargs="+", type=float, default=[0.0], metavar="S", help="val.start values to replay")
    return parser.parse_args(argv)


@entry_point
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cadences = [(every, start) for every in args.every for start in args.start]
    rows = []
    picks: dict[tuple[int, float], list[tuple[Pick, Pick]]] = {cadence: [] for cadence in cadences}
    for run in args.runs:
        curve = read_curve(run)
        best = replay(curve, 1, 0.0)
        for every, start in cadences:
            pick = replay(curve, every, start)
            picks[(every, start)].append((pick, best))
            rows.append([run.name, f"{every}", f"{start:g}", f"{pick.validations}", f"{pick.epoch}",
                         f"{pick.score:.4f}", f"{pick.score - best.score:+.4f}"])
    print_table("validation cadences replayed (epochs 0-based)",
                ["run", "every", "start", "validated", "epoch", "val bal. acc.", "Δ"], rows)
    summary = []
    for (every, start), pairs in picks.items():
        deltas = [pick.score - best.score for pick, best in pairs]
        summary.append([f"{every}", f"{start:g}", f"{sum(p.validations for p, _ in pairs) / len(pairs):.1f}",
                        f"{sum(deltas) / len(deltas):+.4f}", f"{min(deltas):+.4f}",
                        f"{sum(p.epoch != b.epoch for p, b in pairs)} of {len(pairs)}"])
    print_table(f"per cadence, over {len(args.runs)} run(s)",
                ["every", "start", "validated", "mean Δ", "worst Δ", "other epoch"], summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
