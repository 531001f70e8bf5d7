"""Steps of the benchmark pipeline, their keys, and how a finished step is recognised (resume).

A :class:`Step` is one stage command (``python -m <module> <args>``) writing into its own folder.
Its *key* is a SHA-256 over everything that determines its result: the module, its arguments
(with the output root written as ``<out>`` so a moved folder stays valid), the data fingerprint
(dataset, image count, split hash, image size) and the digests of the files its input steps wrote.
A step is *done* when ``done.json`` in its folder holds the same key and every declared output
file exists with the digest recorded there. A done step is never run again; a changed setting
changes the key, and the stale folder is cleared before the step runs again (so a stage that
resumes from its own checkpoints never resumes someone else's). An interrupted step keeps its
folder (``started.json`` holds the same key), so the stage's own resume picks up where it stopped.
``started.json`` also keeps the wall and CPU time of every attempt that ended without finishing
(stopped or failed), so ``done.json`` records what a step cost over all its attempts under its key,
and counts the attempts whose time was lost (the grid itself was killed).

:class:`Cell` names one fine-tuning run of the grid.

Some arguments can only be known once an input step has finished: the ``filtered`` arm's filter
step reads the best checkpoint of a ``finetune.train`` cell, whose file name holds the best epoch.
Such an argument is a placeholder (:func:`best_checkpoint_arg`) in ``args``, which the key hashes,
and is replaced by the file when the step is launched (:meth:`Step.launch_args`); the input's
output digests in the key already change whenever that cell is re-run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dermkit.checkpoint import file_digest
from dermkit.out_folder import read_json_object
from bench.grid.config import ARM_REAL, ARM_SYNTH, parse_arm

# Bump when the meaning of a key changes (every step then runs again).
KEY_VERSION = 1
# Arguments whose spelling changed without changing what the step does: keys hash the old spelling,
# so steps finished before the rename stay done. Issue 14 renamed synth.train's ``out`` and
# ``checkpoint_every`` (``{module: {new prefix: old prefix}}``).
KEY_SPELLINGS: dict[str, dict[str, str]] = {
    "synth.train": {"out_dir=": "out=", "checkpoint_every_n_steps=": "checkpoint_every="},
}
# Arguments a key hashes as absent: before issue 13 the grid passed no data.augment_on and the stages
# augmented in the workers (their default then); it now passes the value always, so a step finished
# then keeps its key.
KEY_OMITTED = frozenset({"data.augment_on=workers"})
# Where a step runs is not what it computes: a key hashes any ``trainer.accelerator=...`` as
# ``trainer.accelerator=cpu``, the spelling of every key made before this rule, so a step started on a
# lent GPU is the same step as on the CPU (it resumes here from its checkpoint, or counts as done) and
# no step finished earlier changes its key. ``dermkit.resume`` lets the stage itself resume across the
# change (``trainer.accelerator`` is neutral there). ``run.json`` still records the machine.
KEY_ACCELERATOR = "trainer.accelerator="
KEY_ACCELERATOR_SPELLING = "trainer.accelerator=cpu"
DONE_FILE = "done.json"
BEST_CHECKPOINT_PREFIX = "<best checkpoint of "  # + step name + ">": see best_checkpoint_arg
STARTED_FILE = "started.json"
LOG_FILE = "stage.log"


def stable_hash(value: Any) -> str:
    """SHA-256 (hex) of a JSON-serialisable value, independent of dict order."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class Cell:
    """One fine-tuning run of the grid.

    Attributes:
        fraction: label fraction of the training split.
        init: ``random``, ``simclr``, ``dino`` or ``imagenet``.
        synthetic: whether generated minority images are added to the training data.
        seed: fine-tuning seed.
        arm: the training-data arm (``grid.arms``: ``real``, ``oversample``, ``synth2``,
            ``filtered``, ...); empty: ``synth`` when ``synthetic`` else ``real``, the two arms of
            the older ``grid.synthetic`` axis.

    Raises:
        ValueError: an unknown arm, or ``synthetic`` contradicting it.
    """

    fraction: float
    init: str
    synthetic: bool
    seed: int
    arm: str = ""

    def __post_init__(self) -> None:
        if not self.arm:  # frozen: set the derived default through object.__setattr__
            object.__setattr__(self, "arm", ARM_SYNTH if self.synthetic else ARM_REAL)
        if parse_arm(self.arm).synthetic != bool(self.synthetic):
            raise ValueError(f"cell arm {self.arm!r} contradicts synthetic={self.synthetic}")

    @property
    def cell_id(self) -> str:
        """Folder name, e.g. ``f0.1-simclr-synth-s2``, ``f1-random-real-s0`` or ``f1-random-synth8-s0``.

        The older arms ``real`` and ``synth`` keep the names they had, so finished cells stay done.
        """
        return f"f{self.fraction:g}-{self.init}-{self.arm}-s{self.seed}"

    def as_dict(self) -> dict[str, Any]:
        return {"fraction": self.fraction, "init": self.init, "synthetic": self.synthetic, "arm": self.arm,
                "seed": self.seed}


