"""Run a stage's command under a probe, for the DDP tests: ``python -m tests.ddp_probe PROBE_DIR MODULE [ARGS...]``.

Lightning's DDP launcher re-runs this very command line for every further process (with
``LOCAL_RANK`` set), so each rank runs the stage's ``main(ARGS)`` under the same probe:

* an audit hook (:func:`sys.addaudithook`) records every file the process opens for writing, or
  renames onto, below ``$PROBE_WATCH`` (the run folder); ``PROBE_DIR/writes_rank<R>.json`` lists
  them when the process exits, so a test can tell which process wrote which output file;
* a callback added to every ``pl.Trainer`` records what the loss saw: for lightly's
  ``NTXentLoss`` the two projections and the loss of the first step; for ``DINOLoss`` the teacher
  outputs of each centre update and the final centre (``PROBE_DIR/probe_rank<R>.pt``);
* with ``$PROBE_SLOW_AFTER=N`` every step after step N sleeps one second, so a test can kill the
  run between two checkpoints on a fast machine without a wall-clock assumption on a slow one.

The test helpers below start such runs and read what they recorded.
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _rank() -> int:
    return int(os.environ.get("LOCAL_RANK") or os.environ.get("RANK") or 0)


def _install_write_audit(probe_dir: Path, watch: Path) -> None:
    """Record files opened for writing (or renamed onto) below ``watch``; dump them at exit."""
    written: list[str] = []
    state = {"on": True}
    root = os.path.abspath(watch)

    def below(path: Any) -> str | None:
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if not isinstance(path, (str, os.PathLike)):
            return None  # a file descriptor
        full = os.path.abspath(os.fspath(path))
        return full if full == root or full.startswith(root + os.sep) else None

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if not state["on"]:
            return
        if event == "open":
            path, mode, flags = args
            writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & WRITE_FLAGS)
            if writing and (full := below(path)):
                written.append(full)
        elif event in ("os.rename", "os.replace") and (full := below(args[1])):
            written.append(full)

    def dump() -> None:
        state["on"] = False
        (probe_dir / f"writes_rank{_rank()}.json").write_text(json.dumps(written))

    sys.addaudithook(hook)
    atexit.register(dump)


def _probe_callback(probe_dir: Path) -> Any:
    """A Lightning callback recording what the SSL losses saw (see the module docstring)."""
    import pytorch_lightning as pl
    import torch
    from lightly.loss import DINOLoss, NTXentLoss

    class Probe(pl.Callback):
        def __init__(self) -> None:
            self.records: dict[str, Any] = {"ntxent": [], "dino_teacher_out": []}
            self.slow_after = int(os.environ.get("PROBE_SLOW_AFTER", "0"))

        def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            criterion = getattr(pl_module, "criterion", None)
            records = self.records
            if isinstance(criterion, NTXentLoss):
                forward = criterion.forward
                records["temperature"] = float(criterion.temperature)
                records["gather_distributed"] = bool(criterion.gather_distributed)

                def recorded_forward(out0: torch.Tensor, out1: torch.Tensor) -> torch.Tensor:
                    loss = forward(out0, out1)
                    records["ntxent"].append((out0.detach().float().clone(), out1.detach().float().clone(),
                                              loss.detach().float().clone()))
                    return loss

                criterion.forward = recorded_forward  # type: ignore[method-assign]
            if isinstance(criterion, DINOLoss):
                update_center = criterion.update_center
                records["center_momentum"] = float(criterion.center_momentum)
                records["initial_center"] = criterion.center.detach().float().clone()

                def recorded_update(teacher_out: torch.Tensor) -> None:
                    records["dino_teacher_out"].append(teacher_out.detach().float().clone())
                    update_center(teacher_out)

                criterion.update_center = recorded_update  # type: ignore[method-assign]

        def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
            if self.slow_after and trainer.global_step >= self.slow_after:
                time.sleep(1.0)

        def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            criterion = getattr(pl_module, "criterion", None)
            if isinstance(criterion, DINOLoss):
                self.records["final_center"] = criterion.center.detach().float().clone()
            self.records.update(rank=trainer.global_rank, world_size=trainer.world_size)
            torch.save(self.records, probe_dir / f"probe_rank{trainer.global_rank}.pt")

    return Probe()


def _add_probe_to_trainers(probe_dir: Path) -> None:
    import pytorch_lightning as pl

    init = pl.Trainer.__init__

    def probed_init(self: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), _probe_callback(probe_dir)]
        init(self, *args, **kwargs)

    pl.Trainer.__init__ = probed_init  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    probe_dir, module, stage_args = Path(args[0]), args[1], args[2:]
    probe_dir.mkdir(parents=True, exist_ok=True)
    if os.environ.get("PROBE_WATCH"):
        _install_write_audit(probe_dir, Path(os.environ["PROBE_WATCH"]))
    _add_probe_to_trainers(probe_dir)
    return int(importlib.import_module(module).main(stage_args))


# ---------------------------------------------------------------------------------------------
# helpers of the tests


def probe_env(cache: Path, watch: Path, **extra: str) -> dict[str, str]:
    """The environment of a probed run: one OpenMP thread per process (2 loaded cores), the test's cache."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", DERMKIT_CACHE=str(cache), PROBE_WATCH=str(watch),
               PYTHONPATH=str(REPO_ROOT), **extra)
    return env


def command(probe_dir: Path, module: str, args: list[str]) -> list[str]:
    return [sys.executable, "-m", "tests.ddp_probe", str(probe_dir), module, *args]


def run_probed(probe_dir: Path, module: str, args: list[str], cache: Path, watch: Path,
               timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run ``module``'s command under the probe to completion; fails with its output when it fails."""
    done = subprocess.run(command(probe_dir, module, args), cwd=REPO_ROOT, env=probe_env(cache, watch),
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{module} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return done


def kill_after_checkpoint(probe_dir: Path, module: str, args: list[str], cache: Path, watch: Path,
                          checkpoint: Path, min_step: int, timeout: float = 900) -> int:
    """Start a probed run slowed after ``min_step``, SIGKILL all its processes once ``checkpoint``
    holds a step >= ``min_step``; returns that step."""
    import torch

    proc = subprocess.Popen(command(probe_dir, module, args), cwd=REPO_ROOT,
                            env=probe_env(cache, watch, PROBE_SLOW_AFTER=str(min_step)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    step = -1
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if checkpoint.is_file():
                try:
                    step = int(torch.load(checkpoint, map_location="cpu", weights_only=False)["global_step"])
                except Exception:  # being written: read it again
                    step = -1
                if step >= min_step:
                    break
            time.sleep(0.2)
    finally:
        # The whole session: the launcher and the DDP process it started.
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert step >= min_step, f"{module} exited ({proc.returncode}) or timed out before a checkpoint at step {min_step}"
    return step


def writes(probe_dir: Path, rank: int, watch: Path) -> list[str]:
    """Files below ``watch`` (the run folder) that process ``rank`` opened for writing, relative."""
    listed = json.loads((probe_dir / f"writes_rank{rank}.json").read_text())
    root = os.path.abspath(watch)
    return sorted({os.path.relpath(p, root) for p in listed})


def tree(folder: Path) -> list[str]:
    """Every file below ``folder``, relative, sorted."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


if __name__ == "__main__":
    raise SystemExit(main())
