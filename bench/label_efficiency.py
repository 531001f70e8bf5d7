"""The label-efficiency and synthetic-benefit grid: ``python -m bench.label_efficiency --preset demo``.

Does self-supervised pretraining help when labels are few, and do synthetic images help the
minority classes? The pipeline runs every stage through its command line, exchanging files only:

1. ``ssl.pretrain`` once per SSL method in ``grid.inits``      -> ``pretrain/<method>/backbone.safetensors``
2. ``synth.train`` on the training split (per label fraction    -> ``synth/train-f<f>/``
   with ``synth.match_fraction``), then ``synth.generate`` of the
   minority classes                                              -> ``synth/generate-f<f>/manifest.csv``,
   and ``synth.evaluate`` of those images (read by the report    -> ``synth/evaluate-f<f>/metrics.json``
   only: "Generator quality")
3. ``finetune.train`` per cell: label fraction x initialisation  -> ``cells/<cell>/metrics.json``,
   x arm x seed (arms: ``real``, ``oversample``,                  ``predictions.csv``
   ``oversample<R>``, ``synth<R>``, ``filtered``; the older
   ``grid.synthetic`` off/on is ``real``/``synth``)
4. for a ``filtered`` arm, ``finetune.filter_synthetic`` with    -> ``synth/filter-<f>-<init>-s<seed>/manifest.csv``
   the ``real`` cell's best checkpoint of the same fraction,
   init and seed, before that arm's cell

then ``results.csv`` (one row per cell and class) and ``report.md`` with figures. Every step is
keyed by a hash of its settings and inputs (:mod:`bench.grid.keys`): re-running the command skips
finished steps, so an interrupted grid resumes, and a changed setting re-runs what it affects.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from dermkit.backbones.card import read_card
from dermkit.config import CONFIG_DIR, REPO_ROOT, Flag, build_parser, load_config, to_container, to_yaml
from dermkit.console import console, entry_point, print_table
from dermkit.data.prepare import PreparedData, prepare_data
from dermkit.data.splits import FRACTIONS
from dermkit.errors import DermkitError, did_you_mean
from dermkit.flags import out_flag
from dermkit.out_folder import EXPORT_KIND, check_out_folder
from dermkit.progress_file import read_progress
from dermkit.resume import claim_run_folder, runs_dir
from dermkit.runinfo import write_run_info
from dermkit.vocab import canonical_class
from bench.grid.config import (ARM_REAL, ARM_SPELLINGS, INIT_SPELLINGS, INITS, LEGACY_ARMS, LINEAR_SUFFIX, SSL_METHODS, Arm,
                          BenchConfig, GridConfig, BenchSynthConfig, arm_sort_key, grid_arms, init_weights, parse_arm,
                          parse_init)
from bench.grid.dry_run import dry_run
from bench.grid.external import (PREDICT_KIND, PREDICT_RECORDS, export_external_reports, export_predictions,
                            exported_copy, external_folders, predict_steps, read_labels, write_external_sections)
from bench.grid.keys import (DONE_FILE, Cell, Step, adopt_finished, best_checkpoint, best_checkpoint_arg, copy_finished,
                        file_digest, is_done, read_done)
from bench.report.comparison_plan import read_plan
from bench.report.tables import ReportContext, arm_label, cell_table, seed_summary, write_report
from bench.report.results import (METRICS_FILE, PREDICTIONS_FILE, read_metrics, read_predictions, read_results, result_rows,
                           write_results)
from bench.grid.runner import Runner, log_tail, progress_text

PROG = "python -m bench.label_efficiency"
KIND = "bench.label_efficiency"  # run.json's kind (dermkit.out_folder)
DESCRIPTION = ("Label-efficiency grid: pretrain (ssl), train a generator and make minority images (synth), "
               "fine-tune every cell (finetune), then write results.csv and report.md. Re-running resumes.")
FLAGS = [
    out_flag("output folder (default $DERMKIT_RUNS/bench/<preset>, runs/ when unset); re-running resumes in it",
             command=KIND),
    Flag("--jobs", "run.jobs", "steps run at the same time", int),
    Flag("--threads", "run.threads", "torch CPU threads per step (0: default)", int),
    Flag("--keep-going", "run.keep_going", "carry on with independent steps after a failure", bool),
    Flag("--reuse", "run.reuse", "a folder written by --export (e.g. docs/results/<preset>) or another grid's run "
         "folder: its cells finished under the same settings count as done instead of running again (a new "
         "machine, a lost run folder, another preset sharing cells)"),
    Flag("--export", "report.export", "when the grid ends (also after a failure or a stop), copy each finished "
         "cell's metrics, predictions, done.json, config.yaml and run.json (no checkpoints) and, if written, "
         "report.md, results.csv and figures/ into this folder"),
]
# DataConfig keys passed to every stage (``fraction`` is per cell; empty strings keep the stage default).
# ``cache_dir`` travels as $DERMKIT_CACHE instead, so that it stays out of the step keys.
SHARED_DATA_KEYS = ("name", "root", "image_size", "split_seed", "val_fraction", "test_fraction",
                    "split_file", "skip_bad", "batch_size", "num_workers")
CELL_KEYS = ("data.fraction", "model.init", "model.backbone", "model.small_stem", "synth.manifest", "seed", "out_dir",
             "optim.freeze_backbone")  # the last: set by the <init>-linear inits
BACKBONE_OUTPUTS = ("backbone.safetensors", "backbone.json")
GENERATOR_OUTPUTS = ("dermkit_generator.json", "unet/diffusion_pytorch_model.safetensors")
MANIFEST_OUTPUTS = ("manifest.csv", "manifest.json")
FILTER_OUTPUTS = ("manifest.csv", "manifest.json", "scores.csv")
FILTER_KIND = "synth-filter"
EVALUATE_OUTPUTS = ("metrics.json", "near_copies.csv")
EVALUATE_KIND = "synth-evaluate"
STEP_KINDS = ("pretrain", "synth-train", "synth-generate", EVALUATE_KIND, FILTER_KIND, "cell", PREDICT_KIND)
# finetune.train keys an arm sets itself: in the overrides they would make the arms alike.
ARM_KEYS = ("sampler", "synth.max_ratio")
CELL_OUTPUTS = (METRICS_FILE, PREDICTIONS_FILE)
DRY_RUN = "--dry-run"
REPORT_ONLY = "--report-only"


def preset_path(name: str) -> Path:
    """``configs/bench_<name>.yaml`` (``-`` in the name read as ``_``).

    Raises:
        DermkitError: no such preset; the message lists the presets that exist.
    """
    path = CONFIG_DIR / f"bench_{name.replace('-', '_')}.yaml"
    if not path.is_file():
        known = preset_names()
        raise DermkitError(f"Unknown preset {name!r} (no {path.relative_to(REPO_ROOT)}).{did_you_mean(name, known)} "
                           f"Presets: {', '.join(known)}.")
    return path


def preset_names() -> list[str]:
    """The presets, ``configs/bench_<name>.yaml`` with ``_`` in the name read as ``-`` (sorted)."""
    return sorted(p.stem.removeprefix("bench_").replace("_", "-") for p in CONFIG_DIR.glob("bench_*.yaml"))


def parse_args(argv: list[str] | None) -> BenchConfig:
    """Resolve the config from ``--preset`` (or ``--config``), flags and ``key=value`` overrides."""
    parser = build_parser(PROG, DESCRIPTION, FLAGS)
    parser.add_argument("--preset", metavar="NAME",
                        help=f"preset configs/bench_<NAME>.yaml: {', '.join(preset_names())}")
    parser.add_argument("--help-config", action="store_true", help="print every config key with its default and exit")
    parser.add_argument(DRY_RUN, action="store_true", help="check every step's config with its stage's schema and "
                        "print each step's command with its estimated time, disk and memory; run and write nothing")
    parser.add_argument(REPORT_ONLY, action="store_true", help="run nothing: write results.csv and report.md (and "
                        "--export them) from the cells finished so far under these settings, naming those still to "
                        "run; for a look at a long grid while it runs or between sessions")
    args = parser.parse_args(argv)
    if args.help_config:
        print(to_yaml(BenchConfig()))
        raise SystemExit(0)
    if args.preset and args.config:
        raise DermkitError("Give --preset or --config, not both.")
    if args.preset:
        args.config = str(preset_path(args.preset))
    cfg = load_config(BenchConfig, args, FLAGS)
    if args.preset and not cfg.preset:
        cfg.preset = args.preset
    return cfg


def validate(cfg: BenchConfig) -> None:
    """Reject settings the grid cannot run, naming the key.

    Raises:
        DermkitError: an unknown init or fraction, a missing ImageNet file, an empty axis, a stage
            override that the grid sets itself, or a bad run setting.
    """
    _check_plan(cfg)
    arms = _check_axes(cfg.grid)
    _check_arms(cfg, arms)
    _check_pretrain(cfg)
    _check_overrides(cfg, arms)
    if cfg.run.reuse and not repo_path(cfg.run.reuse).is_dir():
        what = "is a file, not a folder" if repo_path(cfg.run.reuse).exists() else "does not exist"
        raise DermkitError(f"--reuse (run.reuse) {repo_path(cfg.run.reuse)} {what}; give a folder written by --export "
                           "(report.export), e.g. docs/results/<preset>, or another grid's run folder.")
    if cfg.run.reuse and not (repo_path(cfg.run.reuse) / "cells").is_dir():
        raise DermkitError(f"--reuse (run.reuse) {repo_path(cfg.run.reuse)} has no cells/ folder; give a folder "
                           "written by --export (report.export), e.g. docs/results/<preset>, or another grid's run "
                           "folder.")
    if cfg.run.jobs < 1 or cfg.run.threads < 0:
        raise DermkitError(f"run.jobs must be >= 1 and run.threads >= 0, got {cfg.run.jobs} and {cfg.run.threads}.")
    unknown = [k for k in cfg.run.alone_kinds if k not in STEP_KINDS]
    if unknown:
        raise DermkitError(f"run.alone_kinds has unknown step kind(s) {unknown}; the kinds are "
                           f"{', '.join(STEP_KINDS)}.")
    if not 0 < cfg.report.level < 1 or cfg.report.n_bootstrap < 100:
        raise DermkitError("report.level must lie in (0, 1) and report.n_bootstrap be at least 100.")
    _check_external(cfg)


def _check_external(cfg: BenchConfig) -> None:
    """``grid.external`` folders exist; ``grid.external_labels`` names only those sets, with readable files."""
    for name, folder in external_folders(cfg.grid.external, repo_path).items():
        if not folder.is_dir():
            raise DermkitError(f"grid.external.{name}: {folder} is not a folder. Give a folder of images.")
    for name, labels in cfg.grid.external_labels.items():
        if name not in cfg.grid.external:
            raise DermkitError(f"grid.external_labels.{name}: no grid.external.{name} to score. External sets: "
                               f"{', '.join(cfg.grid.external) or '(none)'}.")
        read_labels(repo_path(labels))


def _check_axes(grid: GridConfig) -> list[str]:
    """The grid's axes: non-empty, no repeats, known fractions and inits, the ImageNet file; returns the arms."""
    if grid.arms and grid.synthetic:
        raise DermkitError(f"Give grid.arms or grid.synthetic, not both (synthetic false/true are the arms "
                           f"real/synth): grid.arms={list(grid.arms)}, grid.synthetic={list(grid.synthetic)}.")
    arms = grid_arms(grid)
    for key, values in (("grid.fractions", grid.fractions), ("grid.inits", grid.inits),
                        ("grid.arms" if grid.arms else "grid.synthetic", arms), ("grid.seeds", grid.seeds)):
        if not values:
            raise DermkitError(f"{key} is empty; the grid needs at least one value.")
        if len(set(values)) != len(values):
            raise DermkitError(f"{key} repeats a value: {list(values)}.")
    for fraction in grid.fractions:
        if not any(abs(fraction - f) < 1e-9 for f in FRACTIONS):
            raise DermkitError(f"grid.fractions holds {fraction}, not a nested label fraction "
                               f"({', '.join(f'{f:g}' for f in FRACTIONS)}).")
    for init in grid.inits:
        try:
            parse_init(init)
        except ValueError:
            raise DermkitError(f"grid.inits holds unknown init {init!r}.{did_you_mean(init, init_names())} "
                               f"Choose from {INIT_SPELLINGS}.") from None
    weights = init_weights(grid.inits)
    if "imagenet" in weights and not grid.imagenet_weights:
        raise DermkitError("grid.inits holds imagenet but grid.imagenet_weights is empty: set it to a local "
                           "weights file (nothing is downloaded) or drop imagenet.")
    if grid.imagenet_weights:
        if "imagenet" not in weights:
            raise DermkitError("grid.imagenet_weights is set but grid.inits lacks imagenet; add it or clear the file.")
        if not Path(grid.imagenet_weights).expanduser().is_file():
            raise DermkitError(f"grid.imagenet_weights: {grid.imagenet_weights} does not exist.")
    return arms