@dataclass
class Step:
    """One stage command and the files it must leave behind.

    Attributes:
        name: unique name, shown in the live table (e.g. ``pretrain/simclr``, ``cell/f1-random-real-s0``).
        kind: ``pretrain``, ``synth-train``, ``synth-generate``, ``synth-evaluate``, ``synth-filter`` or ``cell``
            (what the table groups by).
        module: the stage's module, run as ``python -m <module>``.
        args: the stage's arguments (``build_args`` inputs are already resolved to paths).
        out_dir: the step's folder (the stage writes here; ``done.json`` and the log live here).
        outputs: files, relative to ``out_dir``, that a finished step has written.
        inputs: steps whose outputs this one reads (their output digests enter the key).
        cell: the grid cell, for ``cell`` steps.
        key_extra: further values that enter the key, e.g. the digest of a local weights file
            that no step produces.
        key_paths: paths in ``args`` that the key hashes under a name instead (``{path: name}``),
            e.g. a given weights file keyed by its digest in ``key_extra``: the same file at another
            path (a new machine) keeps the key.
    """

    name: str
    kind: str
    module: str
    args: list[str]
    out_dir: Path
    outputs: tuple[str, ...]
    inputs: list[Step] = field(default_factory=list)
    cell: Cell | None = None
    key_extra: dict[str, str] = field(default_factory=dict)
    key_paths: dict[str, str] = field(default_factory=dict)

    def command(self, python: str) -> list[str]:
        """The full command line with the interpreter ``python`` (placeholders resolved: inputs must be done)."""
        return [python, "-m", self.module, *self.launch_args()]

    def launch_args(self) -> list[str]:
        """``args`` with every :func:`best_checkpoint_arg` placeholder replaced by its file.

        Raises:
            RuntimeError: a placeholder names a step that is not an input of this one.
        """
        inputs = {step.name: step for step in self.inputs}
        resolved = []
        for arg in self.args:
            if arg.startswith(BEST_CHECKPOINT_PREFIX) and arg.endswith(">"):
                name = arg[len(BEST_CHECKPOINT_PREFIX):-1]
                if name not in inputs:
                    raise RuntimeError(f"{self.name}: {arg} names a step that is not one of its inputs")
                arg = str(best_checkpoint(inputs[name].out_dir))
            resolved.append(arg)
        return resolved

    def _key_arg(self, arg: str, root: str) -> str:
        """``arg`` as the key hashes it: old spelling, output root as ``<out>``, ``key_paths`` by name."""
        arg = key_spelling(self.module, arg).replace(root, "<out>")
        for path, name in self.key_paths.items():
            arg = arg.replace(path, name)
        return arg

    def key(self, out_root: Path, data_fingerprint: dict[str, Any]) -> str:
        """The step's key; every input must be done (its ``done.json`` supplies the digests).

        Raises:
            RuntimeError: an input step has not finished.
        """
        root = str(out_root)
        inputs = {}
        for step in self.inputs:
            record = read_done(step)
            if record is None:
                raise RuntimeError(f"input {step.name} of {self.name} has not finished")
            inputs[step.name] = record["outputs"]
        return stable_hash({
            "version": KEY_VERSION,
            "module": self.module,
            "args": [self._key_arg(a, root) for a in self.args if a not in KEY_OMITTED],
            "out_dir": str(self.out_dir).replace(root, "<out>"),
            "data": data_fingerprint,
            "inputs": inputs,
            "extra": self.key_extra,
        })


