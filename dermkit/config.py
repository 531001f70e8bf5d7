"""Typed configuration: omegaconf structured configs, YAML files, dotlist overrides and flags.

Every command has one dataclass schema. The resolved config is built in this order, later
sources winning: the schema's defaults, ``--config FILE`` (YAML), the command's ``--flags``, then
``key=value`` overrides on the command line. A key the schema does not have is an error that names
it and the closest valid keys; omegaconf's struct mode does the rejecting, this module the wording.

Shared sections (``DataConfig``, ``TrainerConfig``, ``BackboneConfig``) live here so that every
stage reads the same keys the same way; the flags several commands share are built by
:mod:`dermkit.flags`.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from dermkit.data.readers import reader_names
from dermkit.errors import DermkitError, closest, did_you_mean

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO_ROOT / "configs"


def default_ham10000_root() -> str:
    """``$DERMKIT_HAM10000`` if set, else ``../shared/data/ham10000`` beside the repository."""
    return os.environ.get("DERMKIT_HAM10000") or str(REPO_ROOT.parent / "shared" / "data" / "ham10000")


def default_cache_dir() -> str:
    """``$DERMKIT_CACHE`` if set, else ``~/.cache/dermkit``."""
    return os.environ.get("DERMKIT_CACHE") or str(Path("~/.cache/dermkit").expanduser())


AUGMENT_ON = ("workers", "device", "resident")  # values of data.augment_on (dermkit.augment, dermkit.data.resident)
# The values that augment whole uint8 batches on the device (the Lightning module's on_after_batch_transfer).
DEVICE_AUGMENT_ON = ("device", "resident")


def augments_on_device(augment_on: str) -> bool:
    """Whether ``data.augment_on`` augments whole uint8 batches where the model runs (``device``, ``resident``)."""
    return augment_on in DEVICE_AUGMENT_ON


@dataclass
class DataConfig:
    """Which images a command reads and how they are split and cached.

    Keys:
        name: dataset format: ``demo`` (embedded procedural data), ``ham10000``, ``isic``
            (ISIC 2018/2019 ground-truth CSV), ``imagefolder`` (a subfolder per class),
            ``medmnist`` (``dermamnist*.npz``) or ``folder`` (unlabeled images, recursive).
        root: dataset folder (or the .npz file for medmnist). Empty: the demo data's own folder,
            or ``$DERMKIT_HAM10000`` / ``../shared/data/ham10000`` for ham10000.
        image_size: side in pixels of the square images the cache stores and models see.
        cache_dir: where decoded image caches and the demo data live.
        split_seed: seed of the train/val/test split and the nested label fractions.
        val_fraction: share of images (by lesion) in the validation split.
        test_fraction: share of images (by lesion) in the test split.
        fraction: label fraction of the training split to train on (1.0 = all; one of the
            nested fractions 0.01, 0.05, 0.1, 0.25, 0.5, 1.0).
        split_file: an existing ``split.csv`` (from ``python -m dermkit.data``) to use instead of
            computing the split.
        skip_bad: skip unreadable images and list them, instead of stopping at the first.
        batch_size: images per batch (per device).
        num_workers: data-loader worker processes.
        color_constancy: ``none`` or ``shades_of_gray`` (Shades of Gray, p=6, applied when the
            images are cached; see :mod:`dermkit.data.color`).
        augment_on: where training images are augmented: ``device`` (whole uint8 batches where
            the model runs, see :mod:`dermkit.augment`; the default, the faster path of
            ``bench.ssl_throughput``), ``resident`` (as ``device``, and the whole uint8 image
            cache is put on the device once: batches are drawn there by index, with no loader
            processes and no copy per batch, validation and test too; its memory is checked
            first, see :mod:`dermkit.data.resident`; ``num_workers`` is not used) or ``workers``
            (each image in the data-loader workers); read by ``ssl.pretrain`` and
            ``finetune.train``. A run folder recorded before the key existed resumes as
            ``workers`` (:data:`dermkit.resume.LEGACY_DEFAULTS`).
    """

    name: str = "demo"
    root: str = ""
    image_size: int = 64
    cache_dir: str = field(default_factory=default_cache_dir)
    split_seed: int = 0
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    fraction: float = 1.0
    split_file: str = ""
    skip_bad: bool = False
    batch_size: int = 64
    num_workers: int = 2
    color_constancy: str = "none"
    augment_on: str = "device"


@dataclass
class TrainerConfig:
    """Options passed to ``pytorch_lightning.Trainer``.

    Keys:
        max_epochs: epochs to train.
        max_steps: stop after this many optimiser steps (-1: no limit).
        accelerator: ``auto``, ``cpu`` or ``gpu``.
        devices: devices per node (``auto``, or a number).
        num_nodes: machines; more than one with ``strategy=ddp`` is multi-node DDP.
        strategy: ``auto`` or ``ddp`` (Lightning's DistributedDataParallel).
        precision: ``32-true``, or ``bf16-mixed`` on a GPU or a CPU with bfloat16 support (on
            this project's CPU 1.4-1.8x faster, but lower fine-tuning accuracy: docs/benchmarks.md);
            ``auto`` picks bf16-mixed on a GPU that supports it, else 32-true.
        limit_train_batches: fraction or number of training batches per epoch (1.0 = all).
        log_every_n_steps: logging interval.
    """

    max_epochs: int = 10
    max_steps: int = -1
    accelerator: str = "auto"
    devices: str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "auto"
    limit_train_batches: float = 1.0
    log_every_n_steps: int = 10


@dataclass
class BackboneConfig:
    """The backbone a command builds: the ``model`` keys ``ssl.pretrain``, ``ssl.evaluate`` and
    ``finetune.train`` share (``finetune.config.ClassifierModelConfig`` adds the head's keys).

    Keys:
        backbone: architecture, a registry name of :mod:`dermkit.backbones` (``resnet18``,
            ``resnet50``, ``vit_s16``, ``tiny_cnn``; ``--backbone`` in every command).
        small_stem: ResNets: 3x3 stride-1 first convolution without max-pool (for inputs of
            64 px and less); ViT: 8-px patches.
        init: a local weights file (e.g. torchvision ImageNet weights you downloaded) to start
            from; empty for random initialisation. Nothing is downloaded.
    """

    backbone: str = "resnet18"
    small_stem: bool = False
    init: str = ""


@dataclass
class OptimConfig:
    """The keys every stage's ``optim`` section has: ``ssl.pretrain`` (``PretrainOptimConfig``),
    ``synth.train`` (``DiffusionOptimConfig``) and ``finetune.train`` (``FinetuneOptimConfig``).

    Each stage's subclass gives the defaults and says what the keys mean there (they differ: the
    pretraining learning rate is per 256 images, 0 = the method's default). No key has a default
    here, so a subclass that forgets one fails at once rather than inheriting another stage's.

    Keys:
        lr: the (peak) learning rate.
        weight_decay: weight decay.
    """

    lr: float
    weight_decay: float


@dataclass
class AdamWOptimConfig(OptimConfig):
    """AdamW with a linear learning-rate warm-up, a cosine decay and a moving average of the
    weights: the ``optim`` keys ``synth.train`` and ``finetune.train`` share (each sets the defaults).

    Keys:
        lr: the peak learning rate.
        weight_decay: AdamW weight decay.
        warmup_steps: linear warm-up steps of the learning rate.
        ema_decay: decay of the exponential moving average of the weights.
    """

    warmup_steps: int
    ema_decay: float


@dataclass(frozen=True)
class Flag:
    """A ``--flag`` that sets one config key (the everyday options listed by ``--help``).

    Attributes:
        option: the flag, e.g. ``--data``.
        key: the config key it sets, e.g. ``data.name``.
        help: its ``--help`` line (the key is appended).
        type: ``str``, ``int``, ``float`` or ``bool`` (``--x`` / ``--no-x``).
        action: ``"append"`` for a repeatable flag (its key holds a list).
        check: called with the resolved value of ``key`` (whether it came from this flag, a config
            file or an override) when the config is loaded; raises :class:`DermkitError` for a
            value the command cannot run with. :mod:`dermkit.flags` builds the shared flags with
            their checks.
    """

    option: str
    key: str
    help: str
    type: type = str
    action: str | None = None
    check: Callable[[Any], None] | None = None


class _IntermixedParser(argparse.ArgumentParser):
    """``parse_args`` accepts positionals (the ``key=value`` overrides) between optionals.

    Plain argparse takes the positionals once, so ``--a 1 x=1 --b 2 y=2`` would refuse ``y=2`` as
    an unrecognized argument. (``parse_intermixed_args`` itself calls ``parse_known_args``.)
    """

    def parse_args(self, args: Any = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        return self.parse_intermixed_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        """argparse's usage error (exit status 2), naming the new spelling of a renamed flag."""
        words = message.split()
        for old, new in RENAMED_FLAGS.items():
            if old in words and new in self._option_string_actions:
                message += f" ({old} is now called {new}: one name in every command)"
        super().error(message)


def build_parser(prog: str, description: str, flags: list[Flag] = ()) -> argparse.ArgumentParser:
    """An argparse parser with ``--config``, the given flags and ``key=value`` overrides.

    The overrides may stand before, between or after the flags (its ``parse_args`` is argparse's
    ``parse_intermixed_args``).
    """
    parser = _IntermixedParser(
        prog=prog,
        description=description,
        epilog="Any config key can be set as key=value, e.g. data.root=/x trainer.max_epochs=5. "
        "Run commands from the repository root.",
    )
    parser.add_argument("--config", metavar="FILE", help="YAML config file (keys of this command's schema)")
    for flag in flags:
        kwargs: dict[str, Any] = {"help": f"{flag.help} (config key: {flag.key})", "dest": _dest(flag)}
        if flag.action == "append":
            kwargs["action"] = "append"
        elif flag.type is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
            kwargs["default"] = None
        else:
            kwargs["type"] = flag.type
        if flag.type is not bool:
            kwargs["metavar"] = flag.key.rsplit(".", 1)[-1].upper()
        parser.add_argument(flag.option, **kwargs)
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    return parser


def _dest(flag: Flag) -> str:
    return "flag__" + flag.key.replace(".", "__")


def _all_keys(cfg: Any, prefix: str = "") -> list[str]:
    keys: list[str] = []
    if isinstance(cfg, DictConfig):
        for k in cfg.keys():
            full = f"{prefix}{k}"
            keys.append(full)
            node = cfg._get_node(k)  # noqa: SLF001 - omegaconf has no public accessor for the node type
            if isinstance(node, DictConfig):
                keys.extend(_all_keys(node, f"{full}."))
    return keys


# Old spellings of keys that now have one name in every command; the error names the new one
# (when the command has it). ``backbone`` names an architecture everywhere: the weights file that
# ``ssl.evaluate`` and ``synth.evaluate`` read is ``weights``.
RENAMED_KEYS = {
    "out": "out_dir",
    "checkpoint_every": "checkpoint_every_n_steps",
    "backbone": "weights",
    "random_backbone": "backbone",
    "random_small_stem": "small_stem",
}
# Old spellings of flags, named in argparse's "unrecognized arguments" error.
RENAMED_FLAGS = {
    "--arch": "--backbone",
}


def _unknown_key_error(schema_cfg: DictConfig, key: str, source: str) -> DermkitError:
    valid = _all_keys(schema_cfg)
    prefix, _, name = key.rpartition(".")
    renamed = f"{prefix}.{RENAMED_KEYS[name]}" if prefix and name in RENAMED_KEYS else RENAMED_KEYS.get(name, "")
    if renamed in valid:
        return DermkitError(f"Config key {key!r} in {source} is now called {renamed!r} (one name in every "
                            f"command): write {renamed}=... instead.")
    hits = closest(key, valid) or closest(key.split(".")[-1], [k.split(".")[-1] for k in valid])
    hint = f" Closest valid keys: {', '.join(hits)}." if hits else ""
    return DermkitError(f"Unknown config key {key!r} in {source}.{hint} List all keys with --help-config.")


def _merge(base: DictConfig, other: DictConfig | dict, schema_cfg: DictConfig, source: str) -> DictConfig:
    try:
        return OmegaConf.merge(base, other)  # type: ignore[return-value]
    except (ConfigKeyError, ConfigAttributeError) as err:
        key = getattr(err, "full_key", None) or str(err)
        raise _unknown_key_error(schema_cfg, str(key), source) from None
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", "")
        raise DermkitError(f"Bad value for config key {key!r} in {source}: {err.msg if hasattr(err, 'msg') else err}") from None


def load_config(schema: type[T], args: argparse.Namespace, flags: list[Flag] = ()) -> T:
    """Resolve a structured config from defaults, ``--config``, flags and ``key=value`` overrides.

    Returns:
        An omegaconf ``DictConfig`` in struct mode, typed as the schema (attribute access works
        and unknown keys are rejected).

    Every :class:`DataConfig` and :class:`TrainerConfig` section is checked
    (:func:`check_data_config`, :func:`check_trainer_config`), and the resolved value of each
    flag's key by that flag's ``check`` (e.g. ``--out``: a folder that can be written, see
    :func:`dermkit.flags.out_flag`; ``--backbone``: a registered architecture): bad values fail
    here, before the command does any work or creates its folder.

    Raises:
        DermkitError: a missing or malformed config file, an unknown key (with the closest valid
            keys, or its new name if it was renamed), a value of the wrong type, or a value the
            checks above refuse.
    """
    schema_cfg = OmegaConf.structured(schema)
    cfg = schema_cfg
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise DermkitError(f"Config file {path} does not exist. Pass a YAML file, e.g. --config configs/<name>.yaml.")
        try:
            file_cfg = OmegaConf.load(path)
        except Exception as err:  # yaml errors come in several types
            raise DermkitError(f"Config file {path} is not valid YAML: {err}") from None
        if not isinstance(file_cfg, DictConfig):
            raise DermkitError(f"Config file {path} must hold a mapping of keys, not {type(file_cfg).__name__}.")
        cfg = _merge(cfg, file_cfg, schema_cfg, str(path))
    flag_values: dict[str, Any] = {}
    for flag in flags:
        value = getattr(args, _dest(flag), None)
        if value is not None:
            flag_values[flag.key] = value
    if flag_values:
        cfg = _merge(cfg, _nested(flag_values), schema_cfg, "command-line flags")
    overrides = list(getattr(args, "overrides", []) or [])
    for item in overrides:
        if "=" not in item:
            raise DermkitError(f"Override {item!r} is not of the form key=value (e.g. trainer.max_epochs=5).")
    if overrides:
        try:
            dot = OmegaConf.from_dotlist(overrides)
        except OmegaConfBaseException as err:
            raise DermkitError(f"Cannot parse overrides {overrides}: {err}") from None
        cfg = _merge(cfg, dot, schema_cfg, "command-line overrides")
    OmegaConf.set_struct(cfg, True)
    for key in _all_keys(cfg):
        node = OmegaConf.select(cfg, key)
        if isinstance(node, DictConfig) and OmegaConf.get_type(node) is DataConfig:
            check_data_config(node, key)  # type: ignore[arg-type]
        elif isinstance(node, DictConfig) and OmegaConf.get_type(node) is TrainerConfig:
            check_trainer_config(node, key)  # type: ignore[arg-type]
    for flag in flags:
        if flag.check is not None:
            flag.check(OmegaConf.select(cfg, flag.key))
    return cfg  # type: ignore[return-value]


def check_data_config(data: DataConfig, prefix: str = "data") -> None:
    """Refuse data settings no stage can run with, before any work is done.

    Every schema's :class:`DataConfig` section goes through here (``load_config`` calls it), so
    every stage rejects the same values with the same words. ``image_size`` is not checked: some
    stages read 0 as "take it from the model".

    Args:
        data: the resolved section.
        prefix: its key in the command's schema (``data``), used in messages.

    Raises:
        DermkitError: an unknown ``name`` (listing the registered readers), ``batch_size`` < 1
            or ``num_workers`` < 0. (Split fractions are checked where the split is made.)
    """
    names = reader_names()  # the reader registry is the one list of dataset names
    if data.name not in names:
        raise DermkitError(f"Unknown dataset {prefix}.name={data.name!r} (--data).{did_you_mean(data.name, names)} "
                           f"Known: {', '.join(names)}.")
    if data.batch_size < 1:
        raise DermkitError(f"{prefix}.batch_size={data.batch_size}: a batch needs at least 1 image; set "
                           f"--batch-size (or {prefix}.batch_size) to a positive number.")
    if data.num_workers < 0:
        raise DermkitError(f"{prefix}.num_workers={data.num_workers}: use 0 (load in the main process) or more "
                           "worker processes.")
    if data.augment_on not in AUGMENT_ON:
        raise DermkitError(f"{prefix}.augment_on={data.augment_on!r} is unknown."
                           f"{did_you_mean(data.augment_on, AUGMENT_ON)} Choose workers (augment each image in the "
                           "loader workers), device (whole batches where the model runs) or resident (as device, "
                           "with every image kept on the device).")


def _literal_values(annotation: Any) -> list[str]:
    """The string forms of every ``Literal`` value in a (possibly nested) ``Union`` of Literals."""
    import typing

    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Literal:
        return [str(a) for a in args]
    return [v for a in args for v in _literal_values(a)]


def check_trainer_config(trainer: TrainerConfig, prefix: str = "trainer") -> None:
    """Refuse trainer settings Lightning would reject (with a traceback) or that train nothing.

    Run at parse time, so a typo fails before any image is cached. The accepted names are
    Lightning's own registries (imported here only: every command with a trainer section imports
    Lightning anyway).

    Raises:
        DermkitError: an unknown ``accelerator``, ``strategy`` or ``precision`` (with the closest
            names), ``devices`` that is not ``auto``, a count or a list of device indices,
            ``num_nodes`` < 1, ``max_epochs``/``max_steps`` below -1, or ``limit_train_batches``
            <= 0 (a run that would train nothing and still write a model).
    """
    from lightning_fabric import connector
    from pytorch_lightning.accelerators import AcceleratorRegistry
    from pytorch_lightning.strategies import StrategyRegistry

    choices = {
        "accelerator": ["auto", "gpu", *sorted(AcceleratorRegistry.available_accelerators())],
        "strategy": ["auto", *StrategyRegistry.available_strategies()],
        # Lightning keeps its list of precision names in a private Literal type.
        "precision": ["auto", *dict.fromkeys(_literal_values(connector._PRECISION_INPUT))],
    }
    for key, valid in choices.items():
        value = str(getattr(trainer, key))
        if value not in valid:
            raise DermkitError(f"Unknown {prefix}.{key}={value!r}.{did_you_mean(value, valid)} "
                               f"Choose one of {', '.join(valid)}.")
    devices = str(trainer.devices).strip()
    parts = [p.strip() for p in devices.split(",") if p.strip()]
    count_ok = devices.lstrip("-").isdigit() and (int(devices) >= 1 or int(devices) == -1)
    list_ok = "," in devices and bool(parts) and all(p.isdigit() for p in parts)
    if devices != "auto" and not count_ok and not list_ok:
        raise DermkitError(f"{prefix}.devices={trainer.devices!r} (--devices): use auto, a number of devices "
                           "(1 or more; -1 for all), or device indices such as 0,1.")
    if trainer.num_nodes < 1:
        raise DermkitError(f"{prefix}.num_nodes={trainer.num_nodes}: use 1 or more machines.")
    for key in ("max_epochs", "max_steps"):
        if getattr(trainer, key) < -1:
            raise DermkitError(f"{prefix}.{key}={getattr(trainer, key)}: use 0 or more, or -1 for no limit.")
    if trainer.limit_train_batches <= 0:
        raise DermkitError(f"{prefix}.limit_train_batches={trainer.limit_train_batches} trains nothing: use a "
                           "fraction in (0, 1] or a number of batches >= 1.")


def _nested(flat: dict[str, Any]) -> DictConfig:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return OmegaConf.create(out)


def parse_config(schema: type[T], prog: str, description: str, argv: list[str] | None,
                 flags: list[Flag] = ()) -> T:
    """Parse ``argv`` with :func:`build_parser` and resolve the config (the usual entry-point call).

    ``argv = ["--check-configs", FILE]`` instead resolves every argument list in FILE (a JSON list
    of lists) with this schema and exits; see :func:`check_configs`.
    """
    args_list = sys.argv[1:] if argv is None else list(argv)
    if args_list[:1] == [CHECK_CONFIGS] and len(args_list) == 2:
        raise SystemExit(check_configs(schema, prog, description, Path(args_list[1]), flags))
    parser = build_parser(prog, description, flags)
    parser.add_argument("--help-config", action="store_true", help="print every config key with its default and exit")
    args = parser.parse_args(argv)
    if args.help_config:
        print(OmegaConf.to_yaml(OmegaConf.structured(schema)))
        raise SystemExit(0)
    return load_config(schema, args, flags)


CHECK_CONFIGS = "--check-configs"


def check_configs(schema: type[T], prog: str, description: str, path: Path, flags: list[Flag] = ()) -> int:
    """Resolve each argument list in the JSON file ``path`` as :func:`parse_config` would; run nothing.

    One process checks every command a pipeline will run with one stage (``python -m <stage>
    --check-configs FILE``; ``bench.label_efficiency --dry-run``). Only the schema and the checks of
    :func:`load_config` apply, not a stage's own later checks. Prints a JSON list on stdout: per
    argument list, ``{"error": null, "config": {...}}`` (the resolved config) when it resolves,
    else ``{"error": "<the one-line error>", "config": null}``.

    Returns:
        0 when every list resolves, else 2.
    """
    import contextlib
    import io
    import json

    results: list[dict[str, Any]] = []
    for args in json.loads(path.read_text()):
        captured = io.StringIO()
        try:
            with contextlib.redirect_stderr(captured):  # argparse reports usage errors there
                cfg = load_config(schema, build_parser(prog, description, flags).parse_args(args), flags)
            results.append({"error": None, "config": to_container(cfg)})
        except DermkitError as err:
            results.append({"error": str(err), "config": None})
        except SystemExit:
            lines = captured.getvalue().strip().splitlines()
            results.append({"error": lines[-1] if lines else "bad arguments", "config": None})
    print(json.dumps(results))
    return 0 if all(r["error"] is None for r in results) else 2


def to_yaml(cfg: Any) -> str:
    """The resolved config as YAML (what runs write to ``config.yaml``)."""
    return OmegaConf.to_yaml(cfg, resolve=True)


def to_container(cfg: Any) -> dict[str, Any]:
    """The resolved config as plain dicts and lists (for JSON and hashing)."""
    value = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, (DictConfig, ListConfig)) else cfg
    return value  # type: ignore[return-value]


def trainer_kwargs(cfg: TrainerConfig) -> dict[str, Any]:
    """``pytorch_lightning.Trainer`` arguments from the shared trainer section.

    ``precision=auto`` becomes ``bf16-mixed`` on a CUDA GPU that supports it, else ``32-true``;
    ``devices`` is passed as a number when it is one.
    """
    import torch  # here, so that reading configs does not import torch

    precision = cfg.precision
    if precision == "auto":
        gpu = cfg.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
        precision = "bf16-mixed" if gpu and torch.cuda.is_bf16_supported() else "32-true"
    devices: Any = int(cfg.devices) if str(cfg.devices).isdigit() else cfg.devices
    return {
        "max_epochs": cfg.max_epochs,
        "max_steps": cfg.max_steps,
        "accelerator": cfg.accelerator,
        "devices": devices,
        "num_nodes": cfg.num_nodes,
        "strategy": cfg.strategy,
        "precision": precision,
        "limit_train_batches": cfg.limit_train_batches,
        "log_every_n_steps": cfg.log_every_n_steps,
    }