def _check_arms(cfg: BenchConfig, arms: list[str]) -> None:
    """Arm names, the real arm a filtered arm needs, and the synth section's numbers and classes."""
    for arm in arms:
        try:
            parse_arm(arm)
        except ValueError as err:
            raise DermkitError(f"grid.arms: {err}.{did_you_mean(str(arm), ['real', 'oversample', 'synth', 'filtered'])}"
                               ) from None
    if any(parse_arm(a).filtered for a in arms) and ARM_REAL not in arms:
        raise DermkitError("grid.arms holds a filtered arm but not real: its images are filtered by the real cell's "
                           "classifier of the same fraction, init and seed. Add real to grid.arms.")
    for arm in arms:
        steps_of = parse_arm(arm).steps_of
        if steps_of is not None and steps_of not in arms:
            raise DermkitError(f"grid.arms holds {arm} but not {steps_of}: {arm} is oversampling for as many steps as "
                               f"{steps_of}, the arm it is compared with. Add {steps_of} to grid.arms.")
    if not 0.0 <= cfg.synth.filter_min_prob <= 1.0:
        raise DermkitError(f"synth.filter_min_prob must lie in [0, 1], got {cfg.synth.filter_min_prob}.")
    for klass in cfg.synth.classes:
        canonical_class(klass)
    if cfg.synth.n_per_class < 1:
        raise DermkitError(f"synth.n_per_class must be at least 1, got {cfg.synth.n_per_class}.")
    if cfg.synth.ratio < 0:
        raise DermkitError(f"synth.ratio must be >= 0 (0: synth.n_per_class images per class), got {cfg.synth.ratio}.")


