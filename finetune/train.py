"""``python -m finetune.train``: fine-tune a classifier, pick the best epoch on validation, test it.

Defaults: the demo data at 64 px, ResNet-18 (standard stem) from random initialisation, focal loss
(γ=2, effective-number α), 5 epochs of batch 64 (70 steps): 13.7 min measured on 2 CPU cores shared
with other jobs (load average ~15); ``configs/finetune_demo.yaml`` (tiny_cnn, 32 px) is the quick
check. The demo data is procedural: its numbers say nothing about skin lesions.

Examples::

    python -m finetune.train                                    # demo data
    python -m finetune.train --config configs/finetune_ham10000.yaml data.fraction=0.1   # on a GPU
    python -m finetune.train --config configs/finetune_ham64_cpu.yaml                    # short CPU run
    python -m finetune.train --init runs/ssl/<run>/backbone.safetensors --data ham10000
    python -m finetune.train --data ham10000 synth.manifest=runs/synth/<run>/manifest.csv synth.max_ratio=0.5

Outputs in ``out_dir``: see :mod:`finetune.outputs` (``metrics.json``, ``predictions.csv``,
``per_class.csv``, ``confusion_matrix.png``, ``per_class_recall.png``), the HTML report
``report/index.html`` (:mod:`finetune.html_report`, settings ``report.*``), plus ``config.yaml``,
``run.json``, ``checkpoints/`` (best by validation balanced accuracy, and last) and the training
logs (``logs/metrics.csv``, ``logs/tensorboard/``; :mod:`dermkit.trainer`). Re-running the same command resumes from
``checkpoints/last.ckpt``; changed settings are refused, ``--restart`` starts over (:mod:`dermkit.resume`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EMAWeightAveraging
from pytorch_lightning.utilities import rank_zero_only
from torch.utils.data import DataLoader, Dataset, Sampler

from dermkit.config import Flag, augments_on_device, parse_config, to_container
from dermkit.console import console, entry_point
from dermkit.cpu_time import CpuTimeByPart
from dermkit.data.prepare import PreparedData, prepare_data
from dermkit.data.resident import RESIDENT, ResidentDataset, ResidentImages, ResidentOnDevice, resident_loader
from dermkit.data.split_policy import check_same_split
from dermkit.errors import DermkitError
from dermkit.flags import backbone_flag, data_flag, out_flag, root_flag
from dermkit.metrics import classification_report
from dermkit.out_folder import check_out_folder
from dermkit.resume import RESTART_FLAG, resume_checkpoint
from dermkit.runinfo import write_run_info
from dermkit.throughput import StepTimer
from dermkit.trainer import build_trainer
from finetune.backbone import BackboneSpec, resolve_backbone
from finetune.class_weights import WEIGHTINGS
from finetune.config import FinetuneConfig, check_report_config, run_folder
from finetune.data import FinetuneData, build_datasets, resident_sources
from finetune.device_transforms import train_device_augment
from finetune.explain import RowImages, cam_layer, require_grad_cam
from finetune.html_report import write_html_report
from finetune.losses import LOSSES, check_label_smoothing
from finetune.module import ClassifierModule
from finetune.outputs import write_outputs
from finetune.sampler import SAMPLERS
from finetune.synthetic import load_synthetic
from finetune.transforms import eval_transform, train_transform
from finetune.validation_schedule import ValidationSchedule, validated_epochs

DESCRIPTION = ("Fine-tune a skin-lesion classifier (random init, an ssl backbone or a weights file), with optional "
               "synthetic training images; writes metrics.json, predictions.csv and figures.")
FLAGS = [
    data_flag(" (labelled: not folder)"),
    root_flag(),
    Flag("--fraction", "data.fraction", "nested label fraction of the training split", float),
    Flag("--image-size", "data.image_size", "input side in pixels", int),
    backbone_flag(note=" (with --init: a backbone card's architecture wins)"),
    Flag("--init", "model.init", "backbone.safetensors from ssl.pretrain, or a local weights file"),
    Flag("--loss", "loss.name", f"training loss: {', '.join(LOSSES.names())}"),
    Flag("--epochs", "trainer.max_epochs", "training epochs", int),
    Flag("--manifest", "synth.manifest", "synthetic manifest.csv to add to the training data"),
    out_flag("run folder", command="finetune.train"),
    Flag("--seed", "seed", "seed", int),
    Flag("--resume", "resume", "no longer needed: re-running the same command resumes from "
         "out_dir/checkpoints/last.ckpt (kept so that older commands still run)", bool),
    RESTART_FLAG,
]
MONITOR = "val/balanced_accuracy"


def check_config(cfg: FinetuneConfig) -> None:
    """Reject values the schema's types cannot (names of choices, ranges)."""
    SAMPLERS.lookup(cfg.sampler, key="sampler")
    if cfg.optim.head_epochs < 0 or cfg.optim.lr <= 0 or cfg.optim.backbone_lr_scale < 0:
        raise DermkitError("optim.head_epochs must be >= 0, optim.lr > 0 and optim.backbone_lr_scale >= 0.")
    if not 0 <= cfg.optim.ema_decay < 1:
        raise DermkitError(f"optim.ema_decay={cfg.optim.ema_decay} must lie in [0, 1) (0: no weight average).")
    LOSSES.lookup(cfg.loss.name, key="loss.name")
    WEIGHTINGS.lookup(cfg.loss.weighting, key="loss.weighting")
    check_label_smoothing(cfg.loss.name, cfg.loss.label_smoothing)
    if cfg.sampler == "balanced" and cfg.loss.weighting in ("inverse", "effective"):
        # The sampler already evens the classes out; weights from the class counts on top would
        # weight each minority class a second time (df about 60x nevus at 100% labels: HAM10000 has
        # 6,705 nevi and 115 dermatofibromas).
        raise DermkitError(f"sampler=balanced with loss.weighting={cfg.loss.weighting} corrects the class imbalance "
                           "twice: the sampler draws every class equally often. Set loss.weighting=none with "
                           "the balanced sampler, or keep the weights with sampler=shuffle.")
    if cfg.synth.steps_only and not (cfg.synth.manifest and cfg.sampler == "balanced"):
        # Without the manifest there is nothing to count; without the balanced sampler an epoch is one pass
        # over the real images, whatever length it is given.
        raise DermkitError("synth.steps_only=true sizes the epochs by the images of synth.manifest and draws them from "
                           "the real images with the balanced sampler: give synth.manifest=... and sampler=balanced "
                           f"(now synth.manifest={cfg.synth.manifest!r}, sampler={cfg.sampler}).")
    validated_epochs(cfg.trainer.max_epochs, cfg.val.every_n_epochs, cfg.val.start)  # checks the two keys
    if (cfg.val.every_n_epochs, cfg.val.start) != (1, 0.0) and cfg.trainer.max_steps != -1:
        # The schedule counts back from the last epoch; a run that trainer.max_steps ends early has another one.
        raise DermkitError(f"val.every_n_epochs={cfg.val.every_n_epochs} and val.start={cfg.val.start} count "
                           f"epochs back from trainer.max_epochs; trainer.max_steps={cfg.trainer.max_steps} may end "
                           "the run on an epoch that is not validated. Set trainer.max_steps=-1 or validate every "
                           "epoch.")
    if not 0 < cfg.data.fraction <= 1:
        raise DermkitError(f"data.fraction={cfg.data.fraction} must lie in (0, 1].")
    check_report_config(cfg.report)  # the report is drawn after training and testing
    require_grad_cam(cfg.report.explain, "report.explain")
    augment = cfg.augment
    if not (0 < augment.crop_scale <= 1 and 0 <= augment.rotation <= 180 and 0 <= augment.jitter < 1):
        raise DermkitError(f"augment.crop_scale={augment.crop_scale} must lie in (0, 1], augment.rotation="
                           f"{augment.rotation} in [0, 180] and augment.jitter={augment.jitter} in [0, 1).")
    if not (1 <= augment.zoom_out <= 3 and 0 <= augment.vignette <= 1):
        raise DermkitError(f"augment.zoom_out={augment.zoom_out} must lie in [1, 3] and augment.vignette="
                           f"{augment.vignette} in [0, 1].")


