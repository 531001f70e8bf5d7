"""``python -m finetune.evaluate``: score a fine-tuned classifier on any labeled dataset.

For external test sets (e.g. the ISIC 2018 test set): the dataset's class names go through the
vocabulary and are matched to the classes the model was trained on. Images of classes the model
does not know (e.g. ``scc`` for a HAM10000 model) cannot be scored: they are counted, listed in
``metrics.json`` under ``unknown_classes`` with what the model predicted for them, and kept in
``predictions.csv``; the metrics cover the known classes. Model classes absent from the dataset
have support 0 and no recall.

Sets with another class list (:mod:`finetune.external`): folder names the vocabulary maps
several-to-one (``common_nevus``, ``atypical_nevus`` -> ``nv``), ``--class-map FILE`` for names it
does not know, and for a binary melanoma set, melanoma against the rest with the sensitivity at
the specificity the model had on its own test split.

Colour constancy is the model's: the checkpoint records the ``data.color_constancy`` it was
trained with and the same is applied to the scored images; a different value given here is
refused (say nothing, or the model's value).

Examples::

    python -m finetune.evaluate --checkpoint runs/finetune/ham/checkpoints/best-epoch07.ckpt \\
        --data isic --root /data/ISIC2018_Task3_Test --explain 4 --tta
    python -m finetune.evaluate --checkpoint CKPT --data imagefolder --root /data/PH2 --class-map ph2.yaml

Outputs (``--out``, default ``<run>/eval_<data>_<split>``): the files of :mod:`finetune.outputs`,
the HTML report ``report/index.html`` (:mod:`finetune.html_report`), ``config.yaml`` and ``run.json``.
They replace the folder's previous evaluation whole (:func:`dermkit.out_folder.replacing`); a folder
holding anything else (the training run's own folder, another command's outputs) is refused.

The train, val or test split of a dataset is scored only when it is the model's own split (the split
hash its checkpoint records, or its run's ``run.json``): another split of the same images may put
the model's training images in "test" (:func:`dermkit.data.split_policy.check_same_split`).
``--split all`` (an external set) is not checked.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pytorch_lightning as pl
from torch.utils.data import DataLoader

from dermkit.checkpoint import check_readable
from dermkit.config import DataConfig, Flag, TrainerConfig, parse_config
from dermkit.console import console, entry_point
from dermkit.data.datasets import CachedImageDataset
from dermkit.data.prepare import PreparedData, prepare_data, resolve_root
from dermkit.data.readers.imagefolder import read_imagefolder
from dermkit.data.split_policy import check_same_split
from dermkit.errors import DermkitError
from dermkit.flags import data_flag, out_flag, root_flag
from dermkit.image_size import model_image_size
from dermkit.metrics import classification_report
from dermkit.out_folder import check_out_folder, replacing
from dermkit.runinfo import RUN_INFO, write_run_info
from dermkit.trainer import ProgressBar, device_kwargs
from finetune.config import ReportConfig, check_explain, check_report_config
from finetune.data import IndexedDataset
from finetune.explain import RowImages, cam_layer, require_grad_cam
from finetune.external import (is_melanoma_binary, load_class_map, melanoma_vs_rest, reference_specificity,
                               source_class_table)
from finetune.html_report import REPORT_DIR, write_html_report
from finetune.module import ClassifierModule
from finetune.outputs import write_outputs
from finetune.transforms import eval_transform


@dataclass
class ClassifierEvaluateConfig:
    """``python -m finetune.evaluate``.

    Keys:
        checkpoint: a ``.ckpt`` written by ``finetune.train`` (``checkpoints/best-*.ckpt``).
        data: :class:`dermkit.config.DataConfig` of the dataset to score; ``data.image_size`` is
            replaced by the model's input size; ``data.color_constancy`` empty (the default) takes
            the model's, any other value must equal it.
        split: ``all`` (an external test set), or ``train``/``val``/``test`` of the dataset's split.
        class_map: YAML file ``folder name: model class`` for image-folder names the vocabulary
            does not know (``data.name=imagefolder``).
        tta: test-time augmentation: average the probabilities over the 8 flips and right-angle
            rotations; the report shows the numbers without and with it.
        report: :class:`finetune.config.ReportConfig` (bootstrap replicates, CAM images per class).
        trainer: :class:`dermkit.config.TrainerConfig` (accelerator, devices, precision).
        out_dir: output folder; empty: ``<run folder>/eval_<data.name>_<split>``.
    """

    checkpoint: str = ""
    data: DataConfig = field(default_factory=lambda: DataConfig(name="isic", color_constancy=""))
    split: str = "all"
    class_map: str = ""
    tta: bool = False
    report: ReportConfig = field(default_factory=ReportConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    out_dir: str = ""


FLAGS = [
    Flag("--checkpoint", "checkpoint", "classifier checkpoint (.ckpt) from finetune.train"),
    data_flag(" (labelled: not folder)"),
    root_flag(),
    Flag("--split", "split", "all, train, val or test"),
    out_flag("output folder (its previous evaluation is replaced)", command="finetune.evaluate", replaces=True),
    Flag("--explain", "report.explain", "Grad-CAM / Grad-CAM++ grids: N images per class among true positives, "
         "false negatives and false positives, most confident first", int, check=check_explain),
    Flag("--tta", "tta", "test-time augmentation (flips and right-angle rotations, averaged probabilities)", bool),
    Flag("--class-map", "class_map", "YAML file 'folder name: model class' for class names the vocabulary "
         "does not know"),
]


def load_classifier(path: str) -> ClassifierModule:
    """The classifier in a ``finetune.train`` checkpoint (on the CPU, in eval mode).

    Raises:
        DermkitError: no such file, or not a ``finetune.train`` checkpoint.
    """
    if not path:
        raise DermkitError("Pass the classifier to evaluate: --checkpoint runs/finetune/<run>/checkpoints/best-*.ckpt")
    ckpt = Path(path).expanduser()
    if not ckpt.is_file():
        raise DermkitError(f"Checkpoint {ckpt} does not exist. finetune.train writes them to <out_dir>/checkpoints/.")
    check_readable(ckpt, "Pass another checkpoint of the run (its checkpoints/ folder), or train it again.")
    try:
        return ClassifierModule.load_from_checkpoint(str(ckpt), map_location="cpu").eval()
    except (KeyError, TypeError, RuntimeError) as err:
        raise DermkitError(f"{ckpt} is not a finetune.train classifier checkpoint ({type(err).__name__}: {err}).") from None


KIND = "finetune.evaluate"  # run.json's kind (dermkit.out_folder)


def run_dir_of(checkpoint: Path) -> Path:
    """The ``finetune.train`` run folder of a checkpoint (``<run>/checkpoints/x.ckpt`` -> ``<run>``)."""
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def default_out_dir(checkpoint: Path, data: str, split: str) -> Path:
    return run_dir_of(checkpoint) / f"eval_{data}_{split}"


def out_dir_of(cfg: ClassifierEvaluateConfig) -> Path:
    """The output folder (``--out``, else the default beside the checkpoint), checked before any work.

    Raises:
        DermkitError: it holds another command's outputs, e.g. the training run's own folder.
    """
    checkpoint = Path(cfg.checkpoint).expanduser()
    out_dir = Path(cfg.out_dir).expanduser() if cfg.out_dir else default_out_dir(checkpoint, cfg.data.name, cfg.split)
    suggestion = default_out_dir(checkpoint, cfg.data.name, cfg.split)
    check_out_folder(out_dir, KIND, "--out (out_dir)" if cfg.out_dir else "The default output folder", replaces=True,
                     other=f"Pass a new or empty folder, e.g. --out {suggestion}." if suggestion != out_dir else "")
    return out_dir


def model_split_hash(module: ClassifierModule, checkpoint: Path) -> str | None:
    """The split hash of the model's training data: its checkpoint's, else its run folder's ``run.json``; None
    when neither records one."""
    recorded = str(module.hparams.get("split_hash") or "")
    if recorded:
        return recorded
    try:
        info = json.loads((run_dir_of(checkpoint) / RUN_INFO).read_text())
    except (OSError, ValueError):
        return None
    value = info.get("split_hash") if isinstance(info, dict) else None
    return str(value) if value else None


def check_model_split(cfg: ClassifierEvaluateConfig, module: ClassifierModule, prepared: PreparedData) -> None:
    """Refuse to score the train/val/test split of another split than the model's (it may hold its training images).

    Raises:
        DermkitError: the split hashes differ (:func:`dermkit.data.split_policy.check_same_split`).
    """
    if cfg.split == "all":
        return
    checkpoint = Path(cfg.checkpoint).expanduser()
    made_on = model_split_hash(module, checkpoint)
    if made_on is None:
        console.print(f"[yellow]{checkpoint} records no split hash (nor does its run.json): cannot check that the "
                      f"{cfg.split} split holds none of the model's training images.[/]")
        return
    check_same_split(made_on, prepared.split_hash, f"The model {checkpoint}", made_by="The model",
                     remedy=f"pass --split all to score every image of the set as an external set (its {cfg.split} "
                            "split here is not the model's)")


def unknown_class_summary(true: list[str], predicted: list[str], known: set[str]) -> dict[str, dict[str, Any]]:
    """Per class the model does not know: its image count and what the model predicted for them."""
    summary: dict[str, dict[str, Any]] = {}
    for name in sorted({t for t in true if t not in known}):
        picks = Counter(p for t, p in zip(true, predicted) if t == name)
        summary[name] = {"support": sum(picks.values()), "predicted_as": dict(sorted(picks.items()))}
    return summary


class ScoringSettings(Protocol):
    """What scoring reads of a command's config (``finetune.evaluate``'s and ``finetune.predict``'s)."""

    checkpoint: str
    data: DataConfig
    trainer: TrainerConfig
    tta: bool


