"""Frozen-feature evaluation of a backbone: ``python -m ssl.evaluate --weights backbone.safetensors``.

Embeds the labelled training images (``data.fraction`` of them) and an evaluation split with the
frozen backbone, then classifies the split with a kNN classifier and a linear probe trained on
the training features. Reports balanced accuracy (the headline), micro accuracy and per-class
recall (torchmetrics via :mod:`dermkit.metrics`) as a rich table and ``metrics.json``.

Without ``--weights`` it evaluates an untrained backbone built from ``model.*`` (``--backbone ARCH``,
the pretrained one's architecture, seeded by ``seed``): the baseline a pretraining run has to beat.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from dermkit.backbones import Backbone, embed, load_backbone
from dermkit.backbones.card import IMAGENET_MEAN, IMAGENET_STD
from dermkit.config import BackboneConfig, DataConfig, Flag, parse_config
from dermkit.console import console, entry_point, print_table
from dermkit.data.datasets import CachedImageDataset
from dermkit.data.prepare import prepare_data
from dermkit.errors import DermkitError
from dermkit.flags import backbone_flag, data_flag, out_flag, root_flag, small_stem_flag, weights_flag
from dermkit.image_size import model_image_size
from dermkit.metrics import accuracy, balanced_accuracy, recall_by_class
from dermkit.out_folder import check_out_folder, replacing
from dermkit.resume import runs_dir
from dermkit.runinfo import write_run_info
from dermkit.vocab import display_name
from ssl.model_config import build_model_backbone
from ssl.probe import knn_classify, linear_probe
from ssl.transforms import eval_transform


@dataclass
class ProbeEvaluateConfig:
    """Schema of ``python -m ssl.evaluate`` (frozen features, kNN and linear probe).

    Keys:
        weights: a ``backbone.safetensors`` written by ``ssl.pretrain`` (its card sets the
            architecture and ``data.image_size``); empty for an untrained backbone of ``model.*``.
        split: the split classified: ``val`` or ``test``.
        out_dir: output folder; empty = ``<weights folder>/eval_<data.name>_<split>`` or
            ``$DERMKIT_RUNS/ssl_eval/random_<model.backbone>_<data.name>_<split>`` (``runs/`` when
            unset).
        seed: seed of the random backbone and the probe.
        knn_k: neighbours of the kNN classifier.
        knn_temperature: similarity temperature of the kNN classifier.
        probe_epochs: full-batch steps of the linear probe.
        probe_lr: AdamW learning rate of the probe.
        probe_weight_decay: AdamW weight decay of the probe.
        probe_balanced: weight the probe's loss by inverse class frequency.
        data: :class:`dermkit.config.DataConfig` (labelled; ``data.fraction`` picks the share of
            training labels the classifiers see).
        model: :class:`dermkit.config.BackboneConfig`, read only without ``weights``.
    """

    weights: str = ""
    split: str = "val"
    out_dir: str = ""
    seed: int = 0
    knn_k: int = 20
    knn_temperature: float = 0.1
    probe_epochs: int = 200
    probe_lr: float = 0.01
    probe_weight_decay: float = 1e-4
    probe_balanced: bool = True
    data: DataConfig = field(default_factory=lambda: DataConfig(name="ham10000"))
    model: BackboneConfig = field(default_factory=BackboneConfig)


KIND = "ssl.evaluate"  # run.json's kind (dermkit.out_folder)
FLAGS = [
    weights_flag("backbone.safetensors from ssl.pretrain (default: a random-init --backbone)"),
    data_flag(" (labelled: not folder)"),
    root_flag(),
    Flag("--image-size", "data.image_size", "image side in px (taken from the card for a backbone file)", int),
    Flag("--fraction", "data.fraction", "share of training labels used (0.01, 0.05, 0.1, 0.25, 0.5, 1.0)", float),
    Flag("--split", "split", "split to evaluate: val or test"),
    backbone_flag(note=" (of the random-init backbone, without --weights)", weights_option="--weights"),
    small_stem_flag(note=" of the random-init backbone"),
    out_flag("output folder (its previous evaluation is replaced)", command=KIND, replaces=True),
    Flag("--seed", "seed", "seed of the random backbone and the probe", int),
]


def load_eval_backbone(cfg: ProbeEvaluateConfig
                       ) -> tuple[Backbone, dict[str, Any], tuple[float, ...], tuple[float, ...]]:
    """The backbone to evaluate, a description of it, and its normalisation (mean, std).

    For a backbone file, ``data.image_size`` is set from its card (:func:`dermkit.image_size.model_image_size`).
    """
    if not cfg.weights:
        torch.manual_seed(cfg.seed)
        backbone = build_model_backbone(cfg.model, cfg.data.image_size)
        return backbone, {"weights": "random", "architecture": cfg.model.backbone,
                          "small_stem": bool(cfg.model.small_stem)}, IMAGENET_MEAN, IMAGENET_STD
    backbone, card = load_backbone(cfg.weights)
    cfg.data.image_size = model_image_size(cfg.data.image_size, card.input_size, f"the card of {cfg.weights}")
    return backbone, {"weights": str(cfg.weights), "architecture": card.architecture, "small_stem": card.small_stem,
                      "method": card.method, "epochs": card.epochs, "pretrain_split_hash": card.split_hash}, \
        tuple(card.mean), tuple(card.std)


def evaluate_features(train_features: torch.Tensor, train_labels: torch.Tensor, query_features: torch.Tensor,
                      query_labels: torch.Tensor, classes: tuple[str, ...], cfg: ProbeEvaluateConfig
                      ) -> dict[str, Any]:
    """kNN and linear-probe scores of (M, D) query features given (N, D) labelled training features."""
    num_classes = len(classes)
    predictions = {
        "knn": knn_classify(train_features, train_labels, query_features, num_classes, cfg.knn_k, cfg.knn_temperature),
        "linear": linear_probe(train_features, train_labels, query_features, num_classes, cfg.probe_epochs,
                               cfg.probe_lr, cfg.probe_weight_decay, cfg.probe_balanced, cfg.seed),
    }
    return {name: {"balanced_accuracy": balanced_accuracy(preds, query_labels, num_classes),
                   "accuracy": accuracy(preds, query_labels, num_classes),
                   "recall": recall_by_class(preds, query_labels, classes)}
            for name, preds in predictions.items()}


def run_evaluation(cfg: ProbeEvaluateConfig) -> tuple[dict[str, Any], Path]:
    """Evaluate the backbone of ``cfg``; returns (metrics, path of metrics.json).

    Raises:
        DermkitError: unlabelled data, an unknown split, or a bad backbone file.
    """
    if cfg.split not in ("val", "test"):
        raise DermkitError(f"split={cfg.split!r}: choose val or test.")
    out = output_folder(cfg)
    backbone, about, mean, std = load_eval_backbone(cfg)
    data = prepare_data(cfg.data)
    if not data.source.labeled:
        raise DermkitError(f"{data.source.root} ({cfg.data.name}) has no labels; frozen-feature evaluation needs "
                           "a labelled dataset (e.g. --data ham10000).")
    # the kNN bank and the probe's training set, and the split they classify: neither may be empty
    train_rows, query_rows = data.required_indices("train", cfg.data.fraction), data.required_indices(cfg.split)
    transform = eval_transform(mean, std)
    features: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for name, rows in (("train", train_rows), (cfg.split, query_rows)):
        dataset = CachedImageDataset(data.cache_path, rows, data.labels, transform)
        loader = torch.utils.data.DataLoader(dataset, batch_size=256, num_workers=0)
        features[name] = embed(backbone, loader, description=f"Embedding {len(rows)} {name} images")
    metrics = evaluate_features(*features["train"], *features[cfg.split], data.classes, cfg)
    result = {**about, "data": data.describe(), "split": cfg.split, "fraction": cfg.data.fraction,
              "train_images": len(train_rows), "eval_images": len(query_rows), **metrics}
    with replacing(out, KIND) as staging:  # the previous evaluation in the folder is replaced whole
        write_run_info(staging, cfg, cfg.seed, {"split_hash": data.split_hash}, kind=KIND)
        (staging / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    return result, out / "metrics.json"


def output_folder(cfg: ProbeEvaluateConfig) -> Path:
    """``out_dir``, else the default beside the weights (or under the runs folder); checked before any work.

    Raises:
        DermkitError: the folder holds another command's outputs (:func:`dermkit.out_folder.check_out_folder`).
    """
    if cfg.out_dir:
        out = Path(cfg.out_dir)
    elif not cfg.weights:
        out = runs_dir() / "ssl_eval" / f"random_{cfg.model.backbone}_{cfg.data.name}_{cfg.split}"
    else:
        out = Path(cfg.weights).parent / f"eval_{cfg.data.name}_{cfg.split}"
    return check_out_folder(out, KIND, "--out (out_dir)" if cfg.out_dir else "The default output folder",
                            replaces=True)


def print_results(result: dict[str, Any], classes: list[str]) -> None:
    """Rich table: one row per metric, one column per classifier."""
    rows: list[list[Any]] = [["balanced accuracy", result["knn"]["balanced_accuracy"], result["linear"]["balanced_accuracy"]],
                             ["accuracy", result["knn"]["accuracy"], result["linear"]["accuracy"]]]
    rows += [[f"recall {c} ({display_name(c)})", result["knn"]["recall"][c], result["linear"]["recall"][c]]
             for c in classes]
    title = (f"{result['weights']} ({result['architecture']}) on {result['data']['name']} {result['split']}, "
             f"{result['train_images']} labelled training images")
    print_table(title, ["metric", "kNN", "linear probe"], rows)


DESCRIPTION = ("Frozen-feature evaluation of a backbone: kNN and linear probe on a labelled dataset, balanced accuracy "
               "and per-class recall, written to OUT/metrics.json. --weights names the backbone file; without it an "
               "untrained backbone of the architecture given by --backbone / --small-stem is evaluated.")


@entry_point
def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(ProbeEvaluateConfig, "python -m ssl.evaluate", DESCRIPTION, argv, FLAGS)
    result, path = run_evaluation(cfg)
    print_results(result, result["data"]["classes"])
    console.print(f"Wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
