"""One resume behaviour for every stage: where run folders live, and whether a folder may be resumed.

Re-running a stage's command with the same run folder continues the run from
``<run>/checkpoints/last.ckpt``. Before it does, :func:`resume_checkpoint` compares the folder's
recorded ``config.yaml`` (and the split hash in ``run.json``) with this invocation's settings: a
run whose data or settings changed is refused with every differing key named (``old -> new``),
never silently continued with other settings. ``--restart`` (:data:`RESTART_FLAG`, the same
flag in every stage) starts a new run in that folder instead, after moving the old run's files
into ``<run>/replaced-<date>-<time>/`` (nothing is deleted).

What may differ on resume (:data:`NEUTRAL_KEYS`) are keys that cannot change what is trained:
where the run and caches live, data-loader workers, logging, checkpoint and snapshot frequency,
the accelerator (a run started on a lent GPU goes on on the CPU, and back), and how finetune's
report of the finished run is drawn.
The run's length is not among them: every stage spreads its cosine learning-rate schedule (and
DINO its momentum schedule) over the run's total steps, so a longer or shorter run is a
different run, not a continuation (``--restart``, or a new ``--out`` with ``model.init`` from
this run's backbone). Nor are ``trainer.devices`` and ``trainer.num_nodes``: with DDP they set
the global batch and so the number of steps the schedules are spread over.

A key missing from an old ``config.yaml`` (written before the key existed) counts as its
default, so adding a config key never makes an old run unresumable; where a key's default has
changed since, it counts as the value runs had before the key existed (:data:`LEGACY_DEFAULTS`).

One process per run folder: :func:`claim_run_folder` (called by :func:`resume_checkpoint`, and by
the grid for its own folder) holds an exclusive lock on ``<run>/.lock`` until the process exits, so
a second command started on a folder in use (a resume typed while the run still goes on) stops with
an error naming the first process, instead of both writing one checkpoint and one log. The kernel
drops the lock when its process dies, ``kill -9`` included, so no stale lock is left behind.

Run folders: every default run folder lies under :func:`runs_dir` (``$DERMKIT_RUNS``, else
``runs/`` in the working directory), so long runs can live outside the repository.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from omegaconf import OmegaConf

from dermkit.checkpoint import LAST, PREVIOUS, check_resumable
from dermkit.config import Flag, to_container
from dermkit.console import console
from dermkit.errors import DermkitError

RUNS_ENV = "DERMKIT_RUNS"
RESTART_KEY = "restart"
RESTART_FLAG = Flag("--restart", RESTART_KEY, "start a new run in the run folder even if it holds one; the old "
                    "run's files move to <run>/replaced-<date>-<time>/ (drop the flag to resume later)", bool)
REPLACED_PREFIX = "replaced-"
# Keys that cannot change what a run trains, so they may differ between a run and its resumption.
# ``out`` and ``checkpoint_every`` are the spellings before issue 14 (``out_dir``,
# ``checkpoint_every_n_steps``), which older run folders' config.yaml files hold.
NEUTRAL_KEYS = frozenset({
    "out", "out_dir", RESTART_KEY, "resume",  # the run folder itself and how it is entered
    "data.cache_dir", "data.num_workers",  # where decoded images are kept and how many processes read them
    "trainer.strategy", "trainer.log_every_n_steps",
    # GPU or CPU: the same steps on the same data with the same settings (float rounding and the device's
    # random streams aside, as with thread counts); the device count is not neutral (see above)
    "trainer.accelerator",
    "checkpoint_every", "checkpoint_every_n_steps", "snapshot_every_n_epochs",
    # finetune's HTML report of the test split: written after training, from the same predictions
    "report.bootstrap", "report.seed", "report.explain", "report.cam_layer", "report.mistakes",
})
# What a key missing from an old config.yaml means when that is not today's default (flat keys; each
# applies to the stages whose schema has the key). A run must not resume silently with other settings:
# - data.augment_on (ssl.pretrain, finetune.train): runs recorded before the key existed augmented in
#   the loader workers; the default became device later (issue 13).
# - augment.rotation (finetune.train): folders written before the augment section existed trained with
#   any-angle rotation; the default became none (issue 11's recipe).
# - model.prediction_type (synth.train): generators trained before the key existed predicted the noise.
LEGACY_DEFAULTS: dict[str, Any] = {
    "data.augment_on": "workers",
    "augment.rotation": 180.0,
    "model.prediction_type": "epsilon",
}
# Keys that set a run's length; named in the refusal, since extending a run is a common wish.
LENGTH_KEYS = ("trainer.max_epochs", "trainer.max_steps", "trainer.limit_train_batches")


LOCK_FILE = ".lock"
# Run folders this process holds (resolved path -> the open lock file): held until the process exits,
# and a folder this process already holds (a stage called twice in one process, as tests do) is its own.
_CLAIMED: dict[Path, IO[str]] = {}


def claim_run_folder(run_dir: str | Path) -> None:
    """Lock ``run_dir`` for this process until it exits; creates the folder.

    Under DDP only the first process claims it (the others are the same run).

    Raises:
        DermkitError: another process holds the folder; the message names it (pid, host, since when).
    """
    run = Path(run_dir).expanduser().resolve()
    if run in _CLAIMED or not _first_process():
        return
    run.mkdir(parents=True, exist_ok=True)
    handle = (run / LOCK_FILE).open("a+")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "a process that has not written its name yet"
        handle.close()
        raise DermkitError(f"{run} is in use by another process ({holder}). Two processes in one run folder "
                           "would write one checkpoint and one log: wait for it to finish, or stop it "
                           "(kill PID: it saves its state) and run this command again to resume.") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    handle.flush()
    _CLAIMED[run] = handle


def release_run_folder(run_dir: str | Path) -> None:
    """Drop this process's claim on ``run_dir`` (:func:`claim_run_folder`), e.g. before deleting the folder."""
    handle = _CLAIMED.pop(Path(run_dir).expanduser().resolve(), None)
    if handle is not None:
        handle.close()


