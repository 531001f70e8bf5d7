"""Cells finished elsewhere: taking them over from an ``--export`` folder or another grid's run folder
(``--reuse``), and exporting a grid's finished cells and report (``--export``).
"""

from __future__ import annotations

import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

from dermkit.console import console
from dermkit.errors import DermkitError
from bench.grid.external import (PREDICT_KIND, PREDICT_RECORDS, export_external_reports, export_predictions,
                                 exported_copy)
from bench.grid.keys import DONE_FILE, Step, adopt_finished, best_checkpoint, copy_finished, read_done
from bench.report.results import read_results


# A cell's record of how it ran: exported with it, and taken back with it by --reuse, so that a cell
# reused on a new machine and exported again still says how it was trained (bench.compare_cells reads it).
CELL_RECORDS = ("config.yaml", "run.json")


def reuse_cells(steps: list[Step], source: Path, out: Path, fingerprint: dict[str, Any]) -> list[str]:
    """Take every cell that finished in ``source`` (a folder written by :func:`export_results`, or
    another grid's run folder; checked by :func:`validate`) under the key it has here; returns the
    names taken.

    Left to run, with the reason counted in the message: a cell absent from ``source`` or not finished
    there (a run folder's cell under way); a cell whose
    inputs (a pretraining or generator step) have not finished here, so it cannot be keyed yet; a
    cell whose checkpoint another step reads (a ``filtered`` arm's filter) when ``source`` lacks that
    checkpoint (an export: checkpoints are not exported; a run folder has them, and the checkpoint
    is copied with the cell); a cell whose key differs (other settings, data or inputs). A cell taken
    comes with its :data:`CELL_RECORDS` where ``source`` has them.
    """
    cells = source / "cells"
    predicting: dict[str, list[Step]] = defaultdict(list)  # cell step name -> its external predict steps
    for step in (s for s in steps if s.kind == PREDICT_KIND):
        predicting[step.inputs[0].name].append(step)
    # A cell whose checkpoint another step will read is taken only with it; a predict step copied with the
    # cell (an export keeps them) reads none.
    read_by_others = {i.name for step in steps if step.kind != PREDICT_KIND for i in step.inputs}
    read_by_others |= {name for name, predicts in predicting.items()
                       if any(not (exported_copy(p, source) / DONE_FILE).is_file() for p in predicts)}
    taken: list[str] = []
    left: dict[str, list[str]] = defaultdict(list)
    for step in (s for s in steps if s.cell is not None):
        folder = cells / step.cell.cell_id
        if not folder.is_dir():
            left["not in the folder"].append(step.name)
            continue
        if not (folder / DONE_FILE).is_file():  # a run folder's cell still under way (or stopped) there
            left["not finished there"].append(step.name)
            continue
        extra = CELL_RECORDS
        if step.name in read_by_others:  # a filter reads its checkpoint: take the cell only with it
            checkpoint = saved_best_checkpoint(folder)
            if checkpoint is None:
                left["another step reads its checkpoint, which the folder lacks"].append(step.name)
                continue
            extra = (*extra, checkpoint)
        try:
            key = step.key(out, fingerprint)
        except RuntimeError:  # an input not finished here: its digests are not known yet
            left["an input has not finished here"].append(step.name)
            continue
        if adopt_finished(step, key, folder, extra):
            if step.name in read_by_others or adopt_predictions(predicting[step.name], source, out, fingerprint):
                taken.append(step.name)
            else:  # an external set changed since the export: its predict step needs the checkpoint, not there
                shutil.rmtree(step.out_dir)
                left["an external set changed and the folder lacks the checkpoint"].append(step.name)
        elif read_done(step) is None:
            left["other settings, data or inputs"].append(step.name)
    reasons = "; ".join(f"{len(names)}: {reason}" for reason, names in left.items())
    console.print(f"reused {len(taken)} cell(s) from {cells}" + (f"; not reused ({reasons})" if reasons else ""))
    if left["other settings, data or inputs"]:
        console.print("keys differ for " + ", ".join(left["other settings, data or inputs"]), highlight=False)
    return taken


def adopt_predictions(predicts: list[Step], source: Path, out: Path, fingerprint: dict[str, Any]) -> bool:
    """Take a reused cell's external predict steps from ``source``; returns whether every one was taken
    (finished there under the key it has here)."""
    taken = [adopt_finished(p, p.key(out, fingerprint), exported_copy(p, source), PREDICT_RECORDS) for p in predicts]
    return all(taken)


def saved_best_checkpoint(cell_dir: Path) -> str | None:
    """The cell's best checkpoint (:func:`bench.grid.keys.best_checkpoint`) relative to ``cell_dir``, when the
    folder holds it (a run folder does, an export does not)."""
    try:
        path = best_checkpoint(cell_dir)
    except RuntimeError:
        return None
    return str(path.relative_to(cell_dir)) if path.is_file() else None


def reported_cells(folder: Path) -> set[str]:
    """The cells of the report exported to ``folder`` (from its ``results.csv``; none when it has no readable one)."""
    if not (folder / "results.csv").is_file():
        return set()
    try:
        return {row["cell_id"] for row in read_results(folder / "results.csv")}
    except DermkitError:  # not a report of ours: nothing to keep
        return set()


def export_results(out: Path, steps: list[Step], finished: list[Step], dest: Path, with_report: bool = True) -> Path:
    """Copy the ``done.json``, outputs, ``config.yaml`` and ``run.json`` of the ``finished`` cells (those
    finished under their current key, :func:`finished_cells`) into ``dest/cells/<cell>/`` (checkpoints stay behind;
    ``run.reuse`` reads them back) and, when this invocation wrote them (``with_report``), the report,
    ``results.csv`` and the figures, unless the report already in ``dest`` covers cells this grid does
    not include. Returns ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    left_out = sorted(reported_cells(dest) - {step.cell.cell_id for step in steps if step.cell is not None})
    if with_report and left_out:  # a grid run in parts: the part just run must not replace the whole's report
        console.print(f"kept {dest / 'report.md'}: it reports {len(left_out)} cell(s) this grid does not include "
                      f"({', '.join(left_out[:3])}{', ...' if len(left_out) > 3 else ''}). For one report over "
                      "both, run a grid that includes them; its finished cells are reused, nothing trains again.",
                      highlight=False)
        with_report = False
    if with_report:
        for name in ("report.md", "results.csv"):
            shutil.copyfile(out / name, dest / name)
        shutil.copytree(out / "figures", dest / "figures", dirs_exist_ok=True)
        export_external_reports(out, dest)
    for step in finished:
        copy_finished(step, step.out_dir, dest / "cells" / step.cell.cell_id, extra=CELL_RECORDS)
    predicted = export_predictions(steps, dest)
    console.print(f"exported {len(finished)} finished cell(s)" + (", the report, results.csv and figures"
                                                                  if with_report else "")
                  + (f", {predicted} external prediction set(s)" if predicted else "") + f" to {dest}")
    return dest