def _check_pretrain(cfg: BenchConfig) -> None:
    """Method names of pretrain.method_overrides and pretrain.backbones, and the backbone files."""
    grid = cfg.grid
    for method in cfg.pretrain.method_overrides:
        if method not in SSL_METHODS:
            raise DermkitError(f"pretrain.method_overrides has unknown method {method!r}; "
                               f"use {', '.join(SSL_METHODS)}.")
    for method, path in cfg.pretrain.backbones.items():
        if method not in SSL_METHODS:
            raise DermkitError(f"pretrain.backbones has unknown method {method!r}; use {', '.join(SSL_METHODS)}.")
        if method not in init_weights(grid.inits):
            raise DermkitError(f"pretrain.backbones gives a {method} backbone but grid.inits lacks {method} "
                               f"(and {method}{LINEAR_SUFFIX}).")
        _check_backbone_file(f"pretrain.backbones.{method}", path, "or drop the key to pretrain in the grid")
    if cfg.synth.evaluate_weights:
        _check_backbone_file("synth.evaluate_weights", cfg.synth.evaluate_weights,
                             "or leave it empty for a random-init feature space")


def _check_backbone_file(key: str, path: str, otherwise: str) -> None:
    """A backbone file and its card exist.

    Raises:
        DermkitError: either is missing, naming ``key``.
    """
    weights = Path(path).expanduser()
    if not weights.is_file() or not weights.with_suffix(".json").is_file():
        raise DermkitError(f"{key}: {weights} (or its card {weights.with_suffix('.json').name}) does not exist; give "
                           f"a backbone.safetensors written by ssl.pretrain, {otherwise}.")


