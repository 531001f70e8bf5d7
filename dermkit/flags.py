"""The flags several commands share, built from the registries: one spelling, one list of names.

Every command takes its ``--data``, ``--root``, ``--backbone``, ``--small-stem``, ``--weights`` and ``--out`` flags
from here, so each has the same option, config key, help and parse-time check everywhere, and the
names a help line lists come from the registry that accepts them (:mod:`dermkit.data.readers`,
:data:`dermkit.backbones.BACKBONES`) rather than from a hand-typed list.

``--backbone`` always names an architecture; a weights file is ``--init`` (the weights a training
run starts from) or ``--weights`` (the weights an evaluation reads).
"""

from __future__ import annotations

import functools
from pathlib import Path

from dermkit.config import Flag
from dermkit.data.readers import reader_names
from dermkit.errors import DermkitError, did_you_mean
from dermkit.out_folder import check_out_folder
from dermkit.runinfo import check_out_dir

OUT_KEY = "out_dir"  # the output folder's config key in every command
WEIGHTS_KEY = "weights"
WEIGHT_FILE_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt", ".bin")


def data_flag(note: str = "") -> Flag:
    """``--data`` (``data.name``): the dataset format, listing every registered reader.

    The value is checked with the rest of the data section (:func:`dermkit.config.check_data_config`,
    whose error lists the same names).

    Args:
        note: appended to the help line, e.g. which formats the command cannot use.
    """
    return Flag("--data", "data.name", f"dataset format: {', '.join(reader_names())}{note}")


def root_flag() -> Flag:
    """``--root`` (``data.root``): where the dataset lies."""
    return Flag("--root", "data.root", "dataset folder (medmnist: the .npz file or its folder; folder: any tree of "
                "images, read recursively)")


def backbone_flag(key: str = "model.backbone", note: str = "", weights_option: str = "--init") -> Flag:
    """``--backbone``: an architecture from :data:`dermkit.backbones.BACKBONES`, in every command.

    Its check (:func:`check_backbone`) refuses any other value at parse time, naming the
    registered architectures, and ``weights_option`` when the value looks like a weights file or
    is ``random``.

    Args:
        key: the config key it sets.
        note: appended to the help line (e.g. when the architecture is used).
        weights_option: the command's flag for a weights file (``--init`` or ``--weights``).
    """
    from dermkit.backbones import BACKBONES  # torch; every command with a backbone imports it anyway

    return Flag("--backbone", key, f"architecture: {', '.join(BACKBONES.names())}{note}",
                check=functools.partial(check_backbone, key=key, weights_option=weights_option))


def check_backbone(name: str, key: str = "model.backbone", weights_option: str = "--init") -> None:
    """Refuse an architecture name the backbone registry does not have.

    Args:
        name: the resolved value of ``key``.
        key: its config key, named in the message.
        weights_option: the command's flag for a weights file, named when ``name`` looks like a
            path or is ``random`` (``--backbone`` once took those in the evaluation commands).

    Raises:
        DermkitError: ``name`` is not registered; the message lists the registered names.
    """
    from dermkit.backbones import BACKBONES

    if name in BACKBONES:
        return
    if name == "random":
        hint = f" Random initialisation is what you get without {weights_option}."
    elif "/" in name or Path(name).suffix in WEIGHT_FILE_SUFFIXES:
        hint = f" A weights file goes in {weights_option}: {weights_option} {name}."
    else:
        hint = ""
    raise DermkitError(f"Unknown backbone {key}={name!r}: --backbone names an architecture."
                       f"{did_you_mean(name, BACKBONES)} Known: {', '.join(BACKBONES.names())}.{hint}")


def weights_flag(help: str) -> Flag:  # noqa: A002 - the Flag field's name
    """``--weights`` (``weights``): the backbone file an evaluation reads; empty: random initialisation.

    Its check refuses ``random``, the old way of asking for random initialisation.
    """
    return Flag("--weights", WEIGHTS_KEY, help, check=check_weights)


def check_weights(value: str) -> None:
    """Refuse ``weights=random``: random initialisation is an empty ``weights``.

    Raises:
        DermkitError: ``value`` is ``random``.
    """
    if value == "random":
        raise DermkitError("weights='random': for a random-init backbone leave out --weights (weights is empty); "
                           "--backbone picks its architecture.")


def small_stem_flag(key: str = "model.small_stem", note: str = "") -> Flag:
    """``--small-stem`` / ``--no-small-stem``: the small-image stem of a ResNet backbone.

    Args:
        key: the config key it sets.
        note: appended to the help line (e.g. which backbone it applies to).
    """
    return Flag("--small-stem", key, f"small-image stem (ResNet: 3x3 stride-1 conv, no max-pool){note}", bool)


def out_flag(help: str, command: str = "", replaces: bool = False) -> Flag:  # noqa: A002 - the Flag field's name
    """``--out`` (``out_dir``): the folder a command writes.

    Its check refuses, before any work, a folder that is a file, lies below a file or cannot be
    written (:func:`dermkit.runinfo.check_out_dir`) and, given the ``command``, a folder holding
    another command's outputs (:func:`dermkit.out_folder.check_out_folder`; with ``replaces``
    also a folder of unknown files). An empty value (the command's default folder) is not
    checked here: the command checks the folder it picks.

    Args:
        help: the help line.
        command: the command writing the folder (``finetune.evaluate``); empty: no kind check.
        replaces: the command's outputs replace the whole folder (:func:`dermkit.out_folder.replacing`).
    """
    return Flag("--out", OUT_KEY, help, check=functools.partial(_check_out, command=command, replaces=replaces))


def _check_out(value: str, command: str = "", replaces: bool = False) -> None:
    if not value:
        return
    if command:
        check_out_folder(value, command, f"--out ({OUT_KEY})", replaces)
    else:
        check_out_dir(value, f"--out ({OUT_KEY})")