def model_color_constancy(cfg: ScoringSettings, recorded: str) -> str:
    """The colour constancy to apply: the model's; a different ``data.color_constancy`` is refused."""
    asked = cfg.data.color_constancy
    if asked and asked != recorded:
        raise DermkitError(f"data.color_constancy={asked} differs from the model's ({recorded}, recorded in "
                           f"{cfg.checkpoint}): the images must be prepared as the training images were. Drop the "
                           "override (the model's setting is applied), or evaluate a model trained with it.")
    return recorded


def prepare_scored_data(cfg: ClassifierEvaluateConfig) -> tuple[PreparedData, dict[str, str] | None]:
    """The dataset to score (read with the class map, when given) and the class map."""
    if not cfg.class_map:
        return prepare_data(cfg.data), None
    if cfg.data.name != "imagefolder":
        raise DermkitError(f"--class-map maps folder names: it needs --data imagefolder (got {cfg.data.name}).")
    root = resolve_root(cfg.data)
    folders = [p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")] if root.is_dir() else None
    class_map = load_class_map(cfg.class_map, folders)
    return prepare_data(cfg.data, source=read_imagefolder(root, cfg.data.skip_bad, class_map)), class_map


def load_model(cfg: ScoringSettings) -> ClassifierModule:
    """The classifier to evaluate; sets ``cfg.data``'s image size and colour constancy to the model's."""
    module = load_classifier(cfg.checkpoint)
    hp = module.hparams
    cfg.data.image_size = model_image_size(cfg.data.image_size, int(hp.image_size), f"the checkpoint {cfg.checkpoint}")
    # Checkpoints written before colour constancy existed were trained without it.
    cfg.data.color_constancy = model_color_constancy(cfg, str(hp.get("color_constancy", "none")))
    console.print(f"Colour constancy: {cfg.data.color_constancy} (the model's setting, from its checkpoint).")
    return module


def model_labels(cfg: ClassifierEvaluateConfig, prepared: PreparedData, model_classes: list[str]) -> np.ndarray:
    """(N,) model class index of each cache row: -1 for unlabelled images and classes the model does not know.

    Raises:
        DermkitError: an unlabelled dataset, or one without any class the model knows.
    """
    if not prepared.source.labeled:
        raise DermkitError(f"data.name={cfg.data.name} at {prepared.source.root} has no labels to evaluate against.")
    data_classes = list(prepared.classes)
    if not set(data_classes) & set(model_classes):
        raise DermkitError(f"None of the dataset's classes ({', '.join(data_classes)}) is known to the model "
                           f"({', '.join(model_classes)}).")
    # Dataset class index -> model class index (-1: a class the model does not know).
    lookup = np.array([model_classes.index(c) if c in model_classes else -1 for c in data_classes], dtype=np.int64)
    return np.where(prepared.labels >= 0, lookup[np.maximum(prepared.labels, 0)], -1)


def score(cfg: ScoringSettings, module: ClassifierModule, dataset: IndexedDataset,
          out_dir: Path) -> tuple[pl.Trainer, Any]:
    """Run the classifier over ``dataset`` (twice with ``tta``: plain, then averaged over 8 views).

    Returns:
        (the trainer, the plain run's ``test_predictions``); the last run's are ``module.test_predictions``.
    """
    loader = DataLoader(dataset, batch_size=cfg.data.batch_size, num_workers=cfg.data.num_workers,
                        persistent_workers=cfg.data.num_workers > 0)
    trainer = pl.Trainer(**device_kwargs(cfg.trainer), logger=False, enable_checkpointing=False, callbacks=[ProgressBar()],
                         default_root_dir=str(out_dir))
    trainer.test(module, loader, verbose=False)
    plain = module.test_predictions
    if cfg.tta:
        module.test_time_augmentation = True
        trainer.test(module, loader, verbose=False)
    return trainer, plain


def external_results(prepared: PreparedData, class_map: dict[str, str] | None, model_classes: list[str],
                     index: list[int], probs: np.ndarray, true: list[str], unknown: dict[str, dict[str, Any]],
                     checkpoint: Path) -> dict[str, Any]:
    """What an external set needs: the source-class table, unknown classes, melanoma against the rest."""
    external: dict[str, Any] = {"source_classes": source_class_table(prepared.source, model_classes, class_map,
                                                                  index),
                                "unknown_classes": unknown}
    if is_melanoma_binary(list(prepared.classes)) and "mel" in model_classes:
        reference, note = reference_specificity(checkpoint.parent.parent if checkpoint.parent.name == "checkpoints"
                                                else checkpoint.parent)
        external["melanoma_vs_rest"] = {**melanoma_vs_rest(probs, true, model_classes, reference),
                                        "reference_note": note}
        binary = external["melanoma_vs_rest"]
        shown = {k: "-" if v is None else f"{v:.3f}" for k, v in binary.items() if not isinstance(v, str)}
        console.print(f"Melanoma against the rest: sensitivity {shown['sensitivity']}, specificity "
                      f"{shown['specificity']}, AUROC {shown['auroc']}; sensitivity at the model's own test "
                      f"specificity ({shown['reference_specificity']}): "
                      f"{shown['sensitivity_at_reference_specificity']}.")
    return external


def report_results(cfg: ClassifierEvaluateConfig, module: ClassifierModule, prepared: PreparedData,
                   class_map: dict[str, str] | None, plain: Any, checkpoint: Path, out_dir: Path) -> None:
    """Score the predictions and write metrics.json, predictions.csv, figures and the HTML report."""
    hp, model_classes = module.hparams, list(module.hparams.classes)
    index, probs, targets = module.test_predictions  # type: ignore[misc]
    image_ids = [prepared.image_ids[i] for i in index.tolist()]
    true = [prepared.source.records[i].label or "" for i in index.tolist()]
    predicted = [model_classes[i] for i in probs.argmax(dim=1).tolist()]
    known = targets >= 0
    report = classification_report(probs[known], targets[known], model_classes)
    unknown = unknown_class_summary(true, predicted, set(model_classes))
    if unknown:
        console.print(f"[yellow]{int((~known).sum())} image(s) of classes the model does not know are not scored: "
                      + ", ".join(f"{c} ({u['support']})" for c, u in unknown.items())
                      + ". See unknown_classes in metrics.json.[/]")
    external = external_results(prepared, class_map, model_classes, index.tolist(), probs.numpy(), true, unknown,
                                checkpoint)
    tta = None
    if cfg.tta:
        _, plain_probs, plain_targets = plain
        keep = plain_targets >= 0
        tta = {"without": classification_report(plain_probs[keep], plain_targets[keep], model_classes),
               "with": report}
    summary = [f"Model: {checkpoint} ({hp.architecture}, {hp.image_size}px, classes {', '.join(model_classes)}).",
               f"Data: {cfg.data.name} at {prepared.source.root}, split {cfg.split}: {len(index)} images, "
               f"{int(known.sum())} scored.",
               f"Colour constancy: {cfg.data.color_constancy} (the model's setting).",
               f"Test-time augmentation: {'on (8 views)' if cfg.tta else 'off'}."]
    title = f"{checkpoint.name} on {cfg.data.name} ({cfg.split})"
    page = write_html_report(out_dir, module, RowImages(prepared.images, index.numpy()), image_ids, probs.numpy(),
                             targets.numpy(), model_classes, report, cfg.report, title, hp.mean, hp.std, summary,
                             tta, external)
    extra = {"checkpoint": str(checkpoint), "split": cfg.split, "split_hash": prepared.split_hash,
             "data": prepared.describe(), "model_classes": model_classes, "dataset_classes": list(prepared.classes),
             "unknown_classes": unknown, "num_unscored": int((~known).sum()),
             "source_classes": external["source_classes"], "tta": cfg.tta, "report": page}
    if "melanoma_vs_rest" in external:
        extra["melanoma_vs_rest"] = external["melanoma_vs_rest"]
    if tta:
        extra["without_tta"] = {k: tta["without"][k] for k in ("balanced_accuracy", "accuracy", "auroc_macro", "ece")}
    write_outputs(out_dir, report, image_ids, true, probs, extra, title)


@entry_point
def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(ClassifierEvaluateConfig, "python -m finetune.evaluate",
                       "Evaluate a fine-tuned classifier on a labeled dataset (e.g. an external test set).",
                       argv, FLAGS)
    check_report_config(cfg.report)
    require_grad_cam(cfg.report.explain, "--explain")
    out_dir = out_dir_of(cfg)
    module = load_model(cfg)
    if cfg.report.explain > 0 and cfg.report.cam_layer:  # a layer the backbone lacks fails now, not after scoring
        cam_layer(module, cfg.data.image_size, cfg.report.cam_layer)
    prepared, class_map = prepare_scored_data(cfg)
    labels = model_labels(cfg, prepared, list(module.hparams.classes))
    # an unknown or empty split, or another split than the model's, is refused before the output folder is made
    rows = prepared.required_indices(cfg.split, remedy="Score another split (--split all: every image), or use a "
                                     "larger dataset.")
    check_model_split(cfg, module, prepared)
    checkpoint = Path(cfg.checkpoint).expanduser()
    with replacing(out_dir, KIND) as staging:  # a kill leaves the previous evaluation or none, never half of one
        write_run_info(staging, cfg, 0, {"checkpoint": str(checkpoint), "data": prepared.describe()}, kind=KIND)
        transform = eval_transform(module.hparams.mean, module.hparams.std)
        dataset = IndexedDataset(CachedImageDataset(prepared.cache_path, rows, labels, transform))
        trainer, plain = score(cfg, module, dataset, staging)
        if trainer.is_global_zero:  # under DDP every process scores its share; the first one writes the results
            report_results(cfg, module, prepared, class_map, plain, checkpoint, staging)
    if trainer.is_global_zero:
        console.print(f"Wrote {out_dir}/metrics.json, predictions.csv, per_class.csv, figures and "
                      f"{out_dir}/{REPORT_DIR}/index.html.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
