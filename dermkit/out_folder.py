"""One rule for every command's output folder: what a folder holds, and how a re-run replaces it.

Every command that writes an output folder checks it before any work (:func:`check_out_folder`):

- a folder holding another command's outputs (a training run, a grid, a generation, an evaluation
  report, ...) is refused with one line naming what it holds and how that was recognised, so an
  evaluation pointed at a training run's folder can no longer overwrite its ``config.yaml``,
  ``run.json``, ``metrics.json`` and ``predictions.csv``;
- a command whose outputs replace its folder (a report, a saved split, a speed measurement, a
  generator snapshot: :func:`replacing`) also refuses a folder of files no command is known to
  have written, since replacing it would delete them;
- a command that resumes or adds to its folder (training, pretraining, generation, the grid and its
  export) keeps its own rules for a folder of its own.

What a folder holds (:func:`read_contents`) comes first from ``run.json``'s ``kind``, which
:func:`dermkit.runinfo.write_run_info` records (the command's module, e.g. ``finetune.evaluate``),
and for folders written before that record existed from the files each command writes
(:data:`LEGACY_SIGNS`). The files a driver puts in a stage's folder (the grid's ``started.json``,
``stage.log``, ``done.json``; the ``.lock`` of :func:`dermkit.resume.claim_run_folder`) say
nothing about what the folder holds.

A re-run of a replacing command into its own folder writes its outputs into a staging folder beside
it (``.<name>.partial-<pid>``) and swaps that in when they are complete (:func:`replacing`): nothing
of the previous outputs is left behind (no stale Grad-CAM grid of an earlier report), and a kill
leaves the previous complete outputs or none (the next run puts the previous ones back, or clears
what was left). Kept across the swap: the driver's files (a grid's log still being written) and
subfolders holding another command's outputs (a generation made inside a generator snapshot's
folder, an evaluation inside it).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dermkit.errors import DermkitError
from dermkit.resume import LOCK_FILE, _first_process, claim_run_folder, release_run_folder
from dermkit.runinfo import RUN_INFO, check_out_dir

KIND_KEY = "kind"  # run.json: the command (module) that wrote the folder
# What each command's folder holds, as the messages name it.
KINDS: dict[str, str] = {
    "ssl.pretrain": "a pretraining run",
    "ssl.evaluate": "a frozen-feature evaluation",
    "synth.train": "a generator training run",
    "synth.snapshot": "a generator snapshot",
    "synth.generate": "a generation (synthetic images and their manifest)",
    "synth.evaluate": "a generator evaluation",
    "synth.speed": "a sampling-speed measurement",
    "finetune.train": "a fine-tuning run",
    "finetune.evaluate": "an evaluation report",
    "finetune.predict": "predictions on a folder of images",
    "finetune.export": "an exported model (ONNX)",
    "finetune.filter_synthetic": "a filtered synthetic manifest",
    "bench.label_efficiency": "a label-efficiency grid",
    "bench.export": "a grid export (bench.label_efficiency --export)",
    "dermkit.data": "a saved split",
}
EXPORT_KIND = "bench.export"
# The command line of a kind that is not a module of its own.
COMMAND_LINES = {EXPORT_KIND: "python -m bench.label_efficiency --export"}
# Files a driver puts in a stage's folder; they do not tell what the folder holds.
DRIVER_FILES = frozenset({"started.json", "stage.log", "done.json", LOCK_FILE})
# Of those, the ones a replacement keeps (done.json no longer describes the new outputs).
KEPT_FILES = ("started.json", "stage.log", LOCK_FILE)
STAGING_MARK = ".partial-"
REPLACED_MARK = ".replaced-"


@dataclass(frozen=True)
class FolderContents:
    """What a folder holds.

    Attributes:
        command: the command whose outputs these are (a :data:`KINDS` key, or another module a newer
            command recorded); None for files no command is known to write.
        evidence: how it was recognised, e.g. ``run.json kind`` or ``checkpoints/, backbone.json``.
        names: a few of the folder's entries, for a message.
    """

    command: str | None
    evidence: str
    names: tuple[str, ...] = ()

    def describe(self) -> str:
        """``a fine-tuning run (python -m finetune.train; run.json kind)`` or a list of the unknown files."""
        if self.command is None:
            return f"files no dermkit command wrote ({', '.join(self.names)})"
        return f"{KINDS.get(self.command, 'the outputs')} ({command_line(self.command)}; recognised by {self.evidence})"


def command_line(command: str) -> str:
    """How a user runs ``command`` (a :data:`KINDS` key): ``python -m finetune.train``."""
    return COMMAND_LINES.get(command, f"python -m {command}")


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; an empty dict when the file is missing, unreadable or not an object."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _config_keys(folder: Path) -> set[str]:
    """Top-level keys of the folder's ``config.yaml`` (empty when missing or unreadable)."""
    import yaml

    try:
        value = yaml.safe_load((folder / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return set()
    return set(value) if isinstance(value, dict) else set()


def _recorded_kind(folder: Path) -> str | None:
    """The command ``run.json`` records: its ``kind``, or the grid's ``python -m ...`` command line."""
    info = read_json_object(folder / RUN_INFO)
    if isinstance(info.get(KIND_KEY), str) and info[KIND_KEY]:
        return str(info[KIND_KEY])
    command = info.get("command")
    if isinstance(command, str) and command.startswith("python -m "):  # the grid records its command line
        module = command.split()[2]
        return module if module in KINDS else None
    return None


def _legacy_kind(folder: Path, names: set[str]) -> tuple[str, str] | None:
    """(command, evidence) from the files each command writes, for folders without ``run.json``'s kind."""
    def has(*wanted: str) -> bool:
        return all(name in names for name in wanted)

    if has("cells") and (folder / "cells").is_dir():
        return ("bench.label_efficiency", "cells/, run.json") if has(RUN_INFO) else (EXPORT_KIND, "cells/")
    if has("manifest.json"):
        return ("finetune.filter_synthetic", "manifest.json, scores.csv") if has("scores.csv") \
            else ("synth.generate", "manifest.json")
    if has("checkpoints") and (folder / "checkpoints").is_dir():
        keys = _config_keys(folder)
        if has("backbone.json") or "method" in keys:
            return "ssl.pretrain", "checkpoints/, " + ("backbone.json" if has("backbone.json") else "config.yaml")
        if has("dermkit_generator.json") or has("train_state.json") or not keys & {"loss", "sampler"}:
            return "synth.train", "checkpoints/, config.yaml"
        return "finetune.train", "checkpoints/, config.yaml"
    for files, command in ((("dermkit_generator.json",), "synth.snapshot"), (("backbone.json",), "ssl.pretrain"),
                           (("split.csv", "split.json"), "dermkit.data"), (("speed.json",), "synth.speed"),
                           (("near_copies.csv",), "synth.evaluate")):
        if has(*files):
            return command, ", ".join(files)
    if has("metrics.json"):
        if "knn" in read_json_object(folder / "metrics.json"):
            return "ssl.evaluate", "metrics.json"
        if "checkpoint" in read_json_object(folder / RUN_INFO):
            return "finetune.evaluate", "metrics.json, run.json"
    return None


def read_contents(folder: str | Path) -> FolderContents | None:
    """What ``folder`` holds; None when it is missing, not a folder, or empty but for a driver's files."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        return None
    names = {p.name for p in folder.iterdir()} - DRIVER_FILES
    if not names:
        return None
    recorded = _recorded_kind(folder)
    if recorded is not None:
        return FolderContents(recorded, f"{RUN_INFO} kind")
    legacy = _legacy_kind(folder, names)
    if legacy is not None:
        return FolderContents(*legacy)
    shown = sorted(names)
    return FolderContents(None, "", tuple(shown[:3]) + (("...",) if len(shown) > 3 else ()))


def check_out_folder(folder: str | Path, command: str, option: str = "--out (out_dir)", replaces: bool = False,
                     other: str = "") -> Path:
    """Refuse an output folder that holds another command's outputs; create nothing.

    Args:
        folder: the output folder.
        command: the command about to write it (a :data:`KINDS` key).
        option: how the message names the setting.
        replaces: the command's outputs replace the whole folder (:func:`replacing`): a folder of
            unknown files is refused too.
        other: what to suggest instead, e.g. ``"Pass a new folder, e.g. RUN/eval_isic_all."``.

    Returns:
        The folder, ``~`` expanded.

    Raises:
        DermkitError: the folder is a file or not writable (:func:`dermkit.runinfo.check_out_dir`),
            holds another command's outputs, or (``replaces``) files no command wrote.
    """
    out = check_out_dir(folder, option)
    contents = read_contents(out)
    if contents is None or contents.command == command or (contents.command is None and not replaces):
        return out
    verb = "would replace the whole folder" if replaces else "would write its files among them"
    raise DermkitError(f"{option} {out} holds {contents.describe()}; {command_line(command)} {verb}. "
                       f"{other or 'Pass a new or empty folder.'}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _leftovers(folder: Path, mark: str) -> list[Path]:
    """Staging or replaced folders of ``folder`` left by processes that are no longer running."""
    found = []
    for path in folder.parent.glob(f".{folder.name}{mark}*"):
        pid = path.name.rsplit("-", 1)[-1]
        if path.is_dir() and pid.isdigit() and not _alive(int(pid)):
            found.append(path)
    return found


def recover(folder: Path) -> None:
    """Finish what a killed replacement of ``folder`` left: put the previous outputs back when no
    new ones were swapped in, move kept entries across, and delete the staging folders."""
    for old in _leftovers(folder, REPLACED_MARK):
        if not folder.exists():
            old.rename(folder)  # killed between the two renames: the previous complete outputs return
        else:
            _move_kept(old, folder)
            shutil.rmtree(old, ignore_errors=True)
    for staging in _leftovers(folder, STAGING_MARK):
        shutil.rmtree(staging, ignore_errors=True)


def _move_kept(old: Path, new: Path) -> None:
    """Move the driver's files and the subfolders holding another command's outputs from ``old`` to ``new``."""
    for entry in list(old.iterdir()):
        keep = entry.name in KEPT_FILES or (entry.is_dir() and not entry.name.startswith(".")
                                            and (read_contents(entry) or FolderContents(None, "")).command)
        if keep and not (new / entry.name).exists():
            entry.rename(new / entry.name)


@contextmanager
def replacing(folder: str | Path, command: str) -> Iterator[Path]:
    """Write a command's outputs into a staging folder that replaces ``folder`` when the block ends.

    Call it after every check, when the work starts. The folder is claimed for this process
    (:func:`dermkit.resume.claim_run_folder`: a second command writing it at the same time is
    refused). The block writes into the yielded staging folder (``.<name>.partial-<pid>`` beside
    ``folder``); when it ends without an exception, ``folder`` is replaced by it (the previous
    folder's driver files and subfolders of other commands' outputs are moved across); on an
    exception the staging folder is deleted and ``folder`` is left as it was. Under DDP only the
    first process writes: the others get a scratch folder that is deleted.

    Args:
        folder: the command's output folder, checked by :func:`check_out_folder` with ``replaces``.
        command: the command (recorded by :func:`dermkit.runinfo.write_run_info` as ``kind``).
    """
    if not _first_process():
        with tempfile.TemporaryDirectory(prefix="dermkit-rank-") as scratch:
            yield Path(scratch)
        return
    final = Path(folder).expanduser()
    created = not final.exists()
    claim_run_folder(final)  # creates the folder, holding only .lock
    recover(final)
    staging = final.parent / f".{final.name}{STAGING_MARK}{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created and {p.name for p in final.iterdir()} <= {LOCK_FILE}:
            release_run_folder(final)
            shutil.rmtree(final, ignore_errors=True)  # nothing was there before and nothing was written
        raise
    _swap_in(staging, final)


def _swap_in(staging: Path, final: Path) -> None:
    """Replace ``final`` by ``staging``: two renames, then the kept entries move across (see :func:`recover`)."""
    if not final.exists():  # removed while the command ran
        staging.rename(final)
        return
    old = final.parent / f".{final.name}{REPLACED_MARK}{os.getpid()}"
    shutil.rmtree(old, ignore_errors=True)
    final.rename(old)
    staging.rename(final)
    _move_kept(old, final)
    shutil.rmtree(old, ignore_errors=True)