def best_checkpoint_arg(step: Step) -> str:
    """A placeholder argument for the best checkpoint of ``step`` (a ``finetune.train`` cell, which must
    be an input of the step holding the placeholder); resolved at launch by :meth:`Step.launch_args`."""
    return f"{BEST_CHECKPOINT_PREFIX}{step.name}>"


def best_checkpoint(run_dir: Path) -> Path:
    """The checkpoint whose test metrics a finished ``finetune.train`` run recorded.

    ``metrics.json`` names it (``best_checkpoint``, best epoch by validation balanced accuracy); it
    is looked up in this run's ``checkpoints/`` by file name, so a moved benchmark folder still
    resolves. When the run recorded none (resumed after its best file was replaced), it tested its
    last weights: ``checkpoints/last.ckpt``.

    Raises:
        RuntimeError: no readable ``metrics.json``.
    """
    try:
        best = json.loads((run_dir / "metrics.json").read_text()).get("best_checkpoint")
    except (OSError, ValueError, AttributeError) as err:
        raise RuntimeError(f"cannot read the best checkpoint of {run_dir} from its metrics.json: {err}") from None
    return run_dir / "checkpoints" / (Path(best).name if best else "last.ckpt")


def key_spelling(module: str, arg: str) -> str:
    """``arg`` as a step key hashes it: renamed keys in their old spelling (see :data:`KEY_SPELLINGS`), the
    accelerator as ``cpu`` (see :data:`KEY_ACCELERATOR`)."""
    if arg.startswith(KEY_ACCELERATOR):
        return KEY_ACCELERATOR_SPELLING
    for new, old in KEY_SPELLINGS.get(module, {}).items():
        if arg.startswith(new):
            return old + arg[len(new):]
    return arg


def read_done(step: Step) -> dict[str, Any] | None:
    """The step's ``done.json`` record if it exists and every output still matches it, else None."""
    path = step.out_dir / DONE_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        outputs = record["outputs"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    for name in step.outputs:
        file = step.out_dir / name
        if not file.is_file() or outputs.get(name) != file_digest(file):
            return None
    return record


def is_done(step: Step, key: str) -> bool:
    """Whether the step finished with this key and its outputs are intact."""
    record = read_done(step)
    return record is not None and record.get("key") == key


def adopt_finished(step: Step, key: str, source: Path, extra: tuple[str, ...] = ()) -> bool:
    """Count ``step`` as done from a copy of its finished folder, without running it.

    ``source`` is laid out as the step's own folder (``done.json`` and the declared outputs), for
    example a committed copy of a grid's ``cells/<cell>/`` (``--export``) brought to a new machine.
    The copy is taken only if it finished under the same ``key`` (same settings, data and inputs)
    and every output still has the digest its ``done.json`` recorded; then the step's folder is
    cleared and ``done.json``, the outputs and the ``extra`` files (paths relative to ``source``,
    e.g. a checkpoint another step reads) are copied into it. Returns whether it was taken.
    """
    if is_done(step, key):
        return False
    record = read_done(dataclasses.replace(step, out_dir=source))
    if record is None or record.get("key") != key:
        return False
    if step.out_dir.exists():  # an interrupted or stale run here: its checkpoints are not the copy's
        shutil.rmtree(step.out_dir)
    copy_finished(step, source, step.out_dir, extra)
    return True


def copy_finished(step: Step, source: Path, dest: Path, extra: tuple[str, ...] = ()) -> None:
    """Copy a finished step's ``done.json``, declared outputs and the ``extra`` files that exist
    from ``source`` to ``dest`` (both laid out as the step's folder)."""
    for name in (DONE_FILE, *step.outputs, *(e for e in extra if (source / e).is_file())):
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / name, target)