def _check_overrides(cfg: BenchConfig, arms: list[str]) -> None:
    """Stage overrides: key=value form, fraction and init keys that name one, no key the grid sets per cell or arm."""
    # A key for a fraction or initialisation the grid does not run is allowed (it applies to no cell), so
    # that a preset can be run in part ("grid.inits=[random]"); a key that names none is a typo.
    for key in cfg.finetune.fraction_overrides:
        if fraction_key(key, list(FRACTIONS)) is None:
            raise DermkitError(f"finetune.fraction_overrides has key {key!r}, which is not a label fraction "
                               f"({', '.join(f'{f:g}' for f in FRACTIONS)}).")
    for init in cfg.finetune.init_overrides:
        try:
            parse_init(init)
        except ValueError:
            raise DermkitError(f"finetune.init_overrides has key {init!r}, which is not an initialisation "
                               f"({INIT_SPELLINGS}).{did_you_mean(init, init_names())}") from None
    per_fraction = [item for items in cfg.finetune.fraction_overrides.values() for item in items]
    per_init = [item for items in cfg.finetune.init_overrides.values() for item in items]
    per_method = [item for items in cfg.pretrain.method_overrides.values() for item in items]
    for item in (*cfg.finetune.overrides, *per_fraction, *per_init, *cfg.pretrain.overrides, *per_method,
                 *cfg.synth.train_overrides):
        if "=" not in item:
            raise DermkitError(f"Stage override {item!r} is not of the form key=value.")
    for item in (*cfg.finetune.overrides, *per_fraction, *per_init):
        if item.split("=", 1)[0] in CELL_KEYS:
            raise DermkitError(f"finetune.overrides sets {item.split('=', 1)[0]!r}, which the grid sets per cell "
                               "(use grid.* and model.* instead).")
        if item.split("=", 1)[0] in ARM_KEYS and not set(arms) <= set(LEGACY_ARMS):
            raise DermkitError(f"finetune.overrides sets {item.split('=', 1)[0]!r}, which grid.arms sets per arm "
                               f"(arms: {ARM_SPELLINGS}).")


def init_names() -> list[str]:
    """Every spelling of ``grid.inits`` (for "did you mean" hints): :data:`INITS` and their ``-linear`` forms."""
    return [*INITS, *(f"{init}{LINEAR_SUFFIX}" for init in INITS)]


def fraction_key(key: str, fractions: list[float]) -> float | None:
    """The grid fraction a ``finetune.fraction_overrides`` key names (``"0.01"``, ``"1"``), or None."""
    try:
        value = float(key)
    except ValueError:
        return None
    return next((f for f in fractions if abs(f - value) < 1e-9), None)


def data_args(cfg: BenchConfig, augment: bool = True) -> list[str]:
    """``data.*=value`` overrides giving every stage the same dataset and split, and ``data.augment_on``
    to the stages that augment (``augment``; not synth.train, which does not read it)."""
    values = to_container(cfg.data)
    args = [f"data.{k}={values[k]}" for k in SHARED_DATA_KEYS if values[k] not in ("", None)]
    if augment:  # always given: grid.KEY_OMITTED keeps the keys of steps run when workers was the default
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


InitSource = tuple[list[str], list[Step], dict[str, str], dict[str, str]]


def init_source(cfg: BenchConfig, init: str, given: dict[str, Path], backbones: dict[str, Step]) -> InitSource:
    """Where an initialisation's weights come from: (``model.init`` argument, the step that writes
    them, extra key entries, key paths). A given or ImageNet file enters the key by its digest, not
    its path, so a replaced file re-runs its cells and the same file elsewhere does not."""
    if init in given:
        return [f"model.init={given[init]}"], [], {"backbone_sha256": file_digest(given[init])}, \
            {str(given[init]): f"<given {init} backbone>"}
    if init in backbones:
        return [f"model.init={backbones[init].out_dir / 'backbone.safetensors'}"], [backbones[init]], {}, {}
    if init == "imagenet":
        weights = Path(cfg.grid.imagenet_weights).expanduser().resolve()
        return [f"model.init={weights}"], [], {"imagenet_weights_sha256": file_digest(weights)}, \
            {str(weights): "<imagenet weights>"}
    return [], [], {}, {}


def init_cells(cfg: BenchConfig, out: Path, fraction: float, init: str, source: InitSource,
               manifests: dict[float, Step]) -> list[Step]:
    """The cells of one label fraction and initialisation (every arm and seed), with the filter steps
    that the filtered arms read. An ``<init>-linear`` initialisation's cells start from ``source`` (the
    weights of ``<init>``) and train the head only."""
    init_args, init_inputs, extra_key, key_paths = source
    if parse_init(init).frozen:  # only these cells get the key: the other inits' cells keep their keys
        init_args = [*init_args, "optim.freeze_backbone=true"]
    arms = {name: parse_arm(name) for name in grid_arms(cfg.grid)}
    per_fraction = [item for key, items in cfg.finetune.fraction_overrides.items()
                    if fraction_key(key, [fraction]) is not None for item in items]
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
            args = [*data_args(cfg), *model_args(cfg), *cfg.finetune.overrides, *per_fraction,
                    *cfg.finetune.init_overrides.get(init, []), f"data.fraction={fraction}", f"seed={seed}",
                    *init_args]
            inputs = list(init_inputs)
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
                        extra_key, key_paths)
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


def given_backbone_origin(path: str | Path) -> str:
    """How a given backbone was trained, from its card: the report names it, since a path outlives
    neither the machine nor the reader's access to it."""
    try:
        card = read_card(Path(path).expanduser())
    except DermkitError as err:
        return f"its card could not be read: {err}"
    data = card.data
    steps = f", {data['steps']} steps" if data.get("steps") else ""
    images = f" on {data['train_images']} {data.get('name', '')} training images".replace("  ", " ") \
        if data.get("train_images") else ""
    return (f"its card: {card.method}, {card.epochs} epochs{steps}{images}, {card.architecture} at "
            f"{card.input_size} px, split hash `{card.split_hash or 'not recorded'}`")


