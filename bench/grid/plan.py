"""The plan of a grid: every step (pretraining, generator, generation, evaluation, filter, cell, external
prediction) with its stage command, inputs and declared outputs, and which of them have finished.

:func:`build_steps` is deterministic in the config and the output folder: a finished grid keeps its
steps' keys (``tests/bench/test_preset_plans.py`` holds every preset's plan).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dermkit.config import REPO_ROOT, to_container
from dermkit.errors import DermkitError
from dermkit.vocab import canonical_class
from bench.grid.config import (ARM_REAL, SSL_METHODS, Arm, BenchConfig, BenchSynthConfig, grid_arms, init_weights,
                               parse_arm, parse_init, split_init_key)
from bench.grid.external import PREDICT_KIND, external_folders, predict_steps
from bench.grid.keys import Cell, Step, best_checkpoint_arg, file_digest, is_done, read_done
from bench.report.results import METRICS_FILE, PREDICTIONS_FILE, read_metrics, result_rows


# DataConfig keys passed to every stage (``fraction`` is per cell; empty strings keep the stage default).
# ``cache_dir`` travels as $DERMKIT_CACHE instead, so that it stays out of the step keys.
SHARED_DATA_KEYS = ("name", "root", "image_size", "split_seed", "val_fraction", "test_fraction",
                    "split_file", "skip_bad", "batch_size", "num_workers")
BACKBONE_OUTPUTS = ("backbone.safetensors", "backbone.json")
GENERATOR_OUTPUTS = ("dermkit_generator.json", "unet/diffusion_pytorch_model.safetensors")
MANIFEST_OUTPUTS = ("manifest.csv", "manifest.json")
FILTER_OUTPUTS = ("manifest.csv", "manifest.json", "scores.csv")
FILTER_KIND = "synth-filter"
EVALUATE_OUTPUTS = ("metrics.json", "near_copies.csv")
EVALUATE_KIND = "synth-evaluate"
STEP_KINDS = ("pretrain", "synth-train", "synth-generate", EVALUATE_KIND, FILTER_KIND, "cell", PREDICT_KIND)
CELL_OUTPUTS = (METRICS_FILE, PREDICTIONS_FILE)


def fraction_key(key: str, fractions: list[float]) -> float | None:
    """The grid fraction a ``finetune.fraction_overrides`` key names (``"0.01"``, ``"1"``), or None."""
    try:
        value = float(key)
    except ValueError:
        return None
    return next((f for f in fractions if abs(f - value) < 1e-9), None)


def init_overrides(cfg: BenchConfig, init: str, fraction: float) -> list[str]:
    """``finetune.init_overrides`` of one initialisation's cells at ``fraction``: the ``<init>`` key's, then
    the ``<init>@<fraction>`` key's (:func:`bench.grid.config.split_init_key`)."""
    general, specific = [], []
    for key, items in cfg.finetune.init_overrides.items():
        name, at = split_init_key(key)
        if name != init:
            continue
        if at is None:
            general += items
        elif fraction_key(at, [fraction]) is not None:
            specific += items
    return [*general, *specific]


def start_key(fractions: Sequence[float]) -> Callable[[Step], tuple[int, int, int]]:
    """The order in which the grid starts its ready steps (:class:`bench.grid.runner.Runner` ``start_key``):
    predict steps first, so that a finished cell gets its predictions before another cell starts; then the
    steps that are not cells (pretraining, generators: inputs of cells); then the cells of one label fraction
    seed by seed (every initialisation and arm of seed 0 before seed 1), the fractions in the order
    ``fractions`` (``grid.fractions``) lists them: ``grid.fractions=[0.1,0.01,1.0]`` runs the 10% cells first.
    A grid stopped part-way then leaves whole cells and paired seeds, not one arm's seeds without the other's."""
    rank = {float(f): i for i, f in enumerate(fractions)}

    def key(step: Step) -> tuple[int, int, int]:
        if step.kind == PREDICT_KIND:
            return (0, 0, 0)
        if step.cell is None:
            return (1, 0, 0)
        return (2, rank.get(step.cell.fraction, len(rank)), step.cell.seed)

    return key


def data_args(cfg: BenchConfig, augment: bool = True) -> list[str]:
    """``data.*=value`` overrides giving every stage the same dataset and split, and ``data.augment_on``
    to the stages that augment (``augment``; not synth.train, which does not read it)."""
    values = to_container(cfg.data)
    args = [f"data.{k}={values[k]}" for k in SHARED_DATA_KEYS if values[k] not in ("", None)]
    if augment:  # always given: bench.grid.keys.KEY_OMITTED keeps the keys of steps run when workers was the default
        args.append(f"data.augment_on={values['augment_on']}")
    return args


