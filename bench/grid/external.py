"""External test sets in the grid: blind predictions of every cell on other clinics' images.

``grid.external: {name: folder}`` adds, after each cell, one ``finetune.predict --tta`` step per
folder (:func:`predict_steps`). Its key hashes the cell's outputs and the folder's *content*
(every image's bytes, :func:`folder_digest`), not its path: the same images elsewhere keep the key,
changed images run it again. It writes into ``external/<cell>/<name>/`` of the run folder, and
``--export`` keeps it as ``cells/<cell>/external/<name>/`` (``predictions.csv`` with test-time
augmentation, ``predictions_without_tta.csv`` without; :func:`export_predictions`).

A set without labels is *blind*: the report says so and shows, per arm, the share of images
predicted as each class (:func:`blind_lines`), nothing that needs a label. Where a user has the
labels, ``grid.external_labels: {name: file}`` (a CSV with ``image_id`` and ``label`` columns)
scores the set with the same per-class tables, paired comparisons and verdicts as the test split,
in ``external-reports/<name>/report.md`` (:func:`write_external_sections`).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dermkit.data.images import IMAGE_EXTENSIONS
from dermkit.errors import DermkitError
from dermkit.metrics import classification_report
from dermkit.vocab import canonical_class
from bench.grid.keys import Cell, Step, best_checkpoint_arg, copy_finished, file_digest, read_done
from bench.report.effects import ReportContext
from bench.report.tables import write_report
from bench.report.results import Predictions, result_rows, write_results

PREDICT_KIND = "predict"
PREDICT_OUTPUTS = ("predictions.csv", "predictions_without_tta.csv")
PREDICT_RECORDS = ("run.json", "config.yaml")
EXTERNAL_DIR = "external"
REPORTS_DIR = "external-reports"  # a labelled set's report, beside the grid's


def image_files(root: Path) -> list[Path]:
    """The images below ``root`` as ``finetune.predict`` reads them (recursive, extension in any case), sorted."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def folder_digest(root: Path) -> str:
    """SHA-256 over every image's path below ``root`` and its bytes' digest: the key of a folder's content.

    Raises:
        DermkitError: ``root`` is not a folder or holds no image.
    """
    if not root.is_dir():
        raise DermkitError(f"grid.external: {root} is not a folder. Give a folder of images (searched recursively).")
    files = image_files(root)
    if not files:
        raise DermkitError(f"grid.external: {root} holds no images ({', '.join(IMAGE_EXTENSIONS)}, any case).")
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.relative_to(root).as_posix()}\0{file_digest(path)}\n".encode())
    return digest.hexdigest()


def external_folders(external: dict[str, str], resolve: Any) -> dict[str, Path]:
    """``grid.external`` with each folder resolved (``resolve``: the grid's path rule), names checked.

    Raises:
        DermkitError: a name that cannot be a folder name.
    """
    folders = {}
    for name, folder in external.items():
        if not name or "/" in name or name.startswith("."):
            raise DermkitError(f"grid.external: {name!r} cannot name a folder; use a plain name such as isic2018.")
        folders[name] = resolve(folder)
    return folders


def predict_steps(cells: Sequence[Step], folders: dict[str, Path], out: Path, stage_args: Sequence[str]) -> list[Step]:
    """One ``finetune.predict --tta`` step per cell and external folder, reading the cell's best checkpoint.

    Args:
        cells: the grid's ``finetune.train`` steps.
        folders: external set name -> its folder (:func:`external_folders`).
        out: the grid's run folder.
        stage_args: further ``finetune.predict`` arguments of every step (accelerator, loader workers).
    """
    digests = {name: folder_digest(folder) for name, folder in folders.items()}
    steps = []
    for cell in cells:
        assert cell.cell is not None
        for name, folder in folders.items():
            target = out / EXTERNAL_DIR / cell.cell.cell_id / name
            steps.append(Step(
                f"{PREDICT_KIND}/{cell.cell.cell_id}/{name}", PREDICT_KIND, "finetune.predict",
                ["--checkpoint", best_checkpoint_arg(cell), "--root", str(folder), "--tta", *stage_args,
                 "--out", str(target)],
                target, PREDICT_OUTPUTS, inputs=[cell], cell=None,
                key_extra={"external_content_sha256": digests[name]}, key_paths={str(folder): f"<external {name}>"}))
    return steps