def pretraining_settings(cfg: BenchConfig) -> str:
    """The report's pretraining line: the overrides of each method pretrained here, and the card of each given
    backbone (a given method's overrides are left out: they did not make its backbone)."""
    given = cfg.pretrain.backbones
    return (f"Pretraining overrides: `{' '.join(cfg.pretrain.overrides) or '(stage defaults)'}`"
            + "".join(f"; {m}: `{' '.join(o)}`" for m, o in cfg.pretrain.method_overrides.items() if m not in given)
            + "".join(f"; {m}: not pretrained here, the given backbone `{p}` ({given_backbone_origin(p)})"
                      for m, p in given.items()))


def _check_plan(cfg: BenchConfig) -> None:
    """``report.plan``, when given, is a seed plan made at the report's level: a missing or malformed plan stops the
    grid before it starts, not after it ran.

    Raises:
        DermkitError: naming the key.
    """
    if not cfg.report.plan:
        return
    plan = read_plan(repo_path(cfg.report.plan))
    if plan.level != cfg.report.level:
        raise DermkitError(f"report.plan: {cfg.report.plan} was made at level {plan.level:g}, the report uses "
                           f"report.level={cfg.report.level:g}; make the plan at the report's level.")


def report_context(cfg: BenchConfig, command: str, data: dict[str, Any], test_counts: dict[str, int],
                   steps: list[Step], wall_seconds: float) -> ReportContext:
    """What the report says about this run (settings, caveats, timings)."""
    settings = [f"Backbone: `{cfg.model.backbone}` (small stem: {cfg.model.small_stem}), the same for every "
                "initialisation",
                pretraining_settings(cfg),
                f"Fine-tuning overrides: `{' '.join(cfg.finetune.overrides) or '(stage defaults)'}`"
                + "".join(f"; fraction {k}: `{' '.join(o)}`" for k, o in cfg.finetune.fraction_overrides.items())
                + "".join(f"; {k} cells: `{' '.join(o)}`" for k, o in cfg.finetune.init_overrides.items())]
    caveats = []
    arms = grid_arms(cfg.grid)
    if not set(arms) <= set(LEGACY_ARMS):
        settings.append("Arms: " + ", ".join(f"`{a}`" for a in sorted(arms, key=arm_sort_key))
                        + " (oversample: `sampler=balanced loss.weighting=none`; oversample<R>: the same, with "
                        "`synth.steps_only=true` and synth<R>'s manifest and ratio: epochs as long as synth<R>'s; "
                        "synth<R>: `synth.max_ratio=R`; "
                        f"filtered: the images the real cell's classifier gives p >= {cfg.synth.filter_min_prob:g}, "
                        "`finetune.filter_synthetic`)")
    if any(parse_arm(a).reads_manifest for a in arms):
        settings.append(f"Generator: `synth.train {' '.join(cfg.synth.train_overrides)}`, "
                        f"{generated_count_text(cfg.synth)} of {', '.join(cfg.synth.classes)} "
                        f"(`synth.generate {' '.join(cfg.synth.generate_args)}`), "
                        + ("one generator per label fraction, trained on that fraction's labeled images only"
                           if cfg.synth.match_fraction else "one generator trained on the whole training split"))
        if not cfg.synth.match_fraction and any(f < 1 for f in cfg.grid.fractions):
            caveats.append("One generator was trained on the labels of the whole training split "
                           "(synth.match_fraction=false). At label fractions below 1 the synthetic-on cells therefore "
                           "draw on labeled images the synthetic-off cells never see: part of any gain there may "
                           "come from those extra labels rather than from synthesis.")
    if len(cfg.grid.seeds) < 3:
        caveats.append(f"Only {len(cfg.grid.seeds)} seed(s): intervals over seeds are wide or undefined.")
    timings = {}
    untimed: dict[str, int] = {}
    train_counts: dict[str, dict[str, dict[str, int]]] = {}
    accepted: dict[str, dict[str, dict[str, Any]]] = {}
    quality: dict[str, tuple[dict[str, Any], Path]] = {}
    for step in steps:
        record = read_done(step)
        if record is not None:
            timings[step.name] = (float(record.get("seconds", 0.0)), float(record.get("cpu_seconds", 0.0)))
            if record.get("unrecorded_attempts"):
                untimed[step.name] = int(record["unrecorded_attempts"])
            if step.cell is not None:  # what each arm trained on (synth.max_ratio is only a ceiling)
                counts = read_metrics(step.out_dir).get("counts")
                if isinstance(counts, dict):
                    train_counts[step.cell.cell_id] = counts
            if step.kind == FILTER_KIND:
                acceptance = filter_acceptance(step.out_dir)
                if acceptance:
                    accepted[step.name.split("/", 1)[1]] = acceptance
            if step.kind == EVALUATE_KIND:
                evaluation = generator_evaluation(step.out_dir)
                if evaluation:
                    quality[step.name.split("/", 1)[1]] = (evaluation, step.out_dir)
    plan_path = repo_path(cfg.report.plan) if cfg.report.plan else None
    return ReportContext(preset=cfg.preset or "(custom)", about=cfg.about, command=command, data=data,
                         test_counts=test_counts, minority_classes=[canonical_class(c) for c in cfg.synth.classes],
                         settings=settings, caveats=caveats, timings=timings, wall_seconds=wall_seconds,
                         level=cfg.report.level,
                         n_bootstrap=cfg.report.n_bootstrap, bootstrap_seed=cfg.report.bootstrap_seed,
                         train_counts=train_counts, filter_acceptance=accepted, untimed_attempts=untimed,
                         generator_quality=quality, plan=read_plan(plan_path) if plan_path else None,
                         plan_path=cfg.report.plan)