def prepare_folder(step: Step, key: str) -> bool:
    """Get the step's folder ready to run under ``key``; returns whether a stale folder was cleared.

    A folder started or finished under another key is removed (its checkpoints belong to other
    settings); a folder started under this key is kept, so the stage resumes from its checkpoints,
    and so are the times of its earlier attempts. An earlier attempt still marked as running was
    ended without :func:`record_attempt` (the grid was killed): it is counted as ``unrecorded``.
    """
    cleared = False
    started = read_json_object(step.out_dir / STARTED_FILE)
    if step.out_dir.exists():
        marks = [read_json_object(step.out_dir / mark) for mark in (STARTED_FILE, DONE_FILE)]
        keys = {mark.get("key") for mark in marks if mark}
        if keys != {key}:
            shutil.rmtree(step.out_dir)
            cleared = True
            started = {}
    step.out_dir.mkdir(parents=True, exist_ok=True)
    (step.out_dir / DONE_FILE).unlink(missing_ok=True)
    record = {"key": key, "started": time.time(), "running": True,
              "attempts": started.get("attempts", []),
              "unrecorded": int(started.get("unrecorded", 0)) + bool(started.get("running"))}
    (step.out_dir / STARTED_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return cleared


def record_attempt(step: Step, seconds: float, cpu_seconds: float, outcome: str) -> None:
    """Keep the wall and CPU time of an attempt that ended without finishing (``stopped``, ``failed``)
    in ``started.json``, for :func:`mark_done` to add to the attempt that finishes."""
    record = read_json_object(step.out_dir / STARTED_FILE)
    if not record:  # the folder was never prepared: nothing to attach the time to
        return
    record["attempts"] = [*record.get("attempts", []),
                          {"seconds": round(seconds, 2), "cpu_seconds": round(cpu_seconds, 2), "outcome": outcome}]
    record["running"] = False
    (step.out_dir / STARTED_FILE).write_text(json.dumps(record, indent=2) + "\n")


def mark_done(step: Step, key: str, seconds: float, cpu_seconds: float = 0.0) -> dict[str, Any]:
    """Write ``done.json`` (key, output digests, wall and CPU time, command) after a successful run.

    ``seconds`` and ``cpu_seconds`` are those of the attempt that finished; the record holds their sum
    with the earlier attempts under the same key (:func:`record_attempt`), ``attempts`` (how many) and,
    when some attempt's time was lost, ``unrecorded_attempts``: the sums are then lower bounds.

    Raises:
        FileNotFoundError: the stage exited cleanly but did not write a declared output.
    """
    missing = [name for name in step.outputs if not (step.out_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{step.name} finished without writing {', '.join(missing)} in {step.out_dir}")
    started = read_json_object(step.out_dir / STARTED_FILE)
    if started.get("key") != key:  # no attempt of this key recorded (a folder prepared before times were kept)
        started = {}
    earlier = started.get("attempts", [])
    unrecorded = int(started.get("unrecorded", 0))
    record = {
        "key": key,
        "step": step.name,
        "command": [step.module, *step.args],
        "outputs": {name: file_digest(step.out_dir / name) for name in step.outputs},
        "seconds": round(seconds + sum(a["seconds"] for a in earlier), 2),
        "cpu_seconds": round(cpu_seconds + sum(a["cpu_seconds"] for a in earlier), 2),
        "attempts": len(earlier) + 1 + unrecorded,
        **({"unrecorded_attempts": unrecorded} if unrecorded else {}),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (step.out_dir / DONE_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return record