def runs_dir() -> Path:
    """The base of every default run folder: ``$DERMKIT_RUNS`` if set, else ``runs`` (relative)."""
    return Path(os.environ.get(RUNS_ENV) or "runs").expanduser()


def default_run_dir(*parts: str) -> str:
    """``runs_dir()/<parts...>`` as a string (for dataclass defaults)."""
    return str(runs_dir().joinpath(*parts))


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists stay values)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def changed_settings(old: Mapping[str, Any], new: Mapping[str, Any], defaults: Mapping[str, Any],
                     neutral: frozenset[str] = NEUTRAL_KEYS) -> dict[str, tuple[Any, Any]]:
    """Keys whose value differs between a recorded config and this one: ``{key: (old, new)}``.

    Args:
        old: the run folder's recorded config (nested).
        new: this invocation's config (nested).
        defaults: values of keys an old config may lack (nested; usually the schema's defaults).
        neutral: keys that may differ (see :data:`NEUTRAL_KEYS`).
    """
    old_flat, new_flat, default_flat = flatten(old), flatten(new), flatten(defaults)
    changed = {}
    for key, value in new_flat.items():
        if key in neutral:
            continue
        before = old_flat[key] if key in old_flat else default_flat.get(key)
        if before != value:
            changed[key] = (before, value)
    return changed


def move_aside(run_dir: Path) -> Path | None:
    """Move the run folder's files into ``replaced-<date>-<time>/`` inside it; returns that folder."""
    # The lock stays: this process holds it, and a moved lock file would no longer exclude anyone.
    entries = ([p for p in run_dir.iterdir() if not p.name.startswith(REPLACED_PREFIX) and p.name != LOCK_FILE]
               if run_dir.is_dir() else [])
    if not entries:
        return None
    target = run_dir / f"{REPLACED_PREFIX}{time.strftime('%Y%m%d-%H%M%S')}"
    suffix = 1
    while target.exists():
        target = run_dir / f"{REPLACED_PREFIX}{time.strftime('%Y%m%d-%H%M%S')}-{suffix}"
        suffix += 1
    target.mkdir()
    for entry in entries:
        entry.rename(target / entry.name)
    return target