@entry_point
def main(argv: list[str] | None = None) -> int:
    """Run (or resume) the grid and write ``results.csv`` and ``report.md``; returns 0 on success."""
    started = time.time()
    command = " ".join([PROG, *map(shlex.quote, sys.argv[1:] if argv is None else argv)])
    cfg = parse_args(argv)
    validate(cfg)
    out = repo_path(cfg.out_dir) if cfg.out_dir else repo_path(runs_dir() / "bench" / (cfg.preset or "custom"))
    check_folders(cfg, out)
    flags = sys.argv[1:] if argv is None else argv  # parse_args accepted them
    if DRY_RUN in flags:
        return dry_run(cfg, build_steps(cfg, out))
    report_only = REPORT_ONLY in flags
    console.print(f"[bold]bench[/] preset {cfg.preset or '(custom)'} -> {out}" + (" (report only)" if report_only else ""))
    data = prepare_data(cfg.data)
    check_split_sizes(cfg, data)  # before the run folder is made
    if not report_only:  # a report beside a running grid reads its finished cells and starts nothing
        claim_run_folder(out)  # a second grid on this folder would start the same steps again
    described = data.describe()
    fingerprint = {k: described[k] for k in ("name", "images", "classes", "split_hash", "image_size")}
    test_counts = data.class_counts(data.indices("test"))
    steps = build_steps(cfg, out)
    if cfg.run.reuse:
        reuse_cells(steps, repo_path(cfg.run.reuse), out, fingerprint)
    if report_only:
        print_under_way(steps)
        finished = finished_steps(steps, out, fingerprint)
        report_finished(cfg, steps, finished, out, command, described, test_counts, started)
        if cfg.report.export:
            export_results(out, steps, [s for s in finished if s.cell is not None], repo_path(cfg.report.export))
        return 0
    write_run_info(out, cfg, seed=0, extra={"data": described, "command": command}, kind=KIND)
    runner = Runner(steps, out, fingerprint, jobs=cfg.run.jobs, threads=cfg.run.threads,
                    alone_kinds=cfg.run.alone_kinds, keep_going=cfg.run.keep_going, describe=describe_cell,
                    env={"DERMKIT_CACHE": str(Path(cfg.data.cache_dir).expanduser().resolve())})
    report_written = False
    try:
        report_written = _run_and_report(cfg, runner, steps, out, fingerprint, command, described, test_counts,
                                         started)
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted[/]: the running steps were stopped. Re-run the same command to resume "
                      f"(finished steps in {out} are reused).")
        return 130
    finally:  # what finished is kept even when a step failed or the grid was stopped
        if cfg.report.export:
            export_results(out, steps, finished_cells(steps, out, fingerprint), repo_path(cfg.report.export),
                           with_report=report_written)
    return 0


def check_folders(cfg: BenchConfig, out: Path) -> None:
    """The grid's folder, ``--export`` and ``--reuse`` against each other and what they hold, before any step
    (in the dry run too).

    Raises:
        DermkitError: the run folder or the export folder holds another command's outputs (a training run,
            another kind of folder; :func:`dermkit.out_folder.check_out_folder`) or is a file; the export or
            the reused folder is the grid's own folder.
    """
    check_out_folder(out, KIND, "--out (out_dir)" if cfg.out_dir else "The default run folder")
    if cfg.report.export:
        export = repo_path(cfg.report.export)
        if export == out:
            raise DermkitError(f"--export (report.export) {export} is the grid's own run folder (--out): the export "
                               "is a copy without checkpoints, e.g. docs/results/<preset>. Pass another folder.")
        check_out_folder(export, EXPORT_KIND, "--export (report.export)",
                         other="Pass a new folder, or one an earlier --export wrote (e.g. docs/results/<preset>).")
    if cfg.run.reuse and repo_path(cfg.run.reuse) == out:
        raise DermkitError(f"--reuse (run.reuse) {out} is the grid's own run folder: its finished cells count as "
                           "done anyway. Drop --reuse, or pass the folder of another grid or export.")


def check_split_sizes(cfg: BenchConfig, data: PreparedData) -> None:
    """Every split and every label fraction of the grid holds images, before any step runs.

    Raises:
        DermkitError: an empty split or fraction, naming the dataset and the split sizes.
    """
    for fraction in sorted(cfg.grid.fractions):
        data.required_indices("train", fraction, remedy="Use a larger dataset or drop the fraction from "
                              "grid.fractions.")
    for split in ("val", "test"):
        data.required_indices(split)


def repo_path(path: str | Path) -> Path:
    """``path`` with ``~`` expanded, relative to the repository root unless absolute, resolved."""
    path = Path(path).expanduser()
    return (path if path.is_absolute() else REPO_ROOT / path).resolve()


