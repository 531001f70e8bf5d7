"""``python -m finetune.filter_synthetic``: keep the synthetic images a classifier recognises as their class.

A class-conditional generator does not always draw what it is asked for. This command scores every
image of a ``synth.generate`` manifest with a ``finetune.train`` classifier and keeps an image only
when the classifier gives its conditioning class a probability of at least ``min_prob``::

    python -m finetune.filter_synthetic --checkpoint runs/finetune/ham/checkpoints/best-epoch07.ckpt \\
        --manifest runs/synth/ham/samples/manifest.csv --min-prob 0.5 --out runs/synth/ham/samples_p0.5
    python -m finetune.train --data ham10000 synth.manifest=runs/synth/ham/samples_p0.5/manifest.csv

It lives in the fine-tuning stage because its classifier is a ``finetune.train`` checkpoint
(``synth`` may not import ``finetune``); it reads the generator's files only through the shared
manifest format (:mod:`dermkit.manifest`).

Rules (the same honesty contract as :mod:`finetune.synthetic`):

- the classifier must have been trained on the generator's split (the split hash of its run,
  ``run.json`` beside ``checkpoints/``, against the manifest's rows and header;
  :func:`dermkit.data.split_policy.check_same_split`): a classifier of another split may have seen
  the validation or test images of the runs that will use the filtered images;
- its label fraction must be at most the generator's (``label_fraction`` in ``manifest.json``):
  choosing images with a classifier that saw more labels passes those labels on, and the filtered
  folder keeps the generator's ``label_fraction``, the one ``finetune.train`` checks;
- images are scored as ``finetune.train`` would train on them: cached at the classifier's input
  size (:func:`dermkit.data.cache.cache_images`: short side, centre crop) with the classifier's
  colour constancy, normalised with its mean and standard deviation.

Outputs in ``out_dir`` (default: ``<manifest folder>_p<min_prob>`` beside the manifest's folder):

- ``manifest.csv``: the kept rows, unchanged (same columns and values as the source manifest), so
  ``finetune.train synth.manifest=OUT/manifest.csv`` reads it like any ``synth.generate`` folder;
- the kept images under the same relative paths, as hard links to the original files (no copy;
  a copy only where the file system cannot link). Links, not paths into the source folder:
  :func:`finetune.synthetic.check_files` accepts only files inside the manifest's own folder, with
  symlinks resolved, so that no row can point at a real image;
- ``manifest.json``: the source header (generator, split hash, label fraction, sampler settings)
  plus ``filter`` (:func:`filter_header`): checkpoint, its split hash, label fraction and input
  size, ``min_prob`` and the acceptance per class (kept / scored);
- ``scores.csv``: every scored image: ``file``, ``class``, ``probability`` (of its class),
  ``predicted``, ``kept`` (1 or 0);
- ``config.yaml`` and ``run.json``.

``manifest.csv`` is written last, so a folder holding one is complete; a re-run replaces the
folder's previous filtering (its links to images no longer kept are removed).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
from torch.utils.data import DataLoader

from dermkit.config import Flag, TrainerConfig, default_cache_dir, parse_config
from dermkit.console import console, entry_point, print_table, progress
from dermkit.data.cache import cache_images
from dermkit.data.datasets import CachedImageDataset
from dermkit.data.split_policy import check_same_split
from dermkit.errors import DermkitError
from dermkit.flags import out_flag
from dermkit.manifest import (
    MANIFEST_CSV,
    MANIFEST_JSON,
    atomic_write_bytes,
    csv_bytes,
    manifest_csv,
    read_header,
    read_manifest_rows,
    write_header,
)
from dermkit import out_folder
from dermkit.runinfo import write_run_info
from dermkit.trainer import device_kwargs
from dermkit.vocab import canonical_class
from finetune.data import IndexedDataset
from finetune.evaluate import load_classifier
from finetune.module import ClassifierModule
from finetune.synthetic import check_files
from finetune.transforms import eval_transform

KIND = "finetune.filter_synthetic"  # run.json's kind (dermkit.out_folder)
SCORES_CSV = "scores.csv"
SCORE_COLUMNS: tuple[str, ...] = ("file", "class", "probability", "predicted", "kept")
FILTER_KEY = "filter"  # the header section this command adds to the source manifest.json


@dataclass
class FilterSyntheticConfig:
    """``python -m finetune.filter_synthetic``.

    Keys:
        checkpoint: the classifier, a ``.ckpt`` written by ``finetune.train``
            (``checkpoints/best-*.ckpt``), kept in its run folder: the run's ``run.json`` records
            the split hash and label fraction that are checked.
        manifest: the synthetic manifest to filter (``manifest.csv`` of ``synth.generate``, or its
            folder).
        min_prob: keep an image when the classifier's probability of its conditioning class is at
            least this (0 keeps every image, 1 only those scored exactly 1).
        batch_size: images per scoring batch.
        num_workers: data-loader worker processes.
        cache_dir: image cache root (the images are cached at the classifier's input size, as
            ``finetune.train`` caches them).
        trainer: :class:`dermkit.config.TrainerConfig` (accelerator, devices, precision; the
            training keys are not used).
        out_dir: output folder; empty: ``<manifest folder>_p<min_prob>`` beside the manifest's
            folder. Never the manifest's own folder.
    """

    checkpoint: str = ""
    manifest: str = ""
    min_prob: float = 0.5
    batch_size: int = 64
    num_workers: int = 0
    cache_dir: str = field(default_factory=default_cache_dir)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    out_dir: str = ""


def check_min_prob(value: float) -> None:
    """Refuse a ``min_prob`` outside [0, 1] (a probability threshold)."""
    if not 0.0 <= float(value) <= 1.0:
        raise DermkitError(f"--min-prob (min_prob) must lie in [0, 1], got {value}.")


FLAGS = [
    Flag("--checkpoint", "checkpoint", "classifier checkpoint (.ckpt) from finetune.train, in its run folder"),
    Flag("--manifest", "manifest", "synthetic manifest.csv (or its folder) written by synth.generate"),
    Flag("--min-prob", "min_prob", "keep an image when p(its class) >= this", float, check=check_min_prob),
    Flag("--batch-size", "batch_size", "images per scoring batch", int),
    # what the folder holds is checked with the manifest (load_input), so that its own folder is named as such
    out_flag("output folder: filtered manifest.csv, links to the kept images, scores.csv"),
]


@dataclass(frozen=True)
class ClassifierRecord:
    """What the classifier's training run recorded about its data (its ``run.json``).

    Attributes:
        checkpoint: the checkpoint file (absolute).
        split_hash: hash of the split it was trained on.
        label_fraction: its ``data.fraction``.
        synthetic_manifest: the synthetic manifest it was trained with, or None.
    """

    checkpoint: Path
    split_hash: str
    label_fraction: float
    synthetic_manifest: str | None


def run_dir_of(checkpoint: Path) -> Path:
    """The ``finetune.train`` run folder of a checkpoint (``<run>/checkpoints/x.ckpt`` -> ``<run>``)."""
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def read_classifier_record(checkpoint: Path) -> ClassifierRecord:
    """The split hash and label fraction of the run that trained ``checkpoint``.

    The checkpoint holds the network, not the data it saw; ``finetune.train`` records those in its
    run folder's ``run.json`` (``split_hash``, ``fraction``).

    Raises:
        DermkitError: no ``run.json`` beside ``checkpoints/``, or one without those keys.
    """
    path = run_dir_of(checkpoint) / "run.json"
    hint = (f"The split hash and label fraction of {checkpoint} are read from its run folder's run.json: keep the "
            "checkpoint in the checkpoints/ folder of its python -m finetune.train run.")
    if not path.is_file():
        raise DermkitError(f"No {path}. {hint}")
    try:
        info = json.loads(path.read_text())
        return ClassifierRecord(checkpoint.resolve(), str(info["split_hash"]), float(info["fraction"]),
                                (info.get("synthetic") or {}).get("manifest"))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise DermkitError(f"{path} does not record the run's split_hash and fraction ({type(err).__name__}: {err}); "
                           f"it was not written by python -m finetune.train. {hint}") from None


def manifest_split_hash(csv_path: Path, rows: Sequence[Mapping[str, str]], header: Mapping[str, Any]) -> str:
    """The one split hash a manifest's rows and header record.

    Raises:
        DermkitError: they record none, or more than one.
    """
    hashes = sorted({r["split_hash"] for r in rows if r["split_hash"]} | ({str(header["split_hash"])}
                                                                          if header.get("split_hash") else set()))
    if len(hashes) != 1:
        found = ", ".join(hashes) or "none"
        raise DermkitError(f"{csv_path} (with its {MANIFEST_JSON}) must record one split hash, found {found}: it was "
                           "not written by one python -m synth.generate run. Regenerate the folder.")
    return hashes[0]


def check_classifier_fits(record: ClassifierRecord, csv_path: Path, split_hash: str,
                          generator_fraction: float | None) -> None:
    """Refuse a classifier of another split, or one that saw more labels than the generator.

    Args:
        record: the classifier's run record.
        csv_path: the manifest being filtered.
        split_hash: the manifest's split hash (:func:`manifest_split_hash`).
        generator_fraction: ``label_fraction`` of the manifest's header (None: not recorded).

    Raises:
        DermkitError: naming the checkpoint, the manifest and what to do.
    """
    # "this run" in the policy's message is the manifest's split: the runs that will train on the images.
    check_same_split(record.split_hash, split_hash, f"Classifier {record.checkpoint}", made_by="The classifier",
                     remedy=f"filter {csv_path} with a classifier trained on its generator's split (split hash "
                            f"{split_hash}: python -m finetune.train with the generator's data settings)")
    if generator_fraction is None:
        raise DermkitError(f"The {MANIFEST_JSON} of {csv_path} does not record the label fraction its generator was "
                           f"trained on, so the classifier {record.checkpoint} (label fraction "
                           f"{record.label_fraction:g}) cannot be checked against it. Re-run python -m synth.generate "
                           "with the same --model and --out to record it (retrain a generator older than the record).")
    if record.label_fraction > generator_fraction + 1e-9:
        raise DermkitError(f"The classifier {record.checkpoint} was trained on label fraction "
                           f"{record.label_fraction:g}, more labelled images than the generator of {csv_path} "
                           f"({generator_fraction:g}): the images it keeps would carry labels the runs using them "
                           f"lack. Filter with a classifier trained with data.fraction<={generator_fraction:g} "
                           "(python -m finetune.train data.fraction=...).")


def conditioning_labels(csv_path: Path, rows: Sequence[Mapping[str, str]], classes: Sequence[str],
                        checkpoint: Path) -> tuple[list[str], np.ndarray]:
    """Each row's canonical class and its index among the classifier's outputs.

    Raises:
        DermkitError: a class the classifier does not have (naming both lists).
    """
    names = [canonical_class(r["class"]) for r in rows]
    unknown = sorted(set(names) - set(classes))
    if unknown:
        raise DermkitError(f"{csv_path} holds images of {', '.join(unknown)}, which the classifier {checkpoint} cannot "
                           f"score (its classes: {', '.join(classes)}). Use a classifier trained on the generator's "
                           "classes.")
    return names, np.asarray([list(classes).index(n) for n in names], dtype=np.int64)


class ImageProgress(pl.Callback):
    """A rich progress bar counting scored images (Lightning's own bar counts batches)."""

    def __init__(self, total: int, description: str) -> None:
        self.total = total
        self.description = description
        self._bar = progress()
        self._task: Any = None

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=self.total)

    def on_test_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        if self._task is not None:
            # Every process scores its share of each step: count them all on the first one's bar.
            self._bar.advance(self._task, len(batch[1]) * trainer.world_size)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._bar.stop()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._bar.stop()  # leave the terminal usable after Ctrl-C or an error