def build_steps(cfg: BenchConfig, out: Path) -> list[Step]:
    """Every step of the pipeline, inputs before the steps that read them."""
    given = {m: Path(p).expanduser().resolve() for m, p in cfg.pretrain.backbones.items()}
    backbones = pretrain_steps(cfg, out, given)
    synth, manifests = synth_steps(cfg, out)
    steps = [*backbones.values(), *synth]
    for fraction in cfg.grid.fractions:
        for init in cfg.grid.inits:
            source = init_source(cfg, parse_init(init).weights, given, backbones)
            steps += init_cells(cfg, out, float(fraction), init, source, manifests)
    if cfg.grid.external:
        accelerator = [a for a in cfg.finetune.overrides if a.startswith("trainer.accelerator=")]
        stage_args = [*accelerator, f"data.num_workers={cfg.data.num_workers}", f"data.skip_bad={cfg.data.skip_bad}"]
        steps += predict_steps([s for s in steps if s.kind == "cell"], external_folders(cfg.grid.external, repo_path),
                               out, stage_args)
    return steps


def model_args(cfg: BenchConfig) -> list[str]:
    """The architecture settings every pretraining and fine-tuning step shares."""
    return [f"model.backbone={cfg.model.backbone}", f"model.small_stem={cfg.model.small_stem}"]


def pretrain_steps(cfg: BenchConfig, out: Path, given: dict[str, Path]) -> dict[str, Step]:
    """One ``ssl.pretrain`` step per SSL init of the grid whose backbone is not given, by method."""
    backbones: dict[str, Step] = {}
    for method in (m for m in SSL_METHODS if m in init_weights(cfg.grid.inits) and m not in given):
        folder = out / "pretrain" / method
        backbones[method] = Step(
            f"pretrain/{method}", "pretrain", "ssl.pretrain",
            [f"method={method}", *data_args(cfg), *model_args(cfg), *cfg.pretrain.overrides,
             *cfg.pretrain.method_overrides.get(method, []), f"out_dir={folder}"],
            folder, BACKBONE_OUTPUTS)
    return backbones


def synth_steps(cfg: BenchConfig, out: Path) -> tuple[list[Step], dict[float, Step]]:
    """Generator training and generation per label fraction (one for all when not matched), if an arm
    is synthetic: (the steps in order, the generation step by fraction)."""
    steps: list[Step] = []
    manifests: dict[float, Step] = {}
    if not any(parse_arm(name).reads_manifest for name in grid_arms(cfg.grid)):
        return steps, manifests
    for fraction in (cfg.grid.fractions if cfg.synth.match_fraction else [1.0]):
        train_dir = out / "synth" / f"train-f{fraction:g}"
        train = Step(f"synth-train/f{fraction:g}", "synth-train", "synth.train",
                     [*data_args(cfg, augment=False), *cfg.synth.train_overrides, f"data.fraction={fraction}",
                      f"out_dir={train_dir}"],
                     train_dir, GENERATOR_OUTPUTS)
        gen_dir = out / "synth" / f"generate-f{fraction:g}"
        classes = [arg for klass in cfg.synth.classes for arg in ("--class", canonical_class(klass))]
        generate = Step(f"synth-generate/f{fraction:g}", "synth-generate", "synth.generate",
                        ["--model", str(train_dir), "--out", str(gen_dir), *classes, *generate_count_args(cfg.synth),
                         *cfg.synth.generate_args],
                        gen_dir, MANIFEST_OUTPUTS, inputs=[train])
        steps += [train, generate, evaluate_step(cfg, out, fraction, generate)]
        manifests[fraction] = generate
    return steps, manifests


def evaluate_step(cfg: BenchConfig, out: Path, fraction: float, generate: Step) -> Step:
    """``synth.evaluate`` of a generation step's images against the real training images (no cell reads
    it; the report's "Generator quality"). The feature space is ``synth.evaluate_weights``, keyed by
    its digest, else a random-init ``model.backbone``."""
    folder = out / "synth" / f"evaluate-f{fraction:g}"
    weights = Path(cfg.synth.evaluate_weights).expanduser().resolve() if cfg.synth.evaluate_weights else None
    space = ([f"weights={weights}"] if weights else
             [f"backbone={cfg.model.backbone}", f"small_stem={cfg.model.small_stem}"])
    return Step(f"synth-evaluate/f{fraction:g}", EVALUATE_KIND, "synth.evaluate",
                ["--synthetic", str(generate.out_dir), *data_args(cfg, augment=False), *space,
                 *cfg.synth.evaluate_args, "--out", str(folder)],
                folder, EVALUATE_OUTPUTS, inputs=[generate],
                key_extra={"evaluate_weights_sha256": file_digest(weights)} if weights else {},
                key_paths={str(weights): "<evaluate weights>"} if weights else {})