def make_loader(dataset: Dataset, cfg: FinetuneConfig, shuffle: bool = False, sampler: Sampler | None = None,
                generator: torch.Generator | None = None) -> DataLoader:
    """A DataLoader with the run's batch size and workers (a resident dataset's: no workers, batches gathered
    on the device, :func:`dermkit.data.resident.resident_loader`)."""
    if isinstance(dataset, ResidentDataset):
        return resident_loader(dataset, cfg.data.batch_size, shuffle=shuffle, sampler=sampler, generator=generator)
    workers = cfg.data.num_workers
    return DataLoader(dataset, batch_size=cfg.data.batch_size, shuffle=shuffle, sampler=sampler,
                      num_workers=workers, persistent_workers=workers > 0, generator=generator,
                      pin_memory=torch.cuda.is_available())


def build_data(cfg: FinetuneConfig, prepared: PreparedData, spec: BackboneSpec) -> FinetuneData:
    """Real (+ synthetic) training data, validation and test, with the backbone's normalisation."""
    synthetic = None
    if cfg.synth.manifest:
        real_counts = prepared.class_counts(prepared.indices("train", cfg.data.fraction))
        synthetic = load_synthetic(cfg.synth.manifest, prepared.classes, real_counts, prepared.split_hash,
                                   spec.image_size, cfg.data.cache_dir, cfg.synth.max_ratio, list(cfg.synth.classes),
                                   fraction=cfg.data.fraction, allow_extra_labels=cfg.synth.allow_extra_labels,
                                   dataset_files=[r.path for r in prepared.source.records if r.path is not None],
                                   color_constancy=cfg.data.color_constancy)
        if cfg.synth.allow_extra_labels and (synthetic.label_fraction or 1.0) > cfg.data.fraction + 1e-9:
            console.print(f"[yellow]synth.allow_extra_labels=true: the generator saw label fraction "
                          f"{synthetic.label_fraction or 'unrecorded'}, this run data.fraction={cfg.data.fraction:g}; "
                          "its synthetic images carry labels the run's real data lacks.[/]")
    # data.augment_on=device|resident: training items stay (3, S, S) uint8; the module augments whole batches.
    augment = None if augments_on_device(cfg.data.augment_on) else train_transform(
        spec.image_size, spec.mean, spec.std, cfg.augment)
    trained_synthetic = None if cfg.synth.steps_only else synthetic
    # data.augment_on=resident: every image the run reads, held where it trains (moved there by the trainer).
    resident = (ResidentImages.load(resident_sources(prepared, trained_synthetic))
                if cfg.data.augment_on == RESIDENT else None)
    if not cfg.synth.steps_only:
        return build_datasets(prepared, cfg.data.fraction, augment, eval_transform(spec.mean, spec.std), synthetic,
                              resident)
    # The equal-steps control: the synthetic images only size the epochs (the sampler draws from the real ones).
    data = build_datasets(prepared, cfg.data.fraction, augment, eval_transform(spec.mean, spec.std),
                          resident=resident)
    data.synthetic = synthetic
    data.epoch_items = len(data.train_labels) + sum(synthetic.counts.values())  # type: ignore[union-attr]
    return data