def score_images(module: ClassifierModule, paths: Sequence[Path], labels: np.ndarray,
                 cfg: FilterSyntheticConfig) -> np.ndarray | None:
    """(N, C) class probabilities of image files, as ``finetune.train`` would feed them to ``module``.

    The images are cached at the classifier's input size with its colour constancy and scored by its
    own test step (the path ``finetune.evaluate`` scores with).

    Returns:
        The probabilities in ``paths`` order, or None on a process other than the first (DDP).
    """
    hp = module.hparams
    # Checkpoints written before colour constancy existed were trained without it.
    cache = cache_images(list(paths), int(hp.image_size), cfg.cache_dir, description="Caching synthetic images",
                         color_constancy=str(hp.get("color_constancy", "none")))
    dataset = IndexedDataset(CachedImageDataset(cache.path, np.arange(len(paths)), labels,
                                                eval_transform(hp.mean, hp.std)))
    loader = DataLoader(dataset, batch_size=cfg.batch_size, num_workers=cfg.num_workers,
                        persistent_workers=cfg.num_workers > 0)
    trainer = pl.Trainer(**device_kwargs(cfg.trainer), logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[ImageProgress(len(paths), "Scoring synthetic images")])
    trainer.test(module, loader, verbose=False)
    if not trainer.is_global_zero:
        return None
    _, probs, _ = module.test_predictions  # type: ignore[misc]  # sorted by row: paths order
    return probs.numpy()


