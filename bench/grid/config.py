"""Config schema of ``python -m bench.label_efficiency`` and its presets.

A preset is a YAML file ``configs/bench_<name>.yaml`` (``--preset cpu-small`` reads
``configs/bench_cpu_small.yaml``) holding keys of :class:`BenchConfig`. The stages are driven
through their command lines only, so the stage settings here are lists of ``key=value`` overrides
(or flags) passed on verbatim: each stage's own schema validates them, and ``--help-config`` of
the stage lists what is accepted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from dermkit.config import DataConfig
from dermkit.ssl_methods import SSL_METHODS
from dermkit.vocab import MINORITY_CLASSES

# The SSL method names come from the shared library, not from ssl.pretrain's registry (ssl.methods):
# bench talks to the stages only through their command lines and files, and nothing outside ssl/
# may import ssl.*. dermkit.ssl_methods keeps the names, and ssl.methods refuses to load when its
# registry and that list differ, so the two cannot drift apart unnoticed.
INITS: tuple[str, ...] = ("random", *SSL_METHODS, "imagenet")
# ``<init>-linear`` (e.g. ``simclr-linear``): the weights of ``<init>``, frozen, with a trained linear head
# (``finetune.train optim.freeze_backbone=true``): a linear probe reported like any other cell.
LINEAR_SUFFIX = "-linear"
INIT_SPELLINGS = (f"{', '.join(INITS)}, or <init>{LINEAR_SUFFIX} (frozen backbone, linear head; "
                  f"e.g. simclr{LINEAR_SUFFIX})")


@dataclass(frozen=True)
class Init:
    """An initialisation of ``grid.inits``: where the backbone's weights come from and whether it trains.

    Attributes:
        name: as spelled in ``grid.inits`` (``simclr``, ``simclr-linear``, ...); names the cells.
        weights: the initialisation whose weights the backbone starts from (``random``, ``simclr``, ...,
            ``imagenet``); its pretraining step and ``model.init`` are shared with the cells of that name.
        frozen: the backbone stays frozen and only the head trains (``optim.freeze_backbone=true``).
    """

    name: str
    weights: str
    frozen: bool = False


def parse_init(name: str) -> Init:
    """The initialisation a ``grid.inits`` entry names.

    Raises:
        ValueError: neither one of :data:`INITS` nor one of them followed by :data:`LINEAR_SUFFIX`.
    """
    name = str(name)
    weights = name.removesuffix(LINEAR_SUFFIX)
    if weights not in INITS:
        raise ValueError(f"unknown init {name!r}; inits are {INIT_SPELLINGS}")
    return Init(name, weights, frozen=weights != name)


INIT_FRACTION_SEP = "@"  # finetune.init_overrides keys "<init>@<fraction>"


def split_init_key(key: str) -> tuple[str, str | None]:
    """A ``finetune.init_overrides`` key as (initialisation, fraction spelling or None):
    ``simclr`` -> (``simclr``, None), ``simclr@0.01`` -> (``simclr``, ``0.01``)."""
    init, sep, fraction = str(key).partition(INIT_FRACTION_SEP)
    return init, (fraction if sep else None)


def init_weights(inits: Iterable[str]) -> set[str]:
    """The initialisations whose weights the ``grid.inits`` entries ``inits`` start from (``simclr`` for
    ``simclr-linear``); unknown names are left out (:func:`parse_init` reports them)."""
    weights = set()
    for name in inits:
        try:
            weights.add(parse_init(name).weights)
        except ValueError:
            pass
    return weights

# The training-data arms of a cell (``grid.arms``). ``real`` and ``synth`` are the two arms of the
# older ``grid.synthetic: [false, true]`` axis and keep its folder names and step keys; the others
# answer "do synthetic images beat the cheap alternative?" (issue 12).
ARM_REAL = "real"
ARM_OVERSAMPLE = "oversample"
ARM_SYNTH = "synth"
ARM_FILTERED = "filtered"
LEGACY_ARMS: tuple[str, ...] = (ARM_REAL, ARM_SYNTH)
ARM_BASELINES: tuple[str, ...] = (ARM_REAL, ARM_OVERSAMPLE)  # what each synthetic arm is compared against
ARM_SPELLINGS = ("real, oversample, oversample<R> (oversampling for as many steps as synth<R>), synth, synth<R> "
                 "(R = synth.max_ratio, e.g. synth0.5, synth8), filtered, filtered<R>")
_ARM_PATTERN = re.compile(r"^(real|oversample|synth|filtered)(\d+(?:\.\d+)?)?$")


@dataclass(frozen=True)
class Arm:
    """What one arm adds to a cell's ``finetune.train`` command.

    Attributes:
        name: the arm as spelled in ``grid.arms`` (``real``, ``oversample``, ``synth2``, ``filtered``, ...).
        synthetic: whether generated minority images enter the training data.
        filtered: whether those images are first filtered by the ``real`` cell's classifier
            (``finetune.filter_synthetic``).
        max_ratio: ``synth.max_ratio`` passed to the cell (None: not passed, the stage's or the
            overrides' value holds, as in the older ``synth`` arm).
        sampler: ``sampler`` passed to the cell (None: not passed, plain shuffling).
        steps_only: the generated images only size the epochs (``synth.steps_only``): the cell trains on
            real images for as many steps as ``synth<max_ratio>`` (the equal-steps control ``oversample<R>``).
    """

    name: str
    synthetic: bool
    filtered: bool = False
    max_ratio: float | None = None
    sampler: str | None = None
    steps_only: bool = False

    @property
    def reads_manifest(self) -> bool:
        """Whether the cell reads the generated images' manifest (to train on them or to count them)."""
        return self.synthetic or self.steps_only

    @property
    def steps_of(self) -> str | None:
        """The synthetic arm whose steps an ``oversample<R>`` arm matches (``synth<R>``), else None."""
        return f"{ARM_SYNTH}{self.max_ratio:g}" if self.steps_only else None


def parse_arm(name: str) -> Arm:
    """The arm a ``grid.arms`` entry names.

    Raises:
        ValueError: not one of :data:`ARM_SPELLINGS` (a ratio on ``real`` or ``oversample``, a
            ratio that is not a positive number).
    """
    match = _ARM_PATTERN.match(str(name))
    if match is None:
        raise ValueError(f"unknown arm {name!r}; arms are {ARM_SPELLINGS}")
    kind, ratio = match.group(1), match.group(2)
    if ratio is not None and kind == ARM_REAL:
        raise ValueError(f"arm {name!r}: a ratio only goes with oversample, synth or filtered ({ARM_SPELLINGS})")
    max_ratio = float(ratio) if ratio is not None else None
    if max_ratio is not None and max_ratio <= 0:
        raise ValueError(f"arm {name!r}: the ratio must be positive")
    if kind == ARM_REAL:
        return Arm(name, synthetic=False)
    if kind == ARM_OVERSAMPLE:
        # finetune.train's class-balanced sampler (finetune/sampler.py): every class drawn equally
        # often, with replacement, epochs of the usual length. The cheap alternative to synthesis.
        # Without class weights: the sampler already evens the classes out (finetune.train refuses both).
        # oversample<R>: epochs as long as synth<R>'s (real + its generated images), so that the cheap
        # alternative gets as many optimizer steps as the synthetic arm it is compared with (issue 12).
        return Arm(name, synthetic=False, sampler="balanced", max_ratio=max_ratio, steps_only=max_ratio is not None)
    return Arm(name, synthetic=True, filtered=kind == ARM_FILTERED, max_ratio=max_ratio)


def arm_baselines(arm: str, present: Iterable[str]) -> list[str]:
    """The arms among ``present`` that the synthetic arm ``arm`` is compared with: ``real``, ``oversample`` and,
    for ``synth<R>``, ``oversample<R>`` (oversampling for as many steps: the fair comparison)."""
    parsed = parse_arm(arm)
    equal_steps = f"{ARM_OVERSAMPLE}{parsed.max_ratio:g}" \
        if parsed.synthetic and not parsed.filtered and parsed.max_ratio is not None else ""
    present = set(present)
    return [b for b in (*ARM_BASELINES, equal_steps) if b and b in present]


def arm_sort_key(name: str) -> tuple[int, float, str]:
    """Report order: real, oversample (plain, then by ratio), synth (by ratio), filtered (by ratio); unknown names
    last."""
    try:
        arm = parse_arm(name)
    except ValueError:
        return (9, 0.0, name)
    rank = 0 if name == ARM_REAL else 1 if arm.sampler else 3 if arm.filtered else 2
    return (rank, -1.0 if arm.max_ratio is None else arm.max_ratio, name)


def grid_arms(grid: GridConfig) -> list[str]:
    """The arms of the grid: ``grid.arms``, else the older ``grid.synthetic`` axis (false: ``real``,
    true: ``synth``), else ``[real, synth]``."""
    if grid.arms:
        return [str(a) for a in grid.arms]
    return [ARM_SYNTH if s else ARM_REAL for s in (grid.synthetic or [False, True])]


@dataclass
class GridConfig:
    """The cells of the grid: every combination of fractions, inits, arms and seeds.

    Keys:
        fractions: label fractions of the training split (nested subsets: 0.01, 0.05, 0.1, 0.25,
            0.5, 1.0).
        inits: classifier initialisations: ``random``, an SSL method (``simclr``, ``dino``, ...:
            the names in :data:`dermkit.ssl_methods.SSL_METHODS`; a backbone pretrained by
            ``ssl.pretrain`` on the training images, labels unused) and ``imagenet`` (the local
            file ``grid.imagenet_weights``).
        synthetic: ``false`` (real images only) and/or ``true`` (plus generated minority images):
            the arms ``real`` and ``synth`` of ``arms``; empty: both (unless ``arms`` is set). Give
            ``synthetic`` or ``arms``, not both.
        arms: the training data of each cell, a generalisation of ``synthetic``: ``real`` (real
            images only), ``oversample`` (real images only, ``finetune.train sampler=balanced
            loss.weighting=none``), ``oversample<R>`` (the same for as many optimizer steps as
            ``synth<R>``: ``synth.steps_only``, epochs as long as real + its generated images),
            ``synth`` (real + generated images, the ``synth.max_ratio`` of the overrides or the
            stage's default), ``synth<R>`` (``synth.max_ratio=R``, e.g. ``synth0.5``, ``synth8``),
            ``filtered`` / ``filtered<R>`` (the generated images a classifier keeps: the ``real``
            cell of the same fraction, init and seed scores them with ``finetune.filter_synthetic
            --min-prob synth.filter_min_prob``; needs ``real`` among the arms). Empty: the arms of
            ``synthetic``.
        seeds: fine-tuning seeds (at least 3 for an interval worth reading).
        imagenet_weights: local ImageNet weights file for the ``imagenet`` init (nothing is
            downloaded); required exactly when ``inits`` holds ``imagenet``.
        external: external test sets ``{name: folder}``: after each cell, ``finetune.predict --tta`` on
            every image below the folder (:mod:`bench.grid.external`); exported as
            ``cells/<cell>/external/<name>/predictions.csv``. Without labels the report calls the
            set blind and shows only predicted-class shares.
        external_labels: ``{name: file}`` for the external sets whose labels the user has (a CSV with
            ``image_id`` and ``label`` columns): scored with the test split's tables, comparisons and
            verdicts in ``external/<name>/report.md``.
    """

    fractions: list[float] = field(default_factory=lambda: [0.01, 0.1, 1.0])
    inits: list[str] = field(default_factory=lambda: ["random", "simclr", "dino"])
    synthetic: list[bool] = field(default_factory=list)
    arms: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    imagenet_weights: str = ""
    external: dict[str, str] = field(default_factory=dict)
    external_labels: dict[str, str] = field(default_factory=dict)


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
class BenchPretrainConfig:
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
class BenchSynthConfig:
    """``synth.train``, ``synth.generate`` and ``synth.evaluate`` (only when an arm uses synthetic
    images), and ``finetune.filter_synthetic`` for the ``filtered`` arms.

    Keys:
        classes: classes to generate (the minority classes by default).
        n_per_class: images generated per class (``--n``); with ``ratio``, the most per class.
        ratio: when above 0, each class gets ``floor(ratio x`` its generator's training images of the
            class``)`` images, at most ``n_per_class`` (``synth.generate --ratio``): set it to the
            largest ``synth<R>`` arm's R, so that no image is generated that no arm can use (with
            ``match_fraction``, a small label fraction then needs few images). 0: ``n_per_class``
            for every class.
        match_fraction: ``true``: one generator per label fraction, trained on that fraction's
            labeled images only, so a synthetic-on cell uses no label the synthetic-off cell lacks.
            ``false``: one generator trained on the whole training split; at fractions below 1 the
            synthetic-on cells then draw on labels the off cells do not have (the report says so).
        train_overrides: ``key=value`` overrides of ``synth.train`` (e.g. ``model.preset=small``).
        generate_args: extra arguments of ``synth.generate`` (e.g. ``[--steps, "25"]``).
        filter_min_prob: ``--min-prob`` of ``finetune.filter_synthetic`` for the ``filtered`` arms
            (keep an image when the classifier gives its class at least this probability).
        filter_args: extra arguments of ``finetune.filter_synthetic`` (e.g.
            ``[trainer.accelerator=gpu]``).
        evaluate_weights: backbone file (``backbone.safetensors`` with its card) whose feature space
            ``synth.evaluate`` judges each generation in (a ``synth-evaluate`` step per generator: KID,
            FD, own-class rank against held-out real images, precision, recall, copies, grids; the
            report's "Generator quality"). Empty: a random-init ``model.backbone``, which the report
            names; an SSL backbone of the same data separates the classes better.
        evaluate_args: extra arguments of ``synth.evaluate`` (e.g. ``[kid_subsets=100]``).
    """

    classes: list[str] = field(default_factory=lambda: list(MINORITY_CLASSES))
    n_per_class: int = 200
    ratio: float = 0.0
    match_fraction: bool = True
    train_overrides: list[str] = field(default_factory=list)
    generate_args: list[str] = field(default_factory=list)
    filter_min_prob: float = 0.5
    filter_args: list[str] = field(default_factory=list)
    evaluate_weights: str = ""
    evaluate_args: list[str] = field(default_factory=list)


@dataclass
class BenchFinetuneConfig:
    """``finetune.train``: one run per grid cell.

    Keys:
        overrides: ``key=value`` overrides for every cell (e.g. ``trainer.max_epochs=10``); the
            cell's own keys (``data.fraction``, ``model.init``, ``synth.manifest``, ``seed``,
            ``out_dir``) are set by the grid and must not appear here.
        fraction_overrides: extra overrides per label fraction, applied after ``overrides``, e.g.
            ``{"0.01": [trainer.max_epochs=40]}``: a 1% subset needs many more epochs than the full
            training split for a comparable number of optimiser steps.
        init_overrides: extra overrides per initialisation (a name of ``grid.inits``), applied after
            ``fraction_overrides``, e.g. ``{simclr: [optim.head_epochs=3, optim.backbone_lr_scale=0.3]}``:
            the schedule of a pretrained backbone, chosen on validation, without changing the key
            (and so the finished runs) of the other initialisations' cells. A key ``<init>@<fraction>``
            (e.g. ``simclr@0.01``) applies to that fraction's cells of the initialisation only, after
            the ``<init>`` key's overrides: a schedule chosen for one label fraction.
    """

    overrides: list[str] = field(default_factory=list)
    fraction_overrides: dict[str, list[str]] = field(default_factory=dict)
    init_overrides: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class RunConfig:
    """How the steps are executed.

    Keys:
        jobs: steps run at the same time (separate processes). On a CPU machine,
            ``jobs x threads`` should not exceed the cores.
        threads: torch CPU threads per step (``OMP_NUM_THREADS``); 0 leaves the default.
        alone_kinds: step kinds (``pretrain``, ``synth-train``, ``synth-generate``, ``synth-evaluate``,
            ``synth-filter``, ``cell``) that run alone, on ``jobs x threads`` threads: a long step that
            nothing else may run beside (a generator every cell waits for) gets all the cores, and the
            cells after it still run ``jobs`` at a time. A ready one waits for the running steps to end.
            Empty: none.
        keep_going: after a failed step, carry on with the steps that do not depend on it
            (default: stop launching new steps and report the failure).
        reuse: a folder written by ``report.export`` (e.g. a committed ``docs/results/<preset>``) or
            another grid's run folder: each cell finished there under the same key (settings, data,
            inputs) counts as done here without running; the others run. A cell whose checkpoint
            another step reads (a ``filtered`` arm's filter) is taken only from a run folder, with
            its checkpoint (an export has none). Empty: none.
    """

    jobs: int = 1
    threads: int = 0
    alone_kinds: list[str] = field(default_factory=list)
    keep_going: bool = False
    reuse: str = ""


@dataclass
class BenchReportConfig:
    """Statistics of the report.

    Keys:
        level: confidence level of every interval.
        n_bootstrap: replicates of the paired bootstrap.
        bootstrap_seed: seed of the resampling (the report is reproducible).
        export: a folder to copy the results into when the grid ends (also after a failed step or
            a stop): each finished cell's ``done.json``, ``metrics.json``, ``predictions.csv``,
            ``config.yaml`` and ``run.json`` under ``cells/<cell>/`` (no checkpoints; what
            ``run.reuse`` reads back) and, when this run wrote them, ``report.md``, ``results.csv``
            and ``figures/``. Empty: none.
        plan: a seed plan (``plan.json`` written by ``python -m bench.seed_plan`` before the seeds
            ran): the report marks the comparisons it registered as planned, the others as
            exploratory, and ends with a section on them. Empty: none.
    """

    level: float = 0.95
    n_bootstrap: int = 5000
    bootstrap_seed: int = 0
    export: str = ""
    plan: str = ""


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
        pretrain: :class:`BenchPretrainConfig`.
        synth: :class:`BenchSynthConfig`.
        finetune: :class:`BenchFinetuneConfig`.
        run: :class:`RunConfig`.
        report: :class:`BenchReportConfig`.
        out_dir: output folder (default ``$DERMKIT_RUNS/bench/<preset>``, ``runs/bench/<preset>`` in
            the repository when ``DERMKIT_RUNS`` is unset); re-running resumes in it.
    """

    preset: str = ""
    about: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    model: BenchModelConfig = field(default_factory=BenchModelConfig)
    grid: GridConfig = field(default_factory=GridConfig)
    pretrain: BenchPretrainConfig = field(default_factory=BenchPretrainConfig)
    synth: BenchSynthConfig = field(default_factory=BenchSynthConfig)
    finetune: BenchFinetuneConfig = field(default_factory=BenchFinetuneConfig)
    run: RunConfig = field(default_factory=RunConfig)
    report: BenchReportConfig = field(default_factory=BenchReportConfig)
    out_dir: str = ""