def build_module(cfg: FinetuneConfig, classes: list[str], counts: list[int], spec: BackboneSpec,
                 backbone: torch.nn.Module, split_hash: str = "") -> ClassifierModule:
    """The classifier; the head-only phase and lower backbone rate apply to pretrained backbones only, the frozen
    backbone (``optim.freeze_backbone``) to any."""
    loss = {"name": cfg.loss.name, "counts": counts, "gamma": cfg.loss.gamma, "weighting": cfg.loss.weighting,
            "beta": cfg.loss.beta, "alpha": list(cfg.loss.alpha), "label_smoothing": cfg.loss.label_smoothing}
    return ClassifierModule(
        classes=classes, architecture=spec.architecture, small_stem=spec.small_stem, image_size=spec.image_size,
        mean=spec.mean, std=spec.std, init=spec.init, loss=loss, lr=cfg.optim.lr,
        backbone_lr_scale=cfg.optim.backbone_lr_scale if spec.pretrained else 1.0,
        weight_decay=cfg.optim.weight_decay, head_epochs=cfg.optim.head_epochs if spec.pretrained else 0,
        warmup_steps=cfg.optim.warmup_steps, dropout=cfg.model.dropout, color_constancy=cfg.data.color_constancy,
        backbone=backbone, freeze_backbone=cfg.optim.freeze_backbone, batchnorm_float32=cfg.model.batchnorm_float32,
        split_hash=split_hash,
    )