def acceptance(names: Sequence[str], kept: np.ndarray, classes: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per class of the manifest (in the classifier's order): ``scored``, ``kept`` and ``rate`` = kept / scored."""
    table: dict[str, dict[str, Any]] = {}
    for name in classes:
        mine = np.asarray([n == name for n in names], dtype=bool)
        if mine.any():
            n_kept = int(kept[mine].sum())
            table[name] = {"scored": int(mine.sum()), "kept": n_kept, "rate": n_kept / int(mine.sum())}
    return table


def filter_header(source: Mapping[str, Any], csv_path: Path, record: ClassifierRecord, module: ClassifierModule,
                  min_prob: float, per_class: Mapping[str, Mapping[str, Any]],
                  files: Mapping[str, int]) -> dict[str, Any]:
    """The filtered folder's ``manifest.json``: the source header, plus its ``filter`` section.

    The generator's fields stay as they were (the images are the generator's, and its
    ``label_fraction`` is the one ``finetune.train`` checks); ``filter`` says how they were chosen.
    A source that was itself filtered keeps its own section under ``filter.source_filter``.
    """
    hp = module.hparams
    scored = sum(c["scored"] for c in per_class.values())
    kept = sum(c["kept"] for c in per_class.values())
    section = {
        "source_manifest": str(csv_path.resolve()),
        "checkpoint": str(record.checkpoint),
        "classifier": {"split_hash": record.split_hash, "label_fraction": record.label_fraction,
                       "architecture": hp.architecture, "image_size": int(hp.image_size),
                       "color_constancy": str(hp.get("color_constancy", "none")), "classes": list(hp.classes),
                       "synthetic_manifest": record.synthetic_manifest},
        "min_prob": min_prob,
        "rule": "kept when the classifier's probability of the image's conditioning class is >= min_prob",
        "scored": scored,
        "kept": kept,
        "acceptance": {name: dict(values) for name, values in per_class.items()},
        "files": dict(files),
    }
    if FILTER_KEY in source:
        section["source_filter"] = source[FILTER_KEY]
    return {**{k: v for k, v in source.items() if k != FILTER_KEY}, FILTER_KEY: section}


def default_out_dir(csv_path: Path, min_prob: float) -> Path:
    """``<manifest folder>_p<min_prob>`` beside the manifest's folder."""
    return csv_path.parent.with_name(f"{csv_path.parent.name}_p{min_prob:g}")


def check_out_folder(out: Path, csv_path: Path) -> None:
    """Refuse to write into the manifest's own folder or over a folder this command did not write.

    Raises:
        DermkitError: ``out`` is the source folder, holds another command's outputs
            (:func:`dermkit.out_folder.check_out_folder`), or holds a manifest without a ``filter``
            section in its ``manifest.json`` (e.g. a ``synth.generate`` folder).
    """
    if out.resolve() == csv_path.parent.resolve():
        raise DermkitError(f"--out {out} is the folder of the manifest being filtered ({csv_path}); its manifest would "
                           "be replaced. Pass another --out folder.")
    out_folder.check_out_folder(out, KIND, "--out (out_dir)")  # not another command's folder (a training run, ...)
    if not out.is_dir():
        return
    header = read_header(out)
    if (header is not None or (out / MANIFEST_CSV).is_file()) and FILTER_KEY not in (header or {}):
        raise DermkitError(f"--out {out} holds a {MANIFEST_JSON} not written by finetune.filter_synthetic (a "
                           "synth.generate folder?). Pass another --out folder.")


def link_kept(out: Path, source_dir: Path, files: Sequence[str]) -> dict[str, int]:
    """Put each kept image at ``out/<file>``: a hard link to the original (a copy where linking fails).

    Returns:
        ``{"hardlink": n, "copy": m}``.
    """
    counts = {"hardlink": 0, "copy": 0}
    for file in files:
        source = (source_dir / file).resolve()
        target = out / os.path.normpath(file)
        if target.exists():
            if os.path.samefile(target, source):
                counts["hardlink"] += 1
                continue
            target.unlink()  # another run's file under this name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)
            counts["hardlink"] += 1
        except OSError:  # another file system, or one without hard links
            shutil.copy2(source, target)
            counts["copy"] += 1
    return counts


def remove_stale(out: Path, kept_files: set[str]) -> int:
    """Delete the images a previous filtering of ``out`` kept and this one does not; returns how many."""
    if not (out / MANIFEST_CSV).is_file():
        return 0
    previous = read_manifest_rows(out / MANIFEST_CSV)
    removed = 0
    for row in previous:
        path = out / os.path.normpath(row["file"])
        if row["file"] not in kept_files and path.resolve().is_relative_to(out.resolve()) and path.is_file():
            path.unlink()
            removed += 1
    return removed


def print_acceptance(per_class: Mapping[str, Mapping[str, Any]], min_prob: float) -> None:
    """The console table of acceptance per class, with a total row."""
    rows = [[name, c["scored"], c["kept"], c["rate"]] for name, c in per_class.items()]
    scored = sum(c["scored"] for c in per_class.values())
    kept = sum(c["kept"] for c in per_class.values())
    rows.append(["all", scored, kept, kept / scored if scored else 0.0])
    print_table(f"Kept: p(class) >= {min_prob:g}", ["class", "scored", "kept", "acceptance"], rows)


@dataclass
class FilterInput:
    """The checked inputs of one filtering.

    Attributes:
        csv_path: the manifest being filtered.
        header: its ``manifest.json`` (empty when it has none).
        rows: its rows as ``{column: text}``, in file order.
        names: each row's canonical conditioning class.
        labels: (N,) each row's class index among the classifier's outputs.
        module: the classifier.
        record: what the classifier's run recorded (split hash, label fraction).
        out: the output folder.
    """

    csv_path: Path
    header: dict[str, Any]
    rows: list[dict[str, str]]
    names: list[str]
    labels: np.ndarray
    module: ClassifierModule
    record: ClassifierRecord
    out: Path

    @property
    def paths(self) -> list[Path]:
        """The image files, in row order."""
        return [self.csv_path.parent / r["file"] for r in self.rows]


def load_input(cfg: FilterSyntheticConfig) -> FilterInput:
    """Read and check the manifest, the classifier and the output folder, before any scoring.

    Raises:
        DermkitError: a bad setting, a missing or empty manifest or image, a row outside its
            folder, a classifier of another split or with more labels than the generator, a class
            the classifier lacks, or an output folder that is not this command's.
    """
    if cfg.batch_size < 1:
        raise DermkitError(f"batch_size must be at least 1, got {cfg.batch_size}.")
    if not cfg.manifest:
        raise DermkitError("Pass the synthetic images to filter: --manifest runs/synth/<run>/samples/manifest.csv")
    csv_path = manifest_csv(cfg.manifest, "--manifest")
    out = Path(cfg.out_dir).expanduser() if cfg.out_dir else default_out_dir(csv_path, cfg.min_prob)
    check_out_folder(out, csv_path)
    module = load_classifier(cfg.checkpoint)
    record = read_classifier_record(Path(cfg.checkpoint).expanduser())
    rows = read_manifest_rows(csv_path)
    if not rows:
        raise DermkitError(f"{csv_path} lists no images; let python -m synth.generate finish some first.")
    header = read_header(csv_path.parent) or {}
    recorded = header.get("label_fraction")
    check_classifier_fits(record, csv_path, manifest_split_hash(csv_path, rows, header),
                          None if recorded is None else float(recorded))
    check_files(csv_path, rows, dataset_files=())  # every file inside the manifest's folder: links stay valid
    names, labels = conditioning_labels(csv_path, rows, list(module.hparams.classes), record.checkpoint)
    found = FilterInput(csv_path, header, rows, names, labels, module, record, out)
    missing = [p for p in found.paths if not p.is_file()]
    if missing:
        raise DermkitError(f"{len(missing)} file(s) listed in {csv_path} do not exist (e.g. {missing[0]}). Was the "
                           "folder moved or pruned? Re-run python -m synth.generate on it.")
    return found


def write_filtered(cfg: FilterSyntheticConfig, given: FilterInput, probs: np.ndarray) -> dict[str, Any]:
    """Write the filtered folder from the scores: links, ``scores.csv``, ``manifest.json``, ``manifest.csv``.

    Args:
        cfg: the command's settings.
        given: the checked inputs.
        probs: (N, C) class probabilities of the rows.

    Returns:
        ``per_class`` (:func:`acceptance`), ``kept`` (rows), ``files`` (links and copies) and
        ``removed`` (images of a previous filtering deleted).
    """
    classes = list(given.module.hparams.classes)
    own = probs[np.arange(len(given.rows)), given.labels]  # (N,) probability of each image's conditioning class
    kept = own >= cfg.min_prob
    predicted = probs.argmax(axis=1)
    per_class = acceptance(given.names, kept, classes)
    out = given.out
    write_run_info(out, cfg, 0, {"checkpoint": str(given.record.checkpoint), "manifest": str(given.csv_path.resolve()),
                                 "min_prob": cfg.min_prob, "acceptance": per_class}, kind=KIND)
    kept_rows = [row for row, keep in zip(given.rows, kept) if keep]
    removed = remove_stale(out, {row["file"] for row in kept_rows})
    # Until the new manifest.csv is written the folder lists nothing: never new images with an old list.
    (out / MANIFEST_CSV).unlink(missing_ok=True)
    files = link_kept(out, given.csv_path.parent, [row["file"] for row in kept_rows])
    score_rows = [{"file": row["file"], "class": name, "probability": repr(float(p)), "predicted": classes[int(q)],
                   "kept": int(keep)} for row, name, p, q, keep in zip(given.rows, given.names, own, predicted, kept)]
    atomic_write_bytes(out / SCORES_CSV, csv_bytes(SCORE_COLUMNS, score_rows))
    write_header(out, filter_header(given.header, given.csv_path, given.record, given.module, cfg.min_prob, per_class,
                                    files))
    # The source's columns in their order, written last: a folder with a manifest.csv is complete.
    atomic_write_bytes(out / MANIFEST_CSV, csv_bytes(list(given.rows[0]), kept_rows))
    return {"per_class": per_class, "kept": kept_rows, "files": files, "removed": removed}


@entry_point
def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(FilterSyntheticConfig, "python -m finetune.filter_synthetic",
                       "Keep the synthetic images a finetune.train classifier assigns to their conditioning class "
                       "with probability >= min_prob; writes a filtered manifest finetune.train reads.", argv, FLAGS)
    given = load_input(cfg)
    if given.record.synthetic_manifest:
        console.print(f"[yellow]The classifier was trained with synthetic images ({given.record.synthetic_manifest}): "
                      "it may accept images like those it trained on too readily. A classifier trained on real "
                      "images only judges the conditioning more fairly.[/]")
    image_size = int(given.module.hparams.image_size)
    if given.header.get("image_size") not in (None, image_size):
        console.print(f"Synthetic images of {given.header['image_size']} px are scored at the classifier's "
                      f"{image_size} px (resized as finetune.train resizes them).")
    probs = score_images(given.module, given.paths, given.labels, cfg)
    if probs is None:
        return 0  # DDP: the first process writes
    result = write_filtered(cfg, given, probs)
    print_acceptance(result["per_class"], cfg.min_prob)
    out = given.out
    if result["files"]["copy"]:
        console.print(f"[yellow]{result['files']['copy']} image(s) copied: {out} cannot hard-link to "
                      f"{given.csv_path.parent} (another file system?).[/]")
    if not result["kept"]:
        console.print(f"[yellow]No image reached p(class) >= {cfg.min_prob:g}: {out / MANIFEST_CSV} lists none, and "
                      "finetune.train refuses an empty manifest. Lower --min-prob.[/]")
    console.print(f"Wrote {out / MANIFEST_CSV} ({len(result['kept'])} of {len(given.rows)} images"
                  + (f"; {result['removed']} image(s) of the previous filtering removed" if result["removed"] else "")
                  + f"), {MANIFEST_JSON} and {SCORES_CSV}.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