def generate_count_args(synth: BenchSynthConfig) -> list[str]:
    """``synth.generate``'s count arguments: ``--n``, and ``--ratio`` when ``synth.ratio`` is set."""
    return [*(["--ratio", f"{synth.ratio:g}"] if synth.ratio > 0 else []), "--n", str(synth.n_per_class)]


def generated_count_text(synth: BenchSynthConfig) -> str:
    """How many images each class gets, in words (the report's settings)."""
    if synth.ratio > 0:
        return (f"{synth.ratio:g} per training image of the class its generator saw (at most {synth.n_per_class}) "
                "per class")
    return f"{synth.n_per_class} images per class"


@dataclass(frozen=True)
class InitSource:
    """Where an initialisation's weights come from (:func:`init_source`).

    Attributes:
        args: the ``model.init=...`` argument of its cells (none: random).
        inputs: the step that writes the weights (a pretraining step), if any.
        key_extra: extra key entries (a given or ImageNet file's digest).
        key_paths: paths the key hashes by name (``{path: name}``), see :class:`bench.grid.keys.Step`.
    """

    args: list[str] = field(default_factory=list)
    inputs: list[Step] = field(default_factory=list)
    key_extra: dict[str, str] = field(default_factory=dict)
    key_paths: dict[str, str] = field(default_factory=dict)


def init_source(cfg: BenchConfig, init: str, given: dict[str, Path], backbones: dict[str, Step]) -> InitSource:
    """Where an initialisation's weights come from. A given or ImageNet file enters the key by its digest,
    not its path, so a replaced file re-runs its cells and the same file elsewhere does not."""
    if init in given:
        return InitSource([f"model.init={given[init]}"], key_extra={"backbone_sha256": file_digest(given[init])},
                          key_paths={str(given[init]): f"<given {init} backbone>"})
    if init in backbones:
        return InitSource([f"model.init={backbones[init].out_dir / 'backbone.safetensors'}"], [backbones[init]])
    if init == "imagenet":
        weights = Path(cfg.grid.imagenet_weights).expanduser().resolve()
        return InitSource([f"model.init={weights}"], key_extra={"imagenet_weights_sha256": file_digest(weights)},
                          key_paths={str(weights): "<imagenet weights>"})
    return InitSource()


def init_cells(cfg: BenchConfig, out: Path, fraction: float, init: str, source: InitSource,
               manifests: dict[float, Step]) -> list[Step]:
    """The cells of one label fraction and initialisation (every arm and seed), with the filter steps
    that the filtered arms read. An ``<init>-linear`` initialisation's cells start from ``source`` (the
    weights of ``<init>``) and train the head only."""
    init_args = source.args
    if parse_init(init).frozen:  # only these cells get the key: the other inits' cells keep their keys
        init_args = [*init_args, "optim.freeze_backbone=true"]
    arms = {name: parse_arm(name) for name in grid_arms(cfg.grid)}
    per_fraction = [item for key, items in cfg.finetune.fraction_overrides.items()
                    if fraction_key(key, [fraction]) is not None for item in items]
    per_init = init_overrides(cfg, init, fraction)
    steps: list[Step] = []
    real_cells: dict[int, Step] = {}
    filters: dict[int, Step] = {}
    # The filtered arms read the real cell's classifier, so the real arm is built first (a stable sort:
    # the older grid.synthetic [false, true] keeps its order, and with it the order of results.csv).
    for name in sorted(arms, key=lambda name: name != ARM_REAL):
        arm = arms[name]
        for seed in cfg.grid.seeds:
            cell = Cell(fraction, init, arm.synthetic, int(seed), name)
            folder = out / "cells" / cell.cell_id
            args = [*data_args(cfg), *model_args(cfg), *cfg.finetune.overrides, *per_fraction, *per_init,
                    f"data.fraction={fraction}", f"seed={seed}", *init_args]
            inputs = list(source.inputs)
            if arm.sampler:  # the sampler replaces the loss's class weights, which the overrides may set
                args += [f"sampler={arm.sampler}", "loss.weighting=none"]
            if arm.reads_manifest:
                images = manifests[fraction if cfg.synth.match_fraction else 1.0]
                if arm.filtered:
                    # validate() requires the real arm, built first; one filter per real cell, shared by
                    # every filtered<R> arm.
                    if seed not in filters:
                        filters[seed] = filter_step(cfg, out, real_cells[seed], images)
                        steps.append(filters[seed])
                    images = filters[seed]
                args += synthetic_args(cfg, arm, fraction, images)
                if arm.steps_only:  # oversample<R>: synth<R>'s images counted for as many steps, not trained on
                    args.append("synth.steps_only=true")
                inputs.append(images)
            args.append(f"out_dir={folder}")
            step = Step(f"cell/{cell.cell_id}", "cell", "finetune.train", args, folder, CELL_OUTPUTS, inputs, cell,
                        dict(source.key_extra), dict(source.key_paths))
            steps.append(step)
            if name == ARM_REAL:
                real_cells[seed] = step
    return steps