def check_backbone_card(spec: BackboneSpec, split_hash: str, color_constancy: str,
                        allow_other_split: bool = False) -> None:
    """Refuse a backbone pretrained on another split; warn when it saw other colour constancy.

    A weights file without a card (or random initialisation) records neither and is accepted.
    ``allow_other_split`` (``model.allow_other_split``) turns the refusal into a warning, for a
    backbone pretrained on other images that the user knows exclude this run's evaluation images.

    Raises:
        DermkitError: the card's split hash differs from ``split_hash``
            (:func:`dermkit.data.split_policy.check_same_split`).
    """
    if not spec.card:
        return
    card_split = str(spec.card.get("split_hash") or "")
    if allow_other_split and card_split and card_split != split_hash:
        console.print(f"[yellow]model.allow_other_split=true: the backbone {spec.init} was pretrained on split "
                      f"{card_split}, this run's is {split_hash}; it must not have seen this run's validation or "
                      "test images.[/]")
    else:
        check_same_split(card_split, split_hash, spec.init, made_by="The backbone (pretrained without labels)",
                         remedy="pretrain a backbone on this split (python -m ssl.pretrain with this run's data "
                                "settings), or, for a backbone pretrained on other images that exclude this run's "
                                "validation and test images, set model.allow_other_split=true")
    card_color = (spec.card.get("data") or {}).get("color_constancy", "none")  # type: ignore[union-attr]
    if card_color != color_constancy:
        console.print(f"[yellow]The backbone was pretrained with data.color_constancy={card_color}, this run uses "
                      f"{color_constancy}: its features were learnt on differently normalised colours.[/]")


def make_classifier(cfg: FinetuneConfig, data: FinetuneData, classes: list[str], spec: BackboneSpec,
                    backbone: torch.nn.Module, split_hash: str = "") -> ClassifierModule:
    """The classifier for ``data`` (:func:`build_module`), with the device-side augmentation when asked for."""
    console.print("Training images per class (real + synthetic): "
                  + ", ".join(f"{c} {data.counts['real'][c]}+{data.counts['synthetic'][c]}" for c in classes))
    if data.epoch_items:
        console.print(f"synth.steps_only: each epoch draws {data.epoch_items} items from the real images (balanced "
                      f"sampler), as many as real + synthetic would be; no synthetic image is trained on.")
    module = build_module(cfg, classes, data.class_totals(classes), spec, backbone, split_hash)
    if augments_on_device(cfg.data.augment_on):
        module.device_augment = train_device_augment(spec.image_size, spec.mean, spec.std, cfg.augment)
    return module


def run_record(cfg: FinetuneConfig, prepared: PreparedData, data: FinetuneData, spec: BackboneSpec) -> dict[str, Any]:
    """What ``run.json`` records about the data, the backbone and the synthetic images (and metrics.json too)."""
    extra: dict[str, Any] = {"split_hash": prepared.split_hash, "fraction": cfg.data.fraction, "seed": cfg.seed,
                             "data": prepared.describe(), "counts": data.counts,
                             "backbone": {**vars(spec), "frozen": cfg.optim.freeze_backbone},
                             # 0-based; none listed when trainer.max_steps sets the length (every epoch validated)
                             "validated_epochs": None if cfg.trainer.max_epochs < 1 else validated_epochs(
                                 cfg.trainer.max_epochs, cfg.val.every_n_epochs, cfg.val.start)}
    if data.synthetic is not None:
        extra["synthetic"] = {"manifest": str(data.synthetic.manifest), "label_fraction": data.synthetic.label_fraction,
                              "allow_extra_labels": cfg.synth.allow_extra_labels}
        if data.epoch_items:  # synth.steps_only: trained on none of them ("counts" says 0), epochs sized by them
            extra["synthetic"].update(steps_only=True, stood_in_for=dict(data.synthetic.counts),
                                      epoch_items=data.epoch_items)
    return extra


