"""A generator folder from a training run's checkpoint, while it trains: ``python -m synth.snapshot``.

A generator of 20,000 steps trains for hours; its folder (:mod:`synth.generator`) is written only
at the end. This command writes one from the EMA weights of a checkpoint of the run (by default
``RUN/checkpoints/last.ckpt``, which the running process replaces atomically, so it can be read at
any time), so that ``synth.generate`` and ``synth.evaluate`` can look at the generator part-way.
``steps_trained`` in its ``dermkit_generator.json`` is the checkpoint's step: a part-trained
generator is never mistaken for the finished one (and its weights hash differs, so
``synth.generate`` keeps its images apart).

Example::

    python -m synth.snapshot --run runs/synth/ham --out runs/synth/ham-snap
    python -m synth.generate --model runs/synth/ham-snap --out runs/synth/ham-snap/samples --class mel --n 16
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf

from dermkit.checkpoint import LAST, check_readable
from dermkit.config import Flag, parse_config
from dermkit.console import console, entry_point
from dermkit.errors import DermkitError
from dermkit.flags import out_flag
from dermkit.out_folder import replacing
from dermkit.runinfo import write_run_info
from synth.generator import save_generator
from synth.model import unet_config
from synth.train import DiffusionModule, SynthTrainConfig, generator_info

RUN_FILES = ("config.yaml", "run.json", "train_state.json")
KIND = "synth.snapshot"  # run.json's kind (dermkit.out_folder)


@dataclass
class SnapshotConfig:
    """``python -m synth.snapshot``.

    Keys:
        run: a ``synth.train`` run folder (it holds ``config.yaml``, ``run.json``,
            ``train_state.json`` and ``checkpoints/``).
        checkpoint: the checkpoint to read; empty: ``run/checkpoints/last.ckpt``.
        out_dir: the generator folder to write (replaced whole, with ``config.yaml`` and ``run.json``;
            subfolders of other commands' outputs, e.g. a generation made from the snapshot, are kept).
    """

    run: str = ""
    checkpoint: str = ""
    out_dir: str = ""


FLAGS = [
    Flag("--run", "run", "synth.train run folder (may be training now)"),
    Flag("--checkpoint", "checkpoint", "checkpoint of the run (default: RUN/checkpoints/last.ckpt)"),
    out_flag("generator folder to write (a snapshot written there before is replaced)", command=KIND, replaces=True),
]


def _run_files(run: Path) -> tuple[SynthTrainConfig, dict, dict]:
    """The run's config, ``run.json`` and ``train_state.json``.

    Raises:
        DermkitError: the folder or one of its files is missing or unreadable.
    """
    if not run.is_dir():
        raise DermkitError(f"Run folder {run} does not exist. Pass --run with the --out folder of a "
                           "python -m synth.train run.")
    missing = [name for name in RUN_FILES if not (run / name).is_file()]
    if missing:
        raise DermkitError(f"{run} is not a synth.train run folder: {', '.join(missing)} missing.")
    schema = OmegaConf.structured(SynthTrainConfig)
    try:
        cfg = OmegaConf.to_object(OmegaConf.merge(schema, OmegaConf.load(run / "config.yaml")))
        run_json = json.loads((run / "run.json").read_text())
        state = json.loads((run / "train_state.json").read_text())
    except Exception as err:  # omegaconf's and json's errors: the message says which file
        raise DermkitError(f"Cannot read the run files of {run} ({type(err).__name__}: {err}).") from None
    return cfg, run_json, state


def snapshot(cfg: SnapshotConfig) -> Path:
    """Write a generator folder from a run's checkpoint; returns the folder.

    Raises:
        DermkitError: no run or output folder given, a run file missing, or the checkpoint missing,
            damaged or without the EMA weights.
    """
    if not cfg.run or not cfg.out_dir:
        raise DermkitError("Pass --run (a synth.train run folder) and --out (the generator folder to write).")
    run = Path(cfg.run)
    out = Path(cfg.out_dir)
    if out.resolve() == run.resolve():
        raise DermkitError(f"--out {out} is the run folder itself; the run writes its finished generator there. "
                           "Choose another folder.")
    train_cfg, run_json, state = _run_files(run)
    ckpt = Path(cfg.checkpoint) if cfg.checkpoint else run / "checkpoints" / LAST
    if not ckpt.is_file():
        raise DermkitError(f"{ckpt} does not exist: the run has not saved a checkpoint yet (every "
                           f"{train_cfg.checkpoint_every_n_steps} steps).")
    check_readable(ckpt, "Pass --checkpoint with another checkpoint of the run (e.g. checkpoints/last.prev.ckpt).")
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=False)
    if "ema" not in checkpoint:
        raise DermkitError(f"{ckpt} holds no EMA weights: it is not a synth.train checkpoint.")
    classes = tuple(state["classes"])
    module = DiffusionModule(unet_config(train_cfg.model.preset, len(classes), train_cfg.data.image_size),
                             len(classes), train_cfg.model, train_cfg.optim)
    module.on_load_checkpoint(checkpoint)
    steps = int(checkpoint.get("global_step", 0))
    info = generator_info(train_cfg, classes, run_json["split_hash"], run_json["train_counts"], steps)
    with replacing(out, KIND) as staging:  # a generator read now by synth.generate is swapped whole, never half-written
        save_generator(staging, module.ema_unet(), module.noise_scheduler, info)
        write_run_info(staging, cfg, 0, {"run": str(run), "checkpoint": str(ckpt), "steps_trained": steps}, kind=KIND)
    console.print(f"synth.snapshot: the EMA generator of {ckpt} (step {steps:,} of "
                  f"{train_cfg.trainer.max_steps:,}) -> {out}")
    return out


@entry_point
def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(SnapshotConfig, "python -m synth.snapshot", __doc__.splitlines()[0], argv, FLAGS)
    snapshot(cfg)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
