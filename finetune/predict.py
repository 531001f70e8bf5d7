"""``python -m finetune.predict``: classify every image of a folder that has no labels.

For a team's own images, or a blind external test set whose labels are held elsewhere: the
folder is searched recursively (jpg, jpeg, png, bmp, tif, tiff, any letter case), every image is
prepared as the model's training images were (the checkpoint's input size and colour constancy)
and scored by the same code as ``finetune.evaluate`` (:func:`finetune.evaluate.score`).

Examples::

    python -m finetune.predict --checkpoint runs/finetune/ham/checkpoints/best-epoch07.ckpt \\
        --root ../shared/data/external/ph2/images --out runs/predict/ph2 --tta

Outputs in ``--out``:

- ``predictions.csv``: ``image_id`` (the path below the root without its extension),
  ``predicted``, then ``prob_<class>`` per model class (4 decimals); with ``--tta`` these are the
  probabilities averaged over the 8 flips and right-angle turns, and ``predictions_without_tta.csv``
  holds the plain ones;
- ``run.json`` (checkpoint and its SHA-256, classes, image size, colour constancy, images scored,
  images skipped) and ``config.yaml``;
- a table of predicted-class counts on the console.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.table import Table

from dermkit.checkpoint import file_digest
from dermkit.config import DataConfig, Flag, TrainerConfig, parse_config
from dermkit.console import console, entry_point
from dermkit.data.datasets import CachedImageDataset
from dermkit.data.prepare import PreparedData, prepare_data
from dermkit.data.readers import read_source
from dermkit.errors import DermkitError
from dermkit.flags import out_flag, root_flag
from dermkit.out_folder import replacing
from dermkit.runinfo import write_run_info
from finetune.data import IndexedDataset
from finetune.evaluate import load_model, score
from finetune.transforms import eval_transform

DECIMALS = 4
KIND = "finetune.predict"  # run.json's kind (dermkit.out_folder)
Predictions = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # the module's (cache rows, probs (N, C), targets)


@dataclass
class PredictConfig:
    """``python -m finetune.predict``.

    Keys:
        checkpoint: a ``.ckpt`` written by ``finetune.train``.
        data: :class:`dermkit.config.DataConfig` of the folder: ``data.root`` is the folder (``--root``);
            ``data.skip_bad`` skips unreadable files (listed in ``run.json``) instead of stopping;
            ``data.image_size`` and ``data.color_constancy`` are the model's (a different colour
            constancy is refused); ``data.name`` is always ``folder``.
        tta: also average the probabilities over the 8 flips and right-angle turns.
        trainer: :class:`dermkit.config.TrainerConfig` (accelerator, devices, precision).
        out_dir: output folder (required).
    """

    checkpoint: str = ""
    data: DataConfig = field(default_factory=lambda: DataConfig(name="folder", color_constancy=""))
    tta: bool = False
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    out_dir: str = ""


FLAGS = [
    Flag("--checkpoint", "checkpoint", "classifier checkpoint (.ckpt) from finetune.train"),
    root_flag(),
    out_flag("output folder (predictions.csv, run.json); a re-run replaces its predictions whole", command=KIND,
             replaces=True),
    Flag("--tta", "tta", "test-time augmentation (flips and right-angle rotations, averaged probabilities)", bool),
]


def check_settings(cfg: PredictConfig) -> Path:
    """The image folder, after checking what can be checked before any work.

    Raises:
        DermkitError: no ``--out``, another reader than ``folder``, or a root that is not a folder.
    """
    if not cfg.out_dir:
        raise DermkitError("Pass the output folder: --out DIR (predictions.csv and run.json are written there).")
    if cfg.data.name != "folder":
        raise DermkitError(f"finetune.predict reads a folder of images (data.name=folder), not data.name="
                           f"{cfg.data.name}: to score a labelled dataset use python -m finetune.evaluate.")
    if not cfg.data.root:
        raise DermkitError("Pass the folder of images to classify: --root FOLDER (searched recursively).")
    root = Path(cfg.data.root).expanduser()
    if root.is_file():
        raise DermkitError(f"--root {root} is a file, not a folder: pass the folder that holds the images.")
    return root


def write_probabilities(path: Path, image_ids: Sequence[str], probs: torch.Tensor, classes: Sequence[str]) -> None:
    """``image_id, predicted, prob_<class>...`` rows, sorted by image id, probabilities to :data:`DECIMALS`.

    Args:
        path: the CSV file to write.
        image_ids: (N,) ids.
        probs: (N, C) class probabilities in the order of ``classes``.
        classes: the model's classes.
    """
    rounded = np.round(probs.double().numpy(), DECIMALS)  # (N, C)
    predicted = probs.argmax(dim=1).tolist()
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["image_id", "predicted", *(f"prob_{c}" for c in classes)])
        for i in sorted(range(len(image_ids)), key=image_ids.__getitem__):
            writer.writerow([image_ids[i], classes[predicted[i]], *(f"{p:.{DECIMALS}f}" for p in rounded[i])])


def count_table(probs: torch.Tensor, classes: Sequence[str], title: str) -> Table:
    """The predicted-class counts (and shares) as a rich table."""
    counts = Counter(probs.argmax(dim=1).tolist())
    table = Table(title=title)
    table.add_column("predicted class")
    table.add_column("images", justify="right")
    table.add_column("share", justify="right")
    for k, name in enumerate(classes):
        table.add_row(name, str(counts.get(k, 0)), f"{counts.get(k, 0) / max(len(probs), 1):.1%}")
    return table


def write_predictions(cfg: PredictConfig, prepared: PreparedData, classes: list[str], scored: Predictions,
                      plain: Predictions | None, out_dir: Path) -> None:
    """Write ``predictions.csv`` (and ``predictions_without_tta.csv`` with TTA) and show the counts.

    Args:
        scored: the ``(rows, probs, targets)`` of the run's mode (with TTA when ``cfg.tta``).
        plain: without TTA, when ``cfg.tta``; else None.
    """
    ids = prepared.image_ids
    rows, probs, _ = scored
    write_probabilities(out_dir / "predictions.csv", [ids[i] for i in rows.tolist()], probs, classes)
    if plain is not None:
        write_probabilities(out_dir / "predictions_without_tta.csv", [ids[i] for i in plain[0].tolist()], plain[1],
                            classes)
    mode = "with TTA (8 views)" if cfg.tta else "without TTA"
    console.print(count_table(probs, classes, f"Predicted classes, {len(rows)} images, {mode}"))


@entry_point
def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(PredictConfig, "python -m finetune.predict",
                       "Classify every image of a folder (no labels needed) with a fine-tuned classifier.",
                       argv, FLAGS)
    root = check_settings(cfg)
    source = read_source("folder", root, cfg.data.skip_bad)  # an empty folder is refused before the model loads
    module = load_model(cfg)  # sets the model's image size and colour constancy in cfg.data
    classes = list(module.hparams.classes)
    prepared = prepare_data(cfg.data, source=source)
    rows = prepared.indices("all")
    out_dir = Path(cfg.out_dir).expanduser()
    checkpoint = Path(cfg.checkpoint).expanduser()
    labels = np.full(len(prepared.image_ids), -1, dtype=np.int64)  # no labels: every row unscored
    transform = eval_transform(module.hparams.mean, module.hparams.std)
    dataset = IndexedDataset(CachedImageDataset(prepared.cache_path, rows, labels, transform))
    with replacing(out_dir, KIND) as staging:  # a kill leaves the previous predictions or none, never half
        write_run_info(staging, cfg, 0, {
            "checkpoint": str(checkpoint), "checkpoint_sha256": file_digest(checkpoint), "classes": classes,
            "image_size": cfg.data.image_size, "color_constancy": cfg.data.color_constancy, "tta": cfg.tta,
            "root": str(prepared.source.root), "images": len(rows),
            "skipped": [{"image_id": image_id, "why": why} for image_id, why in prepared.source.skipped]}, kind=KIND)
        trainer, plain = score(cfg, module, dataset, staging)
        if trainer.is_global_zero:  # under DDP every process scores its share; the first one writes
            write_predictions(cfg, prepared, classes, module.test_predictions,  # type: ignore[arg-type]
                              plain if cfg.tta else None, staging)
    if trainer.is_global_zero:
        also = " and predictions_without_tta.csv" if cfg.tta else ""
        console.print(f"Wrote {out_dir}/predictions.csv{also} and run.json.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