def _run_and_report(cfg: BenchConfig, runner: Runner, steps: list[Step], out: Path, fingerprint: dict[str, Any],
                    command: str, described: dict[str, Any], test_counts: dict[str, int], started: float) -> bool:
    """Run the steps, then write ``results.csv`` and the report; returns True once the report is written.

    Raises:
        DermkitError: a step failed (after ``results.csv`` is written with the cells that finished).
    """
    summary = runner.run()
    # After a failure, a cell that did not run again may still hold a done.json from other settings or inputs.
    rows = collect_results(finished_cells(steps, out, fingerprint))
    results_path = write_results(out / "results.csv", rows)
    console.print(f"{len(summary.ran)} step(s) run, {len(summary.skipped)} reused; "
                  f"{len(rows)} result rows in {results_path}")
    if summary.cleared:
        console.print(f"[yellow]settings changed:[/] re-ran {', '.join(summary.cleared)}")
    if not summary.ok:
        for name, log in summary.failed.items():
            console.print(f"[red]{name} failed[/]; last lines of {log}:\n{log_tail(log)}", highlight=False)
        raise DermkitError(f"{len(summary.failed)} step(s) failed and {len(summary.blocked)} did not run "
                           f"({', '.join(summary.failed)}). Fix the cause and re-run the same command: finished "
                           "steps are reused.")

    cells_dir = out / "cells"
    ctx = report_context(cfg, command, described, test_counts, steps, time.time() - started)
    report = write_report(out, rows, lambda cell_id: read_predictions(cells_dir / cell_id), ctx)
    external_sections(cfg, report, out, steps, ctx)
    _print_summary(rows, out, report, time.time() - started, cfg.report.level)
    return True


def external_sections(cfg: BenchConfig, report: Path, out: Path, steps: list[Step], ctx: ReportContext) -> None:
    """The report's sections on ``grid.external`` (blind sets; labelled ones with their own report)."""
    if cfg.grid.external:
        write_external_sections(report, out, steps, external_folders(cfg.grid.external, repo_path),
                                {k: repo_path(v) for k, v in cfg.grid.external_labels.items()}, ctx)


def print_under_way(steps: list[Step]) -> None:
    """``--report-only``: how far each unfinished step with a ``progress.json`` had got, and when (a long
    generator or pretraining step of a grid running elsewhere, or stopped between sessions)."""
    for step in steps:
        progress = read_progress(step.out_dir)
        if progress is None or (step.out_dir / DONE_FILE).is_file():
            continue
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(progress.updated))
        console.print(f"under way: {step.name}, {progress_text(progress, progress)} at {when}", highlight=False)


def report_finished(cfg: BenchConfig, steps: list[Step], finished: list[Step], out: Path, command: str,
                    described: dict[str, Any], test_counts: dict[str, int], started: float) -> Path:
    """``--report-only``: write ``results.csv`` and the report over the ``finished`` steps (:func:`finished_steps`:
    a generator evaluation or cell left from other settings is not reported), with a caveat naming the cells
    still to run; returns the report's path.

    Raises:
        DermkitError: no cell of this grid has finished.
    """
    waiting = [s.cell.cell_id for s in steps if s.cell is not None and s not in finished]
    cells = [s for s in finished if s.cell is not None]
    rows = collect_results(finished)
    if not rows:
        raise DermkitError(f"No cell of this grid has finished in {out} under these settings: nothing to report. "
                           "Run the grid (the same command without --report-only) first.")
    write_results(out / "results.csv", rows)
    ctx = report_context(cfg, command, described, test_counts, finished, 0.0)
    if waiting:
        ctx.caveats.append(f"A report of part of the grid (`{REPORT_ONLY}`): {len(cells)} of {len(cells) + len(waiting)} "
                           f"cells had finished; not yet run: {', '.join(waiting)}. A fraction or initialisation "
                           "without cells shows '-', and a comparison needs both cells of a seed.")
    report = write_report(out, rows, lambda cell_id: read_predictions(out / "cells" / cell_id), ctx)
    external_sections(cfg, report, out, steps, ctx)
    _print_summary(rows, out, report, time.time() - started, cfg.report.level)
    return report


# A cell's record of how it ran: exported with it, and taken back with it by --reuse, so that a cell
# reused on a new machine and exported again still says how it was trained (bench.compare_cells reads it).
CELL_RECORDS = ("config.yaml", "run.json")


def reuse_cells(steps: list[Step], source: Path, out: Path, fingerprint: dict[str, Any]) -> list[str]:
    """Take every cell that finished in ``source`` (a folder written by :func:`export_results`, or
    another grid's run folder; checked by :func:`validate`) under the key it has here; returns the
    names taken.

    Left to run, with the reason counted in the message: a cell absent from ``source`` or not finished
    there (a run folder's cell under way); a cell whose
    inputs (a pretraining or generator step) have not finished here, so it cannot be keyed yet; a
    cell whose checkpoint another step reads (a ``filtered`` arm's filter) when ``source`` lacks that
    checkpoint (an export: checkpoints are not exported; a run folder has them, and the checkpoint
    is copied with the cell); a cell whose key differs (other settings, data or inputs). A cell taken
    comes with its :data:`CELL_RECORDS` where ``source`` has them.
    """
    cells = source / "cells"
    predicting: dict[str, list[Step]] = defaultdict(list)  # cell step name -> its external predict steps
    for step in (s for s in steps if s.kind == PREDICT_KIND):
        predicting[step.inputs[0].name].append(step)
    # A cell whose checkpoint another step will read is taken only with it; a predict step copied with the
    # cell (an export keeps them) reads none.
    read_by_others = {i.name for step in steps if step.kind != PREDICT_KIND for i in step.inputs}
    read_by_others |= {name for name, predicts in predicting.items()
                       if any(not (exported_copy(p, source) / DONE_FILE).is_file() for p in predicts)}
    taken: list[str] = []
    left: dict[str, list[str]] = defaultdict(list)
    for step in (s for s in steps if s.cell is not None):
        folder = cells / step.cell.cell_id
        if not folder.is_dir():
            left["not in the folder"].append(step.name)
            continue
        if not (folder / DONE_FILE).is_file():  # a run folder's cell still under way (or stopped) there
            left["not finished there"].append(step.name)
            continue
        extra = CELL_RECORDS
        if step.name in read_by_others:  # a filter reads its checkpoint: take the cell only with it
            checkpoint = saved_best_checkpoint(folder)
            if checkpoint is None:
                left["another step reads its checkpoint, which the folder lacks"].append(step.name)
                continue
            extra = (*extra, checkpoint)
        try:
            key = step.key(out, fingerprint)
        except RuntimeError:  # an input not finished here: its digests are not known yet
            left["an input has not finished here"].append(step.name)
            continue
        if adopt_finished(step, key, folder, extra):
            if step.name in read_by_others or adopt_predictions(predicting[step.name], source, out, fingerprint):
                taken.append(step.name)
            else:  # an external set changed since the export: its predict step needs the checkpoint, not there
                shutil.rmtree(step.out_dir)
                left["an external set changed and the folder lacks the checkpoint"].append(step.name)
        elif read_done(step) is None:
            left["other settings, data or inputs"].append(step.name)
    reasons = "; ".join(f"{len(names)}: {reason}" for reason, names in left.items())
    console.print(f"reused {len(taken)} cell(s) from {cells}" + (f"; not reused ({reasons})" if reasons else ""))
    if left["other settings, data or inputs"]:
        console.print("keys differ for " + ", ".join(left["other settings, data or inputs"]), highlight=False)
    return taken


