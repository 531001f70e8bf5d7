"""What every run records in its output folder, so a result can be traced and repeated."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from dermkit.config import REPO_ROOT, to_yaml
from dermkit.errors import DermkitError

RUN_INFO = "run.json"
_PACKAGES = ("torch", "torchvision", "lightly", "diffusers", "pytorch-lightning", "torchmetrics", "dermkit")


def git_commit() -> str | None:
    """The repository's HEAD commit (with ``-dirty`` when there are local changes), or None."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                                text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages a result depends on (None when not installed)."""
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def check_out_dir(path: str | Path, option: str = "--out") -> Path:
    """Check that ``path`` is a folder this process can write in, or can be created; create nothing.

    Args:
        path: the output folder a command is about to write.
        option: how messages name the setting (e.g. ``--out (out_dir)``).

    Returns:
        The path, with ``~`` expanded.

    Raises:
        DermkitError: ``path`` is a file, sits below a file, or is in a folder without write
            permission; the message names the path and what to do.
    """
    out = Path(path).expanduser()
    if out.exists():
        if not out.is_dir():
            raise DermkitError(f"{option} {out} is a file, not a folder. Pass a folder path (it is created if "
                               "missing), or move the file away.")
        if not os.access(out, os.W_OK | os.X_OK):
            raise DermkitError(f"{option} {out} is not writable (permission denied). Pass a folder you can write to.")
        return out
    existing = out.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise DermkitError(f"{option} {out} cannot be created: {existing} is a file, not a folder. Pass another "
                           "folder path.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise DermkitError(f"{option} {out} cannot be created: no write permission in {existing}. Pass a folder "
                           "you can write to.")
    return out


def write_run_info(out_dir: str | Path, cfg: Any, seed: int, extra: dict[str, Any] | None = None,
                   kind: str = "") -> Path:
    """Write ``config.yaml`` (the resolved config) and ``run.json`` into ``out_dir``.

    ``run.json`` holds the command that wrote the folder (``kind``, e.g. ``finetune.evaluate``: what
    :func:`dermkit.out_folder.read_contents` recognises a folder by), the seed, the git commit,
    package versions, the command line, the Python version and the start time, plus ``extra`` (for
    example the split hash).

    Raises:
        DermkitError: ``out_dir`` is a file or cannot be created or written (see :func:`check_out_dir`).
    """
    out = check_out_dir(out_dir, "Output folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(to_yaml(cfg))
    except OSError as err:  # e.g. a full disk, or a folder made read-only since the check
        raise DermkitError(f"Cannot write the run record in {out}: {err.strerror or err}. Pass another output "
                           "folder.") from None
    info = {
        **({"kind": kind} if kind else {}),
        "seed": seed,
        "git_commit": git_commit(),
        "versions": package_versions(),
        "python": platform.python_version(),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(extra or {}),
    }
    path = out / RUN_INFO
    try:
        path.write_text(json.dumps(info, indent=2) + "\n")
    except OSError as err:
        raise DermkitError(f"Cannot write {path}: {err.strerror or err}. Pass another output folder.") from None
    return path
