"""Config schema of ``python -m bench.label_efficiency`` and its presets.

A preset is a YAML file ``configs/bench_<name>.yaml`` (``--preset cpu-small`` reads
``configs/bench_cpu_small.yaml``) holding keys of :class:`BenchConfig`. The stages are driven
through their command lines only, so the stage settings here are lists of ``key=value`` overrides
(or flags) passed on verbatim: each stage's own schema validates them, and ``--help-config`` of
the stage lists what is accepted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dermkit.config import DataConfig
from dermkit.ssl_methods import SSL_METHODS
from dermkit.vocab import MINORITY_CLASSES

# The SSL method names come from the shared library, not from ssl.pretrain's registry (ssl.methods):
# bench talks to the stages only through their command lines and files, and nothing outside ssl/
# may import ssl.*. dermkit.ssl_methods keeps the names, and ssl.methods refuses to load when its
# registry and that list differ, so the two cannot drift apart unnoticed.
INITS: tuple[str, ...] = ("random", *SSL_METHODS, "imagenet")


@dataclass
class GridConfig:
    """The cells of the grid: every combination of the four lists.

    Keys:
        fractions: label fractions of the training split (nested subsets: 0.01, 0.05, 0.1, 0.25,
            0.5, 1.0).
        inits: classifier initialisations: ``random``, an SSL method (``simclr``, ``dino``, ...:
            the names in :data:`dermkit.ssl_methods.SSL_METHODS`; a backbone pretrained by
            ``ssl.pretrain`` on the training images, labels unused) and ``imagenet`` (the local
            file ``grid.imagenet_weights``).
        synthetic: ``false`` (real images only) and/or ``true`` (plus generated minority images).
        seeds: fine-tuning seeds (at least 3 for an interval worth reading).
        imagenet_weights: local ImageNet weights file for the ``imagenet`` init (nothing is
            downloaded); required exactly when ``inits`` holds ``imagenet``.
    """

    fractions: list[float] = field(default_factory=lambda: [0.01, 0.1, 1.0])
    inits: list[str] = field(default_factory=lambda: ["random", "simclr", "dino"])
    synthetic: list[bool] = field(default_factory=lambda: [False, True])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    imagenet_weights: str = ""


@dataclass
class BenchModelConfig:
    """The grid's ``model`` section: the one backbone architecture shared by pretraining and
    fine-tuning (a fair comparison).

    Keys:
        backbone: registry name (``resnet18``, ``resnet50``, ``vit_s16``, ``tiny_cnn``); passed as
            ``model.backbone`` to ``ssl.pretrain`` and ``finetune.train``.
        small_stem: small-image stem (inputs of 64 px and less); passed as ``model.small_stem``.
    """

    backbone: str = "resnet18"
    small_stem: bool = False


@dataclass
class PretrainConfig:
    """``ssl.pretrain``: one run per SSL method in ``grid.inits``.

    Keys:
        overrides: ``key=value`` overrides for every method (e.g. ``trainer.max_epochs=20``).
        method_overrides: extra overrides per method, e.g. ``{dino: [trainer.max_epochs=30]}``.
        backbones: an existing ``backbone.safetensors`` per method, e.g. ``{simclr: /runs/ssl/long/backbone.safetensors}``:
            that method is not pretrained by the grid; its cells start from this file (a pretraining run
            longer than a grid should wait for, made with ``ssl.pretrain`` on the same split). The file's
            content is part of the cells' keys, so a replaced file re-runs them.
    """

    overrides: list[str] = field(default_factory=list)
    method_overrides: dict[str, list[str]] = field(default_factory=dict)
    backbones: dict[str, str] = field(default_factory=dict)


@dataclass
class SynthConfig:
    """``synth.train`` then ``synth.generate`` (only when ``grid.synthetic`` holds ``true``).

    Keys:
        classes: classes to generate (the minority classes by default).
        n_per_class: images generated per class (``--n``).
        match_fraction: ``true``: one generator per label fraction, trained on that fraction's
            labeled images only, so a synthetic-on cell uses no label the synthetic-off cell lacks.
            ``false``: one generator trained on the whole training split; at fractions below 1 the
            synthetic-on cells then draw on labels the off cells do not have (the report says so).
        train_overrides: ``key=value`` overrides of ``synth.train`` (e.g. ``model.preset=small``).
        generate_args: extra arguments of ``synth.generate`` (e.g. ``[--steps, "25"]``).
    """

    classes: list[str] = field(default_factory=lambda: list(MINORITY_CLASSES))
    n_per_class: int = 200
    match_fraction: bool = True
    train_overrides: list[str] = field(default_factory=list)
    generate_args: list[str] = field(default_factory=list)


@dataclass
class FinetuneConfig:
    """``finetune.train``: one run per grid cell.

    Keys:
        overrides: ``key=value`` overrides for every cell (e.g. ``trainer.max_epochs=10``); the
            cell's own keys (``data.fraction``, ``model.init``, ``synth.manifest``, ``seed``,
            ``out_dir``) are set by the grid and must not appear here.
        fraction_overrides: extra overrides per label fraction, applied after ``overrides``, e.g.
            ``{"0.01": [trainer.max_epochs=40]}``: a 1% subset needs many more epochs than the full
            training split for a comparable number of optimiser steps.
    """

    overrides: list[str] = field(default_factory=list)
    fraction_overrides: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class RunConfig:
    """How the steps are executed.

    Keys:
        jobs: steps run at the same time (separate processes). On a CPU machine,
            ``jobs x threads`` should not exceed the cores.
        threads: torch CPU threads per step (``OMP_NUM_THREADS``); 0 leaves the default.
        keep_going: after a failed step, carry on with the steps that do not depend on it
            (default: stop launching new steps and report the failure).
    """

    jobs: int = 1
    threads: int = 0
    keep_going: bool = False


@dataclass
class ReportConfig:
    """Statistics of the report.

    Keys:
        level: confidence level of every interval.
        n_bootstrap: replicates of the paired bootstrap.
        bootstrap_seed: seed of the resampling (the report is reproducible).
    """

    level: float = 0.95
    n_bootstrap: int = 5000
    bootstrap_seed: int = 0


@dataclass
class BenchConfig:
    """``python -m bench.label_efficiency``: the label-efficiency and synthetic-benefit grid.

    Keys:
        preset: the preset's name (set by ``--preset``; names the default output folder).
        about: one line on what the preset is for and how long it takes (shown in the report).
        data: :class:`dermkit.config.DataConfig`; ``name``, ``root``, ``image_size``,
            ``split_seed``, ``val_fraction``, ``test_fraction``, ``batch_size`` and
            ``num_workers`` are passed to every stage, so every stage sees the same split.
        model: :class:`BenchModelConfig`.
        grid: :class:`GridConfig`.
        pretrain: :class:`PretrainConfig`.
        synth: :class:`SynthConfig`.
        finetune: :class:`FinetuneConfig`.
        run: :class:`RunConfig`.
        report: :class:`ReportConfig`.
        out_dir: output folder (default ``$DERMKIT_RUNS/bench/<preset>``, ``runs/bench/<preset>`` in
            the repository when ``DERMKIT_RUNS`` is unset); re-running resumes in it.
    """

    preset: str = ""
    about: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    model: BenchModelConfig = field(default_factory=BenchModelConfig)
    grid: GridConfig = field(default_factory=GridConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    run: RunConfig = field(default_factory=RunConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    out_dir: str = ""
