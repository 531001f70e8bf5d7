"""The grid's settings: presets (``configs/bench_<name>.yaml``), the command line that resolves them, and
the checks that refuse a grid the stages cannot run, naming the key.
"""

from __future__ import annotations

from pathlib import Path

from dermkit.config import CONFIG_DIR, REPO_ROOT, Flag, build_parser, load_config, to_yaml
from dermkit.data.splits import FRACTIONS
from dermkit.errors import DermkitError, did_you_mean
from dermkit.flags import out_flag
from dermkit.vocab import canonical_class
from bench.grid.config import (ARM_REAL, ARM_SPELLINGS, INIT_SPELLINGS, INITS, LEGACY_ARMS, LINEAR_SUFFIX, SSL_METHODS,
                               BenchConfig, GridConfig, grid_arms, init_weights, parse_arm, parse_init,
                               split_init_key)
from bench.grid.external import external_folders, read_labels
from bench.grid.plan import STEP_KINDS, fraction_key, repo_path
from bench.report.comparison_plan import read_plan


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
CELL_KEYS = ("data.fraction", "model.init", "model.backbone", "model.small_stem", "synth.manifest", "seed", "out_dir",
             "optim.freeze_backbone")  # the last: set by the <init>-linear inits
# finetune.train keys an arm sets itself: in the overrides they would make the arms alike.
ARM_KEYS = ("sampler", "synth.max_ratio")
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
    for key in cfg.finetune.init_overrides:
        init, fraction = split_init_key(key)
        try:
            parse_init(init)
        except ValueError:
            raise DermkitError(f"finetune.init_overrides has key {key!r}, which is not an initialisation "
                               f"({INIT_SPELLINGS}), optionally followed by @<fraction> (simclr@0.01)."
                               f"{did_you_mean(init, init_names())}") from None
        if fraction is not None and fraction_key(fraction, list(FRACTIONS)) is None:
            raise DermkitError(f"finetune.init_overrides has key {key!r}: {fraction!r} is not a label fraction "
                               f"({', '.join(f'{f:g}' for f in FRACTIONS)}).")
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