def synthetic_args(cfg: BenchConfig, arm: Arm, fraction: float, images: Step) -> list[str]:
    """The ``synth.*`` arguments of a synthetic arm's cell that trains on ``images``' manifest."""
    args = [f"synth.manifest={images.out_dir / 'manifest.csv'}"]
    if arm.max_ratio is not None:
        args.append(f"synth.max_ratio={arm.max_ratio:g}")
    if not cfg.synth.match_fraction and fraction < 1.0:
        # The one generator saw every training label; finetune refuses that unless told (the report
        # states the caveat).
        args.append("synth.allow_extra_labels=true")
    return args


def filter_step(cfg: BenchConfig, out: Path, real_cell: Step, generate: Step) -> Step:
    """``finetune.filter_synthetic`` of a generation step's manifest with a ``real`` cell's classifier.

    The classifier is the real-only cell of the same label fraction, init and seed (its best
    checkpoint, resolved when the step starts): it saw no label the generator lacks (the generator
    of that fraction, or of the whole split without ``synth.match_fraction``), and never the
    validation or test images, which finetune.filter_synthetic checks again through the split hash.
    """
    cell = real_cell.cell
    assert cell is not None
    folder = out / "synth" / f"filter-f{cell.fraction:g}-{cell.init}-s{cell.seed}"
    args = ["--checkpoint", best_checkpoint_arg(real_cell), "--manifest", str(generate.out_dir / "manifest.csv"),
            "--min-prob", f"{cfg.synth.filter_min_prob:g}", *cfg.synth.filter_args, "--out", str(folder)]
    return Step(f"synth-filter/f{cell.fraction:g}-{cell.init}-s{cell.seed}", FILTER_KIND,
                "finetune.filter_synthetic", args, folder, FILTER_OUTPUTS, inputs=[real_cell, generate])


def filter_acceptance(folder: Path) -> dict[str, dict[str, Any]]:
    """The acceptance per class a ``finetune.filter_synthetic`` folder records in its ``manifest.json``
    (``filter.acceptance``); empty when it cannot be read."""
    try:
        header = json.loads((folder / "manifest.json").read_text())
        acceptance = header["filter"]["acceptance"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return acceptance if isinstance(acceptance, dict) else {}


def generator_evaluation(folder: Path) -> dict[str, Any]:
    """The report a ``synth.evaluate`` folder holds (``metrics.json`` with its ``classes``); empty when it
    cannot be read."""
    try:
        report = json.loads((folder / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}
    return report if isinstance(report, dict) and isinstance(report.get("classes"), dict) else {}


def describe_cell(step: Step) -> str | None:
    """The live table's note for a finished cell: its test balanced accuracy."""
    if step.cell is None:
        return None
    try:
        return f"balanced accuracy {read_metrics(step.out_dir)['balanced_accuracy']:.3f}"
    except (DermkitError, TypeError, ValueError):
        return None


def collect_results(steps: list[Step]) -> list[dict[str, Any]]:
    """Tidy rows of every finished cell, in grid order."""
    rows = []
    for step in steps:
        if step.cell is not None and read_done(step) is not None:
            rows += result_rows(step.cell, read_metrics(step.out_dir))
    return rows


def finished_steps(steps: list[Step], out: Path, fingerprint: dict[str, Any]) -> list[Step]:
    """The steps finished under their key as it is now, inputs included, in grid order: a step finished
    under other settings or from other inputs (another backbone, an older generation) is not one of
    this grid's results, though its folder stays until the step runs again."""
    known: dict[str, bool] = {}  # step name -> finished under its current key; inputs are shared by many cells

    def finished(step: Step) -> bool:
        if step.name not in known:
            try:
                key = step.key(out, fingerprint)
            except RuntimeError:  # an input has not finished
                known[step.name] = False
            else:
                known[step.name] = is_done(step, key) and all(finished(s) for s in step.inputs)
        return known[step.name]

    return [s for s in steps if finished(s)]


def finished_cells(steps: list[Step], out: Path, fingerprint: dict[str, Any]) -> list[Step]:
    """The cells among :func:`finished_steps`."""
    return [s for s in finished_steps(steps, out, fingerprint) if s.cell is not None]


def repo_path(path: str | Path) -> Path:
    """``path`` with ``~`` expanded, relative to the repository root unless absolute, resolved."""
    path = Path(path).expanduser()
    return (path if path.is_absolute() else REPO_ROOT / path).resolve()