def resume_checkpoint(run_dir: str | Path, cfg: Any, schema: type, split_hash: str | None = None,
                      unread: frozenset[str] = frozenset()) -> Path | None:
    """The checkpoint a stage resumes from, or None for a new run; refuses a run of other settings.

    Call it before the stage writes ``config.yaml``/``run.json``. It first claims the folder for this
    process (:func:`claim_run_folder`). With ``cfg.restart`` set, the folder's old files move aside
    (see :func:`move_aside`) and a new run starts.

    Args:
        run_dir: the stage's run folder.
        cfg: this invocation's resolved config (its schema has a ``restart`` key).
        schema: the config dataclass (its defaults stand in for keys an old ``config.yaml`` lacks).
        split_hash: this run's split hash, compared with the one in ``run.json``.
        unread: keys of the schema the stage does not read, which may differ too.

    Returns:
        ``<run>/checkpoints/last.ckpt`` to resume from, or None when there is none.

    Raises:
        DermkitError: another process runs in the folder, the checkpoint is damaged, the folder's
            config is missing, or a setting (or the split) differs; the message names each key as
            ``key: old -> new``.
    """
    run = Path(run_dir)
    claim_run_folder(run)
    last = run / "checkpoints" / LAST
    restart_hint = f"add --restart to start over in {run} (the old run moves into {run}/{REPLACED_PREFIX}<time>/)"
    if getattr(cfg, RESTART_KEY, False):
        if _first_process():  # DDP ranks re-run the command; only the first one moves files
            moved = move_aside(run)
            if moved is not None:
                console.print(f"--restart: moved the previous run's files to {moved}")
        return None
    if not last.is_file():
        # A run stopped before its first checkpoint: nothing to continue; a stale copy of an older
        # run's checkpoint must not be mistaken for this run's later.
        if _first_process():
            (last.parent / PREVIOUS).unlink(missing_ok=True)
        return None
    check_resumable(last, restart_hint)
    recorded = run / "config.yaml"
    if not recorded.is_file():
        raise DermkitError(f"{last} exists but {recorded} does not, so the run's settings cannot be checked: "
                           f"{restart_hint}, or choose another --out.")
    old = OmegaConf.to_container(OmegaConf.load(recorded), resolve=True)
    defaults = flatten(to_container(OmegaConf.structured(schema)))
    defaults.update({key: value for key, value in LEGACY_DEFAULTS.items() if key in defaults})
    changed = changed_settings(old if isinstance(old, dict) else {}, to_container(cfg), defaults,
                               NEUTRAL_KEYS | unread)
    old_split = _recorded_split_hash(run)
    if split_hash is not None and old_split is not None and old_split != split_hash:
        changed["split hash (data, split or label fraction)"] = (old_split, split_hash)
    if changed:
        listed = "; ".join(f"{key}: {before!r} -> {after!r}" for key, (before, after) in changed.items())
        why = (" A run's length sets its learning-rate schedule, so a longer or shorter run is a new run."
               if any(key in LENGTH_KEYS for key in changed) else "")
        raise DermkitError(f"{run} holds a run with other settings ({listed}).{why} Re-run with the recorded "
                           f"settings ({recorded}) to resume it, {restart_hint}, or choose another --out.")
    return last


def _first_process() -> bool:
    """Whether this is the first (or only) process of a run; Lightning's DDP ranks re-run the command.

    Reads the rank variables Lightning reads, without importing it (configs import this module).
    """
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if os.environ.get(key):
            return os.environ[key] == "0"
    return True


def _recorded_split_hash(run: Path) -> str | None:
    try:
        value = json.loads((run / "run.json").read_text()).get("split_hash")
    except (OSError, ValueError, AttributeError):
        return None
    return str(value) if value else None