def make_loaders(cfg: FinetuneConfig, data: FinetuneData) -> tuple[DataLoader, DataLoader, DataLoader]:
    """(train, val, test) loaders; training order (or the balanced sampler) seeded by ``seed``."""
    generator = torch.Generator().manual_seed(cfg.seed)
    sampler = SAMPLERS.lookup(cfg.sampler)(torch.as_tensor(data.train_labels), data.epoch_items or None, generator)
    train_loader = make_loader(data.train, cfg, sampler=sampler, generator=generator)
    return train_loader, make_loader(data.val, cfg), make_loader(data.test, cfg)


def train_and_test(cfg: FinetuneConfig, module: ClassifierModule, loaders: tuple[DataLoader, DataLoader, DataLoader],
                   out_dir: Path, resume_from: Path | None,
                   cpu: CpuTimeByPart | None = None,
                   callbacks: Sequence[pl.Callback] = ()) -> tuple[pl.Trainer, dict[str, Any]]:
    """Fit (resuming from ``resume_from``), then test the best epoch's weights (else the last ones).

    ``cpu`` (a callback of the trainer when given) charges the CPU time to the run's parts; ``callbacks`` are
    added to the trainer's (``data.augment_on=resident``: the one that moves the images to the device).

    Returns:
        (the trainer, what metrics.json records about the training: best checkpoint and score,
        epochs, speed, loss settings).
    """
    train_loader, val_loader, test_loader = loaders
    timer = StepTimer()
    strategy = {}
    if cfg.trainer.strategy == "ddp" and module.hparams.head_epochs > 0:
        # The frozen backbone gets no gradients during the head-only epochs.
        strategy = {"strategy": "ddp_find_unused_parameters_true"}
    # The average's on_save_checkpoint puts it in the checkpoint's state_dict, so the best checkpoint,
    # the test below and finetune.evaluate all use the averaged weights.
    average = [EMAWeightAveraging(decay=cfg.optim.ema_decay)] if cfg.optim.ema_decay > 0 else []
    schedule = [] if (cfg.val.every_n_epochs, cfg.val.start) == (1, 0.0) else [
        ValidationSchedule(validated_epochs(cfg.trainer.max_epochs, cfg.val.every_n_epochs, cfg.val.start))]
    trainer, checkpoint = build_trainer(cfg.trainer, out_dir, monitor=MONITOR,
                                        callbacks=[*callbacks, timer, *average, *schedule, *([cpu] if cpu else [])],
                                        **strategy)
    if resume_from:
        console.print(f"Resuming from {resume_from}.")
    trainer.fit(module, train_loader, val_loader, ckpt_path=str(resume_from) if resume_from else None)
    best = checkpoint.best_model_path
    if best and not Path(best).is_file():
        # Resumed from an older checkpoint (last.prev.ckpt) whose best file a later epoch replaced.
        console.print(f"[yellow]The best checkpoint {best} recorded by the resumed checkpoint no longer exists: "
                      "testing the last weights (metrics.json records best_checkpoint: null).[/]")
        best = ""
    elif not best:
        console.print("[yellow]No validation epoch finished: testing the last weights.[/]")
    trainer.test(module, test_loader, ckpt_path=best or None, verbose=False)
    best_score = checkpoint.best_model_score
    return trainer, {
        "best_checkpoint": best or None,
        "best_val_balanced_accuracy": float(best_score) if best_score is not None else None,
        "epochs_trained": trainer.current_epoch,
        # Steady state of this invocation (a resumed run times only its own steps); 0 = too few steps.
        "train_images_per_second": timer.images_per_second(trainer.world_size),
        "train_data_wait_fraction": timer.data_wait_fraction(),  # of that step time (None: no step timed)
        "peak_gpu_memory_mib": timer.peak_memory_mib,  # during training (None: not on a GPU)
        "loss": to_container(cfg.loss),
    }


