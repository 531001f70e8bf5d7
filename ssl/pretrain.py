"""Self-supervised pretraining: ``python -m ssl.pretrain`` (SimCLR, DINO, ... on unlabelled images).

Reads the training split of ``data`` without its labels, trains the backbone with one of the
methods registered in :mod:`ssl.methods` (lightly's building blocks under ``pytorch_lightning``),
and writes into ``out_dir``::

    backbone.safetensors + backbone.json   the pretrained backbone and its card (for later stages)
    checkpoints/last.ckpt                  Lightning checkpoint (each epoch, every
                                           checkpoint_every_n_steps and on Ctrl-C); re-running resumes from it
    logs/metrics.csv                       loss, lr, kNN accuracy, collapse signal (appended on resume)
    logs/tensorboard/                      the same for TensorBoard (layout: dermkit.trainer)
    config.yaml, run.json                  resolved config, seed, git commit, versions
    snapshots/epochNNN.safetensors (+ .json)  the backbone every snapshot_every_n_epochs epochs
    summary.json                           what the run achieved

Several GPUs / nodes: ``trainer.strategy=ddp trainer.devices=N trainer.num_nodes=M``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, make_dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_only
from torch.utils.data import DataLoader

from dermkit.augment import MultiViewAugment
from dermkit.backbones import BACKBONES, BackboneCard, save_backbone
from dermkit.backbones.card import IMAGENET_MEAN, IMAGENET_STD
from dermkit.config import BackboneConfig, DataConfig, Flag, TrainerConfig, augments_on_device, parse_config
from dermkit.console import console, entry_point, print_table
from dermkit.data.datasets import CachedImageDataset
from dermkit.data.prepare import PreparedData, prepare_data
from dermkit.data.resident import (RESIDENT, CachedArraySource, NormalizedBatches, ResidentDataset, ResidentImages,
                                   ResidentOnDevice, resident_loader)
from dermkit.errors import DermkitError
from dermkit.flags import backbone_flag, data_flag, out_flag, root_flag, small_stem_flag
from dermkit.resume import RESTART_FLAG, resume_checkpoint, runs_dir
from dermkit.runinfo import write_run_info
from dermkit.throughput import StepTimer
from dermkit.trainer import build_trainer
from ssl.base_module import PretrainOptimConfig, SSLModule
from ssl.methods import METHODS, get_method, method_names
from ssl.model_config import build_model_backbone
from ssl.monitor import MonitorConfig, SSLMonitor
from ssl.snapshots import BackboneSnapshots
from ssl.transforms import PretrainAugmentConfig, eval_transform

T = TypeVar("T")
Batch = tuple[Any, torch.Tensor]  # (images or views, labels (B,))


def _with_method_sections(schema: type[T]) -> type[T]:
    """``schema`` plus one config section per method of :data:`ssl.methods.METHODS`.

    Each section is keyed by the method's name (``simclr.*``, ``dino.*``, ...) and typed by its
    config dataclass, so registering a method adds its keys here with no edit to this file. The
    result is a dataclass of the same name and module (configs stay strict: omegaconf rejects
    unknown keys of every section).
    """
    sections = [(m.name, m.config, field(default_factory=m.config)) for m in METHODS.values()]
    return make_dataclass(schema.__name__, sections, bases=(schema,),
                          namespace={"__doc__": schema.__doc__, "__module__": schema.__module__})


@_with_method_sections
@dataclass
class PretrainConfig:
    """Schema of ``python -m ssl.pretrain``.

    Keys:
        method: a method registered in :mod:`ssl.methods` (``--help`` lists them).
        out_dir: run folder; empty = ``$DERMKIT_RUNS/ssl/<method>_<backbone>_<data.name><image_size>``
            (``runs/`` when ``DERMKIT_RUNS`` is unset). Re-running with the same folder resumes from
            ``checkpoints/last.ckpt`` when the settings match (:mod:`dermkit.resume`).
        restart: start a new run even if ``out_dir`` holds one (its files move to
            ``out_dir/replaced-<time>/``).
        seed: seed of weights, augmentations and data order.
        checkpoint_every_n_steps: also save ``last.ckpt`` every this many steps (0 = per epoch only).
        snapshot_every_n_epochs: also save the backbone as ``snapshots/epochNNN.safetensors`` every
            this many epochs (0 = never), for curves of probe accuracy against epoch.
        data: :class:`dermkit.config.DataConfig` (only the training split is used, without labels;
            the labelled training and validation images feed the kNN monitor).
        trainer: :class:`dermkit.config.TrainerConfig`.
        model: :class:`dermkit.config.BackboneConfig` (backbone, small_stem, init).
        augment: :class:`ssl.transforms.PretrainAugmentConfig`.
        optim: :class:`ssl.base_module.PretrainOptimConfig`.
        monitor: :class:`ssl.monitor.MonitorConfig`.
        <method>: one section per registered method, named after it, typed by the method's config
            dataclass (``simclr``: :class:`ssl.simclr_module.SimCLRConfig`, ``dino``:
            :class:`ssl.dino_module.DINOConfig`, ...); only the section of ``method`` is read.
    """

    method: str = "simclr"
    out_dir: str = ""
    seed: int = 0
    checkpoint_every_n_steps: int = 0
    snapshot_every_n_epochs: int = 0
    restart: bool = False
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    model: BackboneConfig = field(default_factory=BackboneConfig)
    augment: PretrainAugmentConfig = field(default_factory=PretrainAugmentConfig)
    optim: PretrainOptimConfig = field(default_factory=PretrainOptimConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)


FLAGS = [
    Flag("--method", "method", f"self-supervised method: {method_names()}"),
    data_flag(" (labels unused)"),
    root_flag(),
    Flag("--image-size", "data.image_size", "image side in px", int),
    Flag("--batch-size", "data.batch_size", "images per batch per device", int),
    Flag("--workers", "data.num_workers", "data-loader worker processes", int),
    backbone_flag(),
    small_stem_flag(),
    Flag("--init", "model.init", "local weights file to start from (nothing is downloaded)"),
    Flag("--epochs", "trainer.max_epochs", "epochs to train", int),
    Flag("--max-steps", "trainer.max_steps", "stop after this many steps (-1: no limit)", int),
    Flag("--devices", "trainer.devices", "devices per node (auto or a number)"),
    Flag("--lr", "optim.lr", "base learning rate per 256 images (0: the method's default)", float),
    out_flag("run folder (re-running with the same folder resumes from checkpoints/last.ckpt)", command="ssl.pretrain"),
    Flag("--seed", "seed", "random seed", int),
    RESTART_FLAG,
]

DESCRIPTION = (
    f"Self-supervised pretraining ({method_names()}; lightly building blocks, PyTorch Lightning) of a backbone "
    "on the training images of a dataset, labels unused. Writes backbone.safetensors + backbone.json, "
    "Lightning checkpoints, CSV/TensorBoard logs, config.yaml and run.json into the run folder. "
    "Re-running with the same --out resumes from OUT/checkpoints/last.ckpt; changed settings are refused "
    "(--restart starts over). "
    "Multi-GPU: trainer.strategy=ddp trainer.devices=N [trainer.num_nodes=M]."
)


@dataclass
class PretrainResult:
    """What :func:`run_pretraining` produced."""

    out_dir: Path
    backbone_path: Path
    checkpoint: Path
    start_step: int
    global_step: int
    epochs: int
    train_images: int
    images_per_second: float  # steady state (after 5 steps), data loading included, monitor excluded
    data_wait_fraction: float | None  # share of that step time spent waiting for data (None: no step timed)
    peak_gpu_memory_mib: float | None  # torch.cuda.max_memory_allocated at the end of training (None: no GPU)
    metrics: dict[str, float]


def default_out_dir(cfg: PretrainConfig) -> Path:
    return runs_dir() / "ssl" / f"{cfg.method}_{cfg.model.backbone}_{cfg.data.name}{cfg.data.image_size}"


def method_section(cfg: PretrainConfig) -> Any:
    """The config section of ``cfg.method`` (``cfg.simclr``, ``cfg.dino``, ...)."""
    return getattr(cfg, cfg.method)


def build_module(cfg: PretrainConfig) -> SSLModule:
    """The Lightning module of ``cfg.method`` around a freshly built (or ``model.init``) backbone.

    Raises:
        DermkitError: unknown method, backbone or init file.
    """
    method = get_method(cfg.method)
    backbone = build_model_backbone(cfg.model, cfg.data.image_size)
    return method.module(backbone, method_section(cfg), cfg.optim, cfg.data.batch_size)


def build_device_augment(cfg: PretrainConfig) -> MultiViewAugment:
    """The same views as :func:`build_train_transform`, drawn on whole uint8 batches (``data.augment_on=device``).

    Raises:
        DermkitError: unknown method, a method without a device path, or bad augment settings.
    """
    method = get_method(cfg.method)
    if method.device_views is None:
        raise DermkitError(f"method={cfg.method} draws its views in the data-loader workers only: set "
                           "data.augment_on=workers.")
    return method.device_views(cfg.augment, method_section(cfg), cfg.data.image_size)


def build_train_transform(cfg: PretrainConfig) -> Any:
    """The multi-view transform of ``cfg.method`` (PIL image -> list of view tensors).

    Raises:
        DermkitError: unknown method or bad augment / crop settings.
    """
    return get_method(cfg.method).views(cfg.augment, method_section(cfg), cfg.data.image_size)


def _loader(dataset: CachedImageDataset, cfg: DataConfig, shuffle: bool, drop_last: bool,
            batch_size: int | None = None) -> DataLoader:
    workers = int(cfg.num_workers)
    return DataLoader(dataset, batch_size=batch_size or cfg.batch_size, shuffle=shuffle, drop_last=drop_last,
                      num_workers=workers, persistent_workers=workers > 0 and shuffle,
                      pin_memory=torch.cuda.is_available())


def build_loaders(cfg: PretrainConfig, data: PreparedData, resident: ResidentImages | None = None
                  ) -> tuple[DataLoader, Iterable[Batch], Iterable[Batch] | None]:
    """(train loader of multi-view batches, kNN bank batches, validation batches or None).

    The train loader yields ``(views, labels)``: V tensors (B, 3, s, s) and (B,) labels that the
    module ignores (``data.augment_on=device``: (B, 3, S, S) uint8 images the module augments). The
    monitor's batches are un-augmented, normalised (B, 3, S, S) images with labels. With ``resident``
    (``data.augment_on=resident``) every batch is drawn from those images where they are held
    (:mod:`dermkit.data.resident`), in the same order.
    """
    train_rows = data.indices("train")
    if len(train_rows) == 0:
        raise DermkitError(f"The training split of {data.source.root} is empty: nothing to pretrain on.")
    labels = data.labels
    # Batch norm and NT-Xent want full batches; a dataset smaller than one batch keeps its only batch.
    drop_last = len(train_rows) > cfg.data.batch_size
    rng = np.random.default_rng(cfg.seed)
    bank_rows = train_rows[labels[train_rows] >= 0] if data.source.labeled else train_rows
    if len(bank_rows) > cfg.monitor.max_bank:
        bank_rows = np.sort(rng.choice(bank_rows, size=cfg.monitor.max_bank, replace=False))
    val_rows = data.indices("val") if data.source.labeled else np.zeros(0, dtype=np.int64)
    monitor_batch = max(cfg.data.batch_size, 128)
    if resident is not None:
        def monitor(rows: np.ndarray) -> NormalizedBatches:
            # persistent=False: a new iterator per pass, as the worker paths' monitor loaders (no persistent workers)
            loader = resident_loader(ResidentDataset(resident, resident.rows(0, rows)), monitor_batch, persistent=False)
            return NormalizedBatches(loader, IMAGENET_MEAN, IMAGENET_STD)

        train = resident_loader(ResidentDataset(resident, resident.rows(0, train_rows)), cfg.data.batch_size,
                                shuffle=True, drop_last=drop_last)
        return train, monitor(bank_rows), monitor(val_rows) if len(val_rows) else None
    # data.augment_on=device: the loader ships (B, 3, S, S) uint8 and the module augments the batch.
    transform = None if augments_on_device(cfg.data.augment_on) else build_train_transform(cfg)
    train = _loader(CachedImageDataset(data.cache_path, train_rows, labels, transform), cfg.data, shuffle=True,
                    drop_last=drop_last)
    evaluation = eval_transform(IMAGENET_MEAN, IMAGENET_STD)
    bank = _loader(CachedImageDataset(data.cache_path, bank_rows, labels, evaluation), cfg.data, False, False,
                   monitor_batch)
    val = None
    if len(val_rows):
        val = _loader(CachedImageDataset(data.cache_path, val_rows, labels, evaluation), cfg.data, False, False,
                      monitor_batch)
    return train, bank, val


def validate(cfg: PretrainConfig) -> None:
    """Checks that need more than the schema's types (all before any image is cached).

    Raises:
        DermkitError: unknown method or backbone, bad view settings, or a batch of fewer than 2 images.
    """
    get_method(cfg.method)  # an unknown name lists the registered ones
    BACKBONES.lookup(cfg.model.backbone, key="model.backbone")  # an unknown name lists the registered ones
    if augments_on_device(cfg.data.augment_on):
        build_device_augment(cfg)  # also refuses a method without a device path
    build_train_transform(cfg)  # checks the augment and the method's crop settings for both paths
    if cfg.data.batch_size < 2:
        raise DermkitError(f"data.batch_size={cfg.data.batch_size}: the SSL methods need at least 2 images per "
                           "batch (batch norm, negatives).")


def backbone_card(cfg: PretrainConfig, data: PreparedData, train_images: int, epochs: int,
                  steps: int) -> BackboneCard:
    """The card saved beside a backbone (and each snapshot) after ``epochs`` epochs and ``steps`` steps."""
    return BackboneCard(architecture=cfg.model.backbone, input_size=cfg.data.image_size,
                        small_stem=bool(cfg.model.small_stem), mean=IMAGENET_MEAN, std=IMAGENET_STD,
                        method=cfg.method, epochs=epochs,
                        data={"name": cfg.data.name, "root": str(data.source.root), "train_images": train_images,
                              "steps": steps, "init": cfg.model.init or None,
                              "color_constancy": cfg.data.color_constancy},
                        split_hash=data.split_hash)


def run_pretraining(cfg: PretrainConfig) -> PretrainResult:
    """Pretrain ``cfg.model.backbone`` with ``cfg.method`` and write the run folder (see module doc).

    Raises:
        DermkitError: bad config or data.
    """
    validate(cfg)
    out_dir = Path(cfg.out_dir) if cfg.out_dir else default_out_dir(cfg)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    data = prepare_data(cfg.data)
    resume_from = resume_checkpoint(out_dir, cfg, PretrainConfig, data.split_hash)
    # data.augment_on=resident: the cached images, held where training runs (moved there by the trainer).
    resident = (ResidentImages.load([CachedArraySource(data.cache_path, data.labels)])
                if cfg.data.augment_on == RESIDENT else None)
    train, bank, val = build_loaders(cfg, data, resident)
    if val is None:
        console.print("No labelled validation split (unlabelled data): kNN monitoring is skipped; the collapse "
                      "signal is still computed on training images.")
    module = build_module(cfg)
    if augments_on_device(cfg.data.augment_on):
        module.device_augment = build_device_augment(cfg)
    monitor = SSLMonitor(cfg.monitor, bank, val, len(data.classes))
    timer = StepTimer()

    make_card = functools.partial(backbone_card, cfg, data, len(train.dataset))  # (epochs, steps) -> card
    snapshots = BackboneSnapshots(out_dir / "snapshots", cfg.snapshot_every_n_epochs, make_card)
    # No validation loop: the kNN monitor evaluates inside training (ssl.monitor).
    trainer, checkpoint = build_trainer(cfg.trainer, out_dir, every_n_train_steps=cfg.checkpoint_every_n_steps,
                                        callbacks=[*([ResidentOnDevice(resident)] if resident else []), monitor,
                                                   timer, snapshots], num_sanity_val_steps=0,
                                        limit_val_batches=0, enable_model_summary=False, use_distributed_sampler=True)
    if trainer.is_global_zero:
        write_run_info(out_dir, cfg, cfg.seed, {"split_hash": data.split_hash, "data": data.describe(),
                                                "resumed_from": str(resume_from) if resume_from else None},
                       kind="ssl.pretrain")
    if resume_from:
        console.print(f"Resuming from {resume_from}.")
    trainer.fit(module, train_dataloaders=train, ckpt_path=str(resume_from) if resume_from else None)
    images_per_second = timer.images_per_second(trainer.world_size)
    backbone_path = out_dir / "backbone.safetensors"
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    if trainer.is_global_zero:
        card = make_card(int(trainer.current_epoch), int(trainer.global_step))
        save_backbone(backbone_path, module.eval_backbone.float().cpu(), card)
    result = PretrainResult(out_dir=out_dir, backbone_path=backbone_path, checkpoint=Path(checkpoint.dirpath) / "last.ckpt",
                            start_step=module.start_step, global_step=int(trainer.global_step),
                            epochs=int(trainer.current_epoch), train_images=len(train.dataset),
                            images_per_second=images_per_second, data_wait_fraction=timer.data_wait_fraction(),
                            peak_gpu_memory_mib=timer.peak_memory_mib, metrics=metrics)
    if trainer.is_global_zero:
        summary = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(result).items()}
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return result


def print_summary(cfg: PretrainConfig, result: PretrainResult) -> None:
    """The rich table printed at the end of a run."""
    rows: list[tuple[str, Any]] = [
        ("method", cfg.method), ("backbone", f"{cfg.model.backbone}{' (small stem)' if cfg.model.small_stem else ''}"),
        ("data", f"{cfg.data.name} ({result.train_images} training images, {cfg.data.image_size} px)"),
        ("steps", f"{result.start_step} -> {result.global_step}"), ("epochs", result.epochs),
        ("images/s (steady state)", result.images_per_second if result.images_per_second else "n/a (too few steps)"),
    ]
    for key in ("train/loss", "monitor/embedding_std", "monitor/knn_top1", "monitor/knn_balanced_acc"):
        if key in result.metrics:
            rows.append((key, result.metrics[key]))
    rows += [("backbone file", str(result.backbone_path)), ("checkpoint", str(result.checkpoint))]
    print_table("ssl.pretrain summary", ["", "value"], rows)


@entry_point
def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(PretrainConfig, "python -m ssl.pretrain", DESCRIPTION, argv, FLAGS)
    result = run_pretraining(cfg)
    if rank_zero_only.rank == 0:
        print_summary(cfg, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