def adopt_predictions(predicts: list[Step], source: Path, out: Path, fingerprint: dict[str, Any]) -> bool:
    """Take a reused cell's external predict steps from ``source``; returns whether every one was taken
    (finished there under the key it has here)."""
    taken = [adopt_finished(p, p.key(out, fingerprint), exported_copy(p, source), PREDICT_RECORDS) for p in predicts]
    return all(taken)


def saved_best_checkpoint(cell_dir: Path) -> str | None:
    """The cell's best checkpoint (:func:`bench.grid.keys.best_checkpoint`) relative to ``cell_dir``, when the
    folder holds it (a run folder does, an export does not)."""
    try:
        path = best_checkpoint(cell_dir)
    except RuntimeError:
        return None
    return str(path.relative_to(cell_dir)) if path.is_file() else None


def reported_cells(folder: Path) -> set[str]:
    """The cells of the report exported to ``folder`` (from its ``results.csv``; none when it has no readable one)."""
    if not (folder / "results.csv").is_file():
        return set()
    try:
        return {row["cell_id"] for row in read_results(folder / "results.csv")}
    except DermkitError:  # not a report of ours: nothing to keep
        return set()


def export_results(out: Path, steps: list[Step], finished: list[Step], dest: Path, with_report: bool = True) -> Path:
    """Copy the ``done.json``, outputs, ``config.yaml`` and ``run.json`` of the ``finished`` cells (those
    finished under their current key, :func:`finished_cells`) into ``dest/cells/<cell>/`` (checkpoints stay behind;
    ``run.reuse`` reads them back) and, when this invocation wrote them (``with_report``), the report,
    ``results.csv`` and the figures, unless the report already in ``dest`` covers cells this grid does
    not include. Returns ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    left_out = sorted(reported_cells(dest) - {step.cell.cell_id for step in steps if step.cell is not None})
    if with_report and left_out:  # a grid run in parts: the part just run must not replace the whole's report
        console.print(f"kept {dest / 'report.md'}: it reports {len(left_out)} cell(s) this grid does not include "
                      f"({', '.join(left_out[:3])}{', ...' if len(left_out) > 3 else ''}). For one report over "
                      "both, run a grid that includes them; its finished cells are reused, nothing trains again.",
                      highlight=False)
        with_report = False
    if with_report:
        for name in ("report.md", "results.csv"):
            shutil.copyfile(out / name, dest / name)
        shutil.copytree(out / "figures", dest / "figures", dirs_exist_ok=True)
        export_external_reports(out, dest)
    for step in finished:
        copy_finished(step, step.out_dir, dest / "cells" / step.cell.cell_id, extra=CELL_RECORDS)
    predicted = export_predictions(steps, dest)
    console.print(f"exported {len(finished)} finished cell(s)" + (", the report, results.csv and figures"
                                                                  if with_report else "")
                  + (f", {predicted} external prediction set(s)" if predicted else "") + f" to {dest}")
    return dest


def _print_summary(rows: list[dict[str, Any]], out: Path, report: Path, seconds: float, level: float) -> None:
    """Balanced accuracy per init, synthetic setting and fraction (mean over seeds) as a rich table."""
    summary = seed_summary(cell_table(rows), lambda e: e["balanced_accuracy"], level)
    fractions = sorted({k[0] for k in summary})
    arms = {k[2] for k in summary}
    table_rows = []
    for init, arm in sorted(dict.fromkeys((k[1], k[2]) for k in summary), key=lambda k: (k[0], arm_sort_key(k[1]))):
        table_rows.append([f"{init} ({arm_label(arm, long=True, legacy=set(arms) <= set(LEGACY_ARMS))})",
                           *(summary[(f, init, arm)].estimate if (f, init, arm) in summary else "-" for f in fractions)])
    print_table("test balanced accuracy, mean over seeds", ["init", *(f"fraction {f:g}" for f in fractions)], table_rows)
    console.print(f"report: {report}  ({seconds:.0f} s this invocation; done markers: */{DONE_FILE})")


if __name__ == "__main__":
    raise SystemExit(main())
