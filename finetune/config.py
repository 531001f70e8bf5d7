"""Config schemas of ``finetune.train`` (and the parts ``finetune.evaluate`` shares)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dermkit.config import AdamWOptimConfig, BackboneConfig, DataConfig, TrainerConfig
from dermkit.errors import DermkitError
from dermkit.resume import runs_dir


@dataclass
class ClassifierModelConfig(BackboneConfig):
    """The classifier's backbone (the keys of :class:`dermkit.config.BackboneConfig`) and head.

    Keys:
        backbone: architecture from the registry (``resnet18``, ``resnet50``, ``vit_s16``,
            ``tiny_cnn``) for random initialisation or a plain weights file; ignored when ``init``
            is a backbone card file (the card names the architecture).
        small_stem: small-image stem (3x3 stride-1 first convolution, no max-pool); ignored with a
            backbone card.
        init: empty for random initialisation; a ``backbone.safetensors`` written by
            ``ssl.pretrain`` (its JSON card beside it sets architecture, stem, input size and
            normalisation); or any other local weights file (``.pth``/``.safetensors``, e.g.
            torchvision ImageNet weights) loaded into ``backbone``. Nothing is downloaded.
        dropout: dropout before the linear head.
        batchnorm_float32: with ``trainer.precision=bf16-mixed``, batch normalisation computes in
            float32 (its input is cast up; autocast leaves it there), so its statistics and the
            residual additions after it are not rounded to bfloat16; convolutions and the head stay
            in bfloat16. No effect in float32.
        allow_other_split: accept a backbone card made on another split (e.g. pretrained on
            other images that cannot include this run's validation or test images), with a
            warning; by default such a backbone is refused.
    """

    dropout: float = 0.0
    batchnorm_float32: bool = False
    allow_other_split: bool = False


@dataclass
class LossConfig:
    """The training loss.

    Keys:
        name: ``focal`` (Lin et al. 2017), ``ce`` (cross-entropy) or ``class_balanced``
            (Cui et al. 2019: effective-number weights; focal when ``gamma`` > 0).
        gamma: focal γ (``focal`` and ``class_balanced``).
        weighting: per-class α for ``focal`` and ``ce``: ``none``, ``inverse`` (1/n),
            ``effective`` (effective number of samples, uses ``beta``) or ``given`` (``alpha``).
            Counted on the training data actually used (real + synthetic).
        beta: β of the effective number of samples.
        alpha: explicit per-class weights in the run's class order (``weighting=given``).
        label_smoothing: ``ce`` only: the target puts this much probability mass uniformly over the
            classes (Szegedy et al. 2016); 0 is the plain one-hot target.
    """

    name: str = "focal"
    gamma: float = 2.0
    weighting: str = "effective"
    beta: float = 0.999
    alpha: list[float] = field(default_factory=list)
    label_smoothing: float = 0.0


@dataclass
class FinetuneOptimConfig(AdamWOptimConfig):
    """The classifier's optimiser (``optim`` of ``finetune.train``): AdamW with per-step cosine decay,
    and the transfer-learning schedule (the shared keys: :class:`dermkit.config.AdamWOptimConfig`).

    Keys:
        lr: peak learning rate of the head (and of the backbone with random initialisation).
        backbone_lr_scale: the pretrained backbone's learning rate is ``lr * backbone_lr_scale``.
        weight_decay: AdamW weight decay.
        head_epochs: epochs that train the head only (backbone frozen, in eval mode) before the
            whole network trains; ignored (0) with random initialisation.
        freeze_backbone: train the head only for the whole run, with any initialisation (random,
            a backbone card, a weights file): the backbone stays frozen in eval mode, batch-norm
            statistics included, and only the head's weights are optimised (a linear probe with
            the run's loss, e.g. class weights). ``head_epochs`` and ``backbone_lr_scale`` then
            change nothing.
        warmup_steps: linear warm-up steps at the start of the cosine schedule.
        ema_decay: 0 for none; else validate, checkpoint and test an exponential moving average of
            the weights (and batch-norm statistics) updated after every optimiser step with this
            decay (Lightning's ``EMAWeightAveraging``). Its horizon is about ``1 / (1 - decay)``
            steps: 0.99 averages about the last 100 steps (one epoch of HAM10000 at batch 64).
    """

    lr: float = 1e-3
    backbone_lr_scale: float = 0.1
    weight_decay: float = 0.05
    head_epochs: int = 1
    warmup_steps: int = 0
    ema_decay: float = 0.0
    freeze_backbone: bool = False


@dataclass
class ValidationConfig:
    """Which epochs are validated (``val`` of ``finetune.train``); the best checkpoint is the best of those.

    Training does not depend on validation, so a run validating fewer epochs trains exactly as one
    validating every epoch and picks the same best epoch whenever that epoch is among those validated.
    Each validation costs a pass over the validation split (1,502 images for HAM10000) and a best and
    a last checkpoint; epochs not validated write no checkpoint, so a stopped run resumes from the
    last validated epoch. The last epoch is always validated.

    Keys:
        every_n_epochs: validate every this many epochs, counted back from the last (with 30 epochs
            and 3: epochs 30, 27, ..., 3, 1-based); 1 validates every epoch.
        start: share of ``trainer.max_epochs`` before the first validated epoch: epochs before
            ``floor(start * max_epochs)`` (0-based) are not validated; 0 from the first, 0.5 only
            in the second half.
    """

    every_n_epochs: int = 1
    start: float = 0.0


@dataclass
class FinetuneAugmentConfig:
    """Training augmentation; ``data.augment_on=workers`` and ``device`` draw the same operations.

    Every training image is flipped both ways at random, then:

    Keys:
        crop_scale: smallest area share of a random resized crop (aspect ratio 3/4 to 4/3) that is
            resized back to the input size; 1.0 = no crop.
        right_angles: also turn by 0, 90, 180 or 270 degrees, each with probability 1/4 (exact, no
            black corners); with both flips this draws each of the square's 8 orientations.
        rotation: largest rotation in degrees by any angle (180 = any angle, 0 = none); corners from
            outside the image are black. 0 by default: at 64 px on HAM10000 any-angle rotation cost
            about 9 validation balanced-accuracy points (docs/benchmarks.md, "What was tried and why it lost").
        jitter: brightness, contrast and saturation jitter (no hue: colour is diagnostic).
        zoom_out: largest zoom-out factor (>= 1): after the crop, the image shrinks by a side
            factor drawn from [1, zoom_out], centred, its border mirrored (another camera's
            magnification); 1 = none.
        vignette: probability of dark corners with a random strength and radius (a dermatoscope's
            round field of view, :func:`dermkit.augment.vignette`); 0 = none.
    """

    crop_scale: float = 1.0
    right_angles: bool = False
    rotation: float = 0.0
    jitter: float = 0.1
    zoom_out: float = 1.0
    vignette: float = 0.0


@dataclass
class SynthConfig:
    """Synthetic images added to the training data (never to validation or test).

    Keys:
        manifest: a ``manifest.csv`` written by ``synth.generate`` (or its folder); empty for none.
        max_ratio: at most ``max_ratio`` synthetic images per real training image, per class.
        classes: classes to add synthetic images for (empty: every class in the manifest).
        allow_extra_labels: accept a manifest whose generator was trained on a larger label fraction
            than ``data.fraction`` (its images carry labels the run otherwise lacks; a deliberate
            comparison only, recorded in ``run.json``).
        steps_only: train on no synthetic image, only as many steps as if they were added: each epoch
            draws as many items as the real plus the selected synthetic images, all from the real
            images, by the balanced sampler (``sampler=balanced`` required). The equal-steps control
            of a synthetic run: oversampling given the same epochs, steps and schedule.
    """

    manifest: str = ""
    max_ratio: float = 1.0
    classes: list[str] = field(default_factory=list)
    allow_extra_labels: bool = False
    steps_only: bool = False


@dataclass
class ReportConfig:
    """The HTML evaluation report (:mod:`finetune.html_report`) written beside the metrics.

    Keys:
        bootstrap: bootstrap replicates of the 95% intervals (images resampled).
        seed: seed of the bootstrap resampling.
        explain: images per class and group (true positives, false negatives, false positives)
            drawn with Grad-CAM and Grad-CAM++; 0 draws none.
        cam_layer: the layer the CAMs weight, by its name in the backbone network
            (``backbone.net.named_modules()``: ``layer3``, ``layer4.1``; the report records the
            name it used); empty: the deepest layer whose maps have at least 8 x 8 cells at the
            model's input size (:func:`finetune.explain.cam_layer`).
        mistakes: rows of the most-confident-mistakes table.
    """

    bootstrap: int = 1000
    seed: int = 0
    explain: int = 0
    cam_layer: str = ""
    mistakes: int = 12


def check_explain(value: int) -> None:
    """The check of ``--explain`` (``report.explain``): 0 or more images per class and group.

    Raises:
        DermkitError: a negative value.
    """
    if value < 0:
        raise DermkitError(f"--explain (report.explain)={value} must be 0 or more (0: no Grad-CAM grids).")


def check_report_config(report: ReportConfig, prefix: str = "report") -> None:
    """Refuse report counts the report cannot use, before any work (the report is drawn last).

    Raises:
        DermkitError: ``explain`` or ``mistakes`` below 0 (``report.explain=-1`` would be recorded
            as asked), or ``bootstrap`` below 2, naming the key.
    """
    for key in ("explain", "mistakes"):
        value = getattr(report, key)
        if value < 0:
            raise DermkitError(f"{prefix}.{key}={value} must be 0 or more (0: none).")
    if report.bootstrap < 2:
        raise DermkitError(f"{prefix}.bootstrap={report.bootstrap}: the bootstrap needs at least 2 replicates "
                           "(1000 is usual).")


@dataclass
class FinetuneConfig:
    """``python -m finetune.train``: fine-tune a classifier and test it.

    Keys:
        data: :class:`dermkit.config.DataConfig` (``data.fraction`` picks the nested label fraction).
        trainer: :class:`dermkit.config.TrainerConfig`.
        model: :class:`ClassifierModelConfig`.
        loss: :class:`LossConfig`.
        optim: :class:`FinetuneOptimConfig`.
        val: :class:`ValidationConfig`: which epochs are validated (and can be the best).
        augment: :class:`FinetuneAugmentConfig` of the training images.
        synth: :class:`SynthConfig`.
        report: :class:`ReportConfig` of the test split's HTML report (``report/index.html``).
        sampler: ``shuffle`` (plain shuffling) or ``balanced`` (every class drawn equally often).
        seed: seed of initialisation, augmentation and sampling.
        out_dir: run folder (metrics, predictions, figures, checkpoints); empty =
            ``$DERMKIT_RUNS/finetune/<backbone>_<data.name>_<image_size>px`` (``runs/`` when unset), so that
            runs on other data or at another size do not share a folder. Re-running with the same folder
            resumes from ``out_dir/checkpoints/last.ckpt`` when the settings match
            (:mod:`dermkit.resume`).
        resume: no longer needed (re-running resumes); kept so that older commands still run.
        restart: start a new run even if ``out_dir`` holds one (its files move to
            ``out_dir/replaced-<time>/``).
    """

    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(max_epochs=5))
    model: ClassifierModelConfig = field(default_factory=ClassifierModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: FinetuneOptimConfig = field(default_factory=FinetuneOptimConfig)
    val: ValidationConfig = field(default_factory=ValidationConfig)
    augment: FinetuneAugmentConfig = field(default_factory=FinetuneAugmentConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    report: ReportConfig = field(default_factory=lambda: ReportConfig(explain=2))
    sampler: str = "shuffle"
    seed: int = 0
    out_dir: str = ""
    resume: bool = False
    restart: bool = False


def run_folder(cfg: FinetuneConfig) -> Path:
    """``cfg.out_dir``, or where a run of this backbone, data and image size goes when it is empty."""
    if cfg.out_dir:
        return Path(cfg.out_dir)
    return runs_dir() / "finetune" / f"{cfg.model.backbone}_{cfg.data.name}_{cfg.data.image_size}px"