def predict_cell_id(step: Step) -> str:
    """The cell id a predict step belongs to (its name is ``predict/<cell>/<set>``)."""
    return step.name.split("/")[1]


def export_predictions(steps: Sequence[Step], dest: Path) -> int:
    """Copy each finished predict step into ``dest/cells/<cell>/external/<name>/``; returns how many."""
    copied = 0
    for step in steps:
        if step.kind == PREDICT_KIND and read_done(step) is not None:
            name = step.out_dir.name
            copy_finished(step, step.out_dir, dest / "cells" / predict_cell_id(step) / EXTERNAL_DIR / name,
                          extra=PREDICT_RECORDS)
            copied += 1
    return copied


def exported_copy(step: Step, source: Path) -> Path:
    """Where an export (or another run folder's layout) keeps this predict step's files."""
    exported = source / "cells" / predict_cell_id(step) / EXTERNAL_DIR / step.out_dir.name
    return exported if exported.is_dir() else source / EXTERNAL_DIR / predict_cell_id(step) / step.out_dir.name


def read_probabilities(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """``finetune.predict``'s CSV: (image ids, class names, (N, C) probabilities).

    Raises:
        DermkitError: a missing or malformed file.
    """
    try:
        with path.open(newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader)
            rows = list(reader)
    except (OSError, StopIteration) as err:
        raise DermkitError(f"Cannot read {path}: {err or 'empty file'}. Run the grid again to rewrite it.") from None
    if header[:2] != ["image_id", "predicted"] or not all(h.startswith("prob_") for h in header[2:]):
        raise DermkitError(f"{path} is not a finetune.predict file (columns image_id, predicted, prob_<class>...).")
    probs = np.array([[float(v) for v in row[2:]] for row in rows], dtype=np.float64).reshape(len(rows), -1)
    return [row[0] for row in rows], [h[len("prob_"):] for h in header[2:]], probs


def read_labels(path: Path) -> dict[str, str]:
    """``grid.external_labels``'s CSV: image id -> canonical class.

    Raises:
        DermkitError: a missing file, missing columns or an unknown class name.
    """
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as err:
        raise DermkitError(f"grid.external_labels: cannot read {path} ({err.strerror}).") from None
    if not rows or not {"image_id", "label"} <= set(rows[0]):
        raise DermkitError(f"grid.external_labels: {path} needs the columns image_id and label (one row per image).")
    return {row["image_id"]: canonical_class(row["label"]) for row in rows}


def labelled_predictions(step: Step, labels: dict[str, str]) -> tuple[Predictions, dict[str, Any]]:
    """A predict step's TTA predictions scored against ``labels``: the report's predictions and the metrics.

    Raises:
        DermkitError: the labels do not cover exactly the predicted images, or name a class the model lacks.
    """
    path = step.out_dir / PREDICT_OUTPUTS[0]
    ids, classes, probs = read_probabilities(path)
    missing = sorted(set(ids) - set(labels))
    extra = sorted(set(labels) - set(ids))
    if missing or extra:
        raise DermkitError(f"grid.external_labels for {step.out_dir.name}: {len(missing)} predicted image(s) have no "
                           f"label (e.g. {missing[:3]}) and {len(extra)} label(s) no prediction (e.g. {extra[:3]}). "
                           "The labels file must list exactly the folder's images, by id (path without extension).")
    unknown = sorted({labels[i] for i in ids} - set(classes))
    if unknown:
        raise DermkitError(f"grid.external_labels for {step.out_dir.name}: class(es) {', '.join(unknown)} are not "
                           f"among the model's ({', '.join(classes)}).")
    targets = torch.tensor([classes.index(labels[i]) for i in ids])
    metrics = classification_report(torch.from_numpy(probs).float(), targets, classes)
    order = np.argsort(ids)
    true = np.array([labels[i] for i in ids])[order]
    predicted = np.array([classes[k] for k in probs.argmax(axis=1)])[order]
    return Predictions(np.array(ids)[order], true, true == predicted, tuple(classes), probs[order]), metrics


def labelled_rows(steps: Sequence[Step], cells: dict[str, Cell], labels: dict[str, str]) -> tuple[
        list[dict[str, Any]], dict[str, Predictions]]:
    """``results.csv``-style rows of one labelled external set (one per finished cell and class) and the
    predictions the report's paired comparisons read, by cell id."""
    rows: list[dict[str, Any]] = []
    loaded: dict[str, Predictions] = {}
    for step in steps:
        if read_done(step) is None:
            continue
        cell_id = predict_cell_id(step)
        predictions, metrics = labelled_predictions(step, labels)
        rows += result_rows(cells[cell_id], metrics)
        loaded[cell_id] = predictions
    return rows, loaded


def predicted_shares(step: Step) -> dict[str, float]:
    """Share of a predict step's images (TTA) predicted as each model class."""
    ids, classes, probs = read_probabilities(step.out_dir / PREDICT_OUTPUTS[0])
    counts = Counter(probs.argmax(axis=1).tolist())
    return {c: counts.get(k, 0) / max(len(ids), 1) for k, c in enumerate(classes)}


def blind_lines(name: str, folder: Path, steps: Sequence[Step], cells: dict[str, Cell]) -> list[str]:
    """The report's section on a blind set: what was exported, and per arm the predicted-class shares."""
    done = [s for s in steps if read_done(s) is not None]
    lines = [f"## External set `{name}` (blind)", "",
             f"`{folder}`: no labels in the project, so nothing here scores the model. Each cell's predictions "
             f"are in `cells/<cell>/{EXTERNAL_DIR}/{name}/` (`predictions.csv` averaged over the 8 flips and "
             "right-angle turns, `predictions_without_tta.csv` without); whoever holds the labels scores them. "
             f"{len(done)} of {len(steps)} cells have predictions.", ""]
    if not done:
        return lines
    shares: dict[tuple[float, str, str], list[dict[str, float]]] = {}
    for step in done:
        cell = cells[predict_cell_id(step)]
        shares.setdefault((cell.fraction, cell.init, cell.arm), []).append(predicted_shares(step))
    classes = list(next(iter(shares.values()))[0])
    lines += ["Share of images predicted as each class (with TTA), mean over seeds:", "",
              "| fraction | init | arm | seeds | " + " | ".join(classes) + " |",
              "|---|---|---|---|" + "---|" * len(classes)]
    for (fraction, init, arm), per_seed in sorted(shares.items()):
        means = [np.mean([s.get(c, 0.0) for s in per_seed]) for c in classes]
        lines.append(f"| {fraction:g} | {init} | {arm} | {len(per_seed)} | " + " | ".join(f"{m:.3f}" for m in means)
                     + " |")
    return [*lines, ""]


def write_external_sections(report: Path, out: Path, steps: Sequence[Step], folders: dict[str, Path],
                            labels_files: dict[str, Path], ctx: ReportContext) -> None:
    """Add a section per external set to the grid's ``report``; a labelled set also gets its own report.

    A labelled set's report (``external-reports/<name>/report.md`` with ``results.csv`` and figures) is
    the test split's report over the same cells, scored on the set's labels.
    """
    cells = {s.cell.cell_id: s.cell for s in steps if s.cell is not None}
    lines: list[str] = []
    for name, folder in folders.items():
        own = [s for s in steps if s.kind == PREDICT_KIND and s.out_dir.name == name]
        if name not in labels_files:
            lines += blind_lines(name, folder, own, cells)
            continue
        labels = read_labels(labels_files[name])
        rows, loaded = labelled_rows(own, cells, labels)
        lines += [f"## External set `{name}` (labelled)", "",
                  f"`{folder}`, scored with the labels of `{labels_files[name]}` on the predictions with TTA: "
                  f"{len(loaded)} of {len(own)} cells. Its tables, comparisons and verdicts: "
                  f"[{REPORTS_DIR}/{name}/report.md]({REPORTS_DIR}/{name}/report.md).", ""]
        if not rows:
            continue
        folder_out = out / REPORTS_DIR / name
        write_results(folder_out / "results.csv", rows)
        caveat = (f"Scored on the external set `{name}` ({folder}) with the labels of {labels_files[name]}, not on "
                  "the test split; probabilities averaged over the 8 flips and right-angle turns.")
        write_report(folder_out, rows, loaded.__getitem__,
                     dataclasses.replace(ctx, test_counts=dict(Counter(labels.values())),
                                         caveats=[*ctx.caveats, caveat]))
    if lines:
        with report.open("a") as handle:
            handle.write("\n\n" + "\n".join(lines))


def export_external_reports(out: Path, dest: Path) -> None:
    """Copy the labelled sets' reports (``external-reports/<name>/``) into ``dest``."""
    if (out / REPORTS_DIR).is_dir():
        shutil.copytree(out / REPORTS_DIR, dest / REPORTS_DIR, dirs_exist_ok=True)