def write_test_results(cfg: FinetuneConfig, module: ClassifierModule, prepared: PreparedData, spec: BackboneSpec,
                       extra: dict[str, Any], out_dir: Path, cpu: CpuTimeByPart | None = None) -> None:
    """Score the test predictions; write metrics.json (with ``extra``), predictions, figures and the HTML report.

    With ``cpu``, metrics.json's ``cpu_seconds`` records the run's CPU time per part (the report included).
    """
    if cpu is not None:
        cpu.switch("report")
    classes = list(prepared.classes)
    index, probs, targets = module.test_predictions  # type: ignore[misc]
    report = classification_report(probs, targets, classes)
    image_ids = prepared.image_ids
    title = f"test, {Path(spec.init).name if spec.pretrained else 'random init'}, {cfg.data.name} fraction {cfg.data.fraction}"
    summary = [f"Test split of {cfg.data.name} ({prepared.split_hash}): {len(index)} images; training fraction "
               f"{cfg.data.fraction}, {extra['epochs_trained']} epoch(s), {spec.architecture} ({spec.init}).",
               f"Colour constancy: {cfg.data.color_constancy}."]
    extra["report"] = write_html_report(out_dir, module, RowImages(prepared.images, index.numpy()),
                                        [image_ids[i] for i in index.tolist()], probs.numpy(), targets.numpy(),
                                        classes, report, cfg.report, title, spec.mean, spec.std, summary)
    if cpu is not None:  # process and loader-worker CPU seconds per part (dermkit.cpu_time)
        extra["cpu_seconds"] = cpu.record()
    write_outputs(out_dir, report, [image_ids[i] for i in index.tolist()], [classes[t] for t in targets.tolist()],
                  probs, extra, title)
    console.print(f"Wrote {out_dir}/metrics.json, predictions.csv, per_class.csv and figures.")


@entry_point
def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(FinetuneConfig, "python -m finetune.train", DESCRIPTION, argv, FLAGS)
    check_config(cfg)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    backbone, spec = resolve_backbone(cfg.model, cfg.data.image_size)
    cfg.data.image_size = spec.image_size
    prepared = prepare_data(cfg.data)
    if not prepared.source.labeled:
        raise DermkitError(f"data.name={cfg.data.name} is unlabeled; fine-tuning needs class labels.")
    check_backbone_card(spec, prepared.split_hash, cfg.data.color_constancy, cfg.model.allow_other_split)
    data = build_data(cfg, prepared, spec)
    module = make_classifier(cfg, data, list(prepared.classes), spec, backbone, prepared.split_hash)
    if cfg.report.explain > 0 and cfg.report.cam_layer:  # a layer the backbone lacks fails now, not after training
        cam_layer(module, spec.image_size, cfg.report.cam_layer)

    out_dir = run_folder(cfg)
    if not cfg.out_dir:  # --out is checked as it is parsed; the default folder here
        check_out_folder(out_dir, "finetune.train", "The default run folder", other="Pass another with --out.")
    resume_from = resume_checkpoint(out_dir, cfg, FinetuneConfig, prepared.split_hash)
    if cfg.resume:
        console.print("--resume is no longer needed: re-running the same command resumes "
                      + (f"(from {resume_from})." if resume_from else "(nothing to resume: a new run)."))
    extra = run_record(cfg, prepared, data, spec)
    if rank_zero_only.rank == 0:  # under DDP every process runs main(); the first one writes the run's files
        write_run_info(out_dir, cfg, cfg.seed, extra, kind="finetune.train")
    cpu = CpuTimeByPart()
    resident = [ResidentOnDevice(data.resident)] if data.resident is not None else []
    trainer, training = train_and_test(cfg, module, make_loaders(cfg, data), out_dir, resume_from, cpu, resident)
    if not trainer.is_global_zero:
        return 0
    extra.update(training)
    write_test_results(cfg, module, prepared, spec, extra, out_dir, cpu)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
