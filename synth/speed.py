"""Sampling and training speed of one generator UNet: ``python -m synth.speed``.

Measures, for one UNet in one process, side by side: images/s of DDIM, DPM-Solver++ and DDPM
sampling (at ``ddim_steps``, ``dpm_steps`` and ``ddpm_steps``; with classifier-free guidance unless
``guidance`` is 1, i.e. two network passes per step), and training optimiser steps/s (one network
pass, MSE against the noise, AdamW) on random images at the given batch size, in each of
``train_precisions`` (float32 beside bf16-mixed: on a CPU without bfloat16 kernels the latter is
far slower). The model is a generator folder (``model``) or a random-init ``preset`` (speed does
not depend on the weights, so no data and no training run are needed). The timing has to happen inside the process that holds
the model: each measurement follows a warm-up (a short DDIM run; two training steps) and waits for
the GPU before the clock stops. Writes ``OUT/speed.json`` (with ``config.yaml`` and ``run.json``); ``python -m
bench.synth_speed`` runs this command and prints the table.

Example::

    python -m synth.speed --preset small --image-size 32 --batch-size 8 --out runs/synth/speed
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DModel

from dermkit.config import Flag, parse_config
from dermkit.console import console, entry_point
from dermkit.errors import DermkitError
from dermkit.flags import out_flag
from dermkit.resume import default_run_dir
from dermkit.out_folder import replacing
from dermkit.precision import PRECISIONS, autocast
from dermkit.runinfo import write_run_info
from synth.generate import resolve_device
from synth.generator import load_generator
from synth.model import PRESETS, build_unet, get_preset
from synth.sampling import SAMPLERS, make_sampler, sample
from synth.train import DiffusionConfig, make_noise_scheduler

RESULTS_FILE = "speed.json"
WARMUP_TRAIN_STEPS = 2


@dataclass
class SpeedConfig:
    """``python -m synth.speed``.

    Keys:
        model: generator folder written by ``python -m synth.train``; empty: a random-init ``preset``.
        preset: UNet size preset of the random-init model (``tiny``, ``small``, ``base``, ``large``).
        image_size: image side of the random-init model (0: the preset's).
        classes: real classes of the random-init model (one more embedding is the null class).
        batch_size: images per sampling batch and per training step.
        ddim_steps: DDIM denoising steps.
        dpm_steps: DPM-Solver++ denoising steps (20: ``synth.generate``'s default).
        ddpm_steps: DDPM denoising steps.
        guidance: classifier-free guidance weight (not 1: two network passes per step).
        train_steps: timed training steps (after two untimed warm-up steps).
        train_precisions: precisions the training steps are timed in, one after the other (``32-true``,
            ``bf16-mixed``: autocast as under ``trainer.precision``); ``train_steps_per_s`` is the first's.
        device: ``auto`` (GPU if available), ``cpu`` or ``cuda``.
        threads: torch CPU threads (0: torch's default).
        out_dir: folder for ``speed.json``, ``config.yaml`` and ``run.json``.
    """

    model: str = ""
    preset: str = "small"
    image_size: int = 0
    classes: int = 7
    batch_size: int = 8
    ddim_steps: int = 50
    dpm_steps: int = 20
    ddpm_steps: int = 1000
    guidance: float = 3.0
    train_steps: int = 10
    train_precisions: list[str] = field(default_factory=lambda: ["32-true"])
    device: str = "auto"
    threads: int = 0
    out_dir: str = field(default_factory=lambda: default_run_dir("synth", "speed"))


KIND = "synth.speed"  # run.json's kind (dermkit.out_folder)
FLAGS = [
    Flag("--model", "model", "generator folder (default: a random-init --preset)"),
    Flag("--preset", "preset", f"UNet preset without --model: {', '.join(PRESETS)}"),
    Flag("--image-size", "image_size", "image side (default: the preset's)", int),
    Flag("--classes", "classes", "classes of a random-init model", int),
    Flag("--batch-size", "batch_size", "images per sampling and training batch", int),
    Flag("--ddim-steps", "ddim_steps", "DDIM denoising steps", int),
    Flag("--dpm-steps", "dpm_steps", "DPM-Solver++ denoising steps", int),
    Flag("--ddpm-steps", "ddpm_steps", "DDPM denoising steps", int),
    Flag("--guidance", "guidance", "guidance weight (not 1: two passes per step)", float),
    Flag("--train-steps", "train_steps", f"timed training steps (after {WARMUP_TRAIN_STEPS} warm-up steps)", int),
    Flag("--device", "device", "auto, cpu or cuda"),
    Flag("--threads", "threads", "torch CPU threads (0: torch's default)", int),
    out_flag("folder for speed.json (a measurement written there before is replaced)", command=KIND, replaces=True),
]


def _synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that the clock measures it (CUDA kernels run asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_sampling(unet: UNet2DModel, scheduler: DDPMScheduler, sampler: str, steps: int, batch: int,
                  guidance: float) -> float:
    """Images per second of one batch of ``batch`` images (classes cycled, fixed seeds).

    Args:
        unet: class-conditional UNet in eval mode, on the device to time.
        scheduler: the training noise scheduler (the sampler shares its schedule).
        sampler: a name of the registry :data:`synth.sampling.SAMPLERS`.
        steps: denoising steps.
        batch: images in the batch.
        guidance: classifier-free guidance weight.
    """
    null = unet.config.num_class_embeds - 1
    labels = torch.arange(batch) % null
    start = time.perf_counter()
    sample(unet, make_sampler(sampler, scheduler), labels, list(range(batch)), steps, guidance)
    _synchronize(unet.device)
    return batch / (time.perf_counter() - start)


def time_training(unet: UNet2DModel, scheduler: DDPMScheduler, batch: int, steps: int, device: torch.device,
                  precision: str = "32-true") -> float:
    """Optimiser steps per second of noise-prediction training on random images.

    Args:
        unet: the UNet (trained in place; switched back to eval mode at the end).
        scheduler: the training noise scheduler.
        batch: images per step.
        steps: timed steps, after :data:`WARMUP_TRAIN_STEPS` untimed ones.
        device: where ``unet`` is.
        precision: ``32-true`` or ``bf16-mixed`` (the forward pass under bfloat16 autocast).
    """
    unet.train()
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    size, null = int(unet.config.sample_size), unet.config.num_class_embeds - 1
    x0 = torch.rand(batch, 3, size, size, device=device) * 2 - 1  # (B, 3, S, S)
    labels = torch.arange(batch, device=device) % (null + 1)  # the null class included, as in training

    def step() -> None:
        noise = torch.randn_like(x0)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (batch,), device=device)
        with autocast(precision, device.type):
            pred = unet(scheduler.add_noise(x0, noise, t), t, class_labels=labels).sample  # (B, 3, S, S)
        loss = F.mse_loss(pred.float(), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(WARMUP_TRAIN_STEPS):
        step()
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _synchronize(device)
    unet.eval()
    return steps / (time.perf_counter() - start)


def load_unet(cfg: SpeedConfig) -> tuple[UNet2DModel, DDPMScheduler, str]:
    """The UNet to time, its training noise scheduler and the label the results give it.

    Raises:
        DermkitError: an unreadable generator folder or an unknown preset.
    """
    if cfg.model:
        unet, scheduler, info = load_generator(cfg.model)
        return unet, scheduler, f"{cfg.model} ({info.preset}, {info.image_size} px)"
    size = cfg.image_size or get_preset(cfg.preset).image_size
    unet = build_unet(cfg.preset, cfg.classes, size).eval()
    return unet, make_noise_scheduler(DiffusionConfig()), f"random-init {cfg.preset} ({size} px)"


def measure(cfg: SpeedConfig) -> dict[str, Any]:
    """Time sampling and training as the module docstring says and write ``OUT/speed.json``.

    Returns:
        The results: ``model`` (label), ``device``, ``batch_size``, ``threads``, ``guidance``, for each
        sampler ``<name>_steps`` and ``<name>_images_per_s`` (``ddim``, ``dpm``, ``ddpm``),
        ``train_steps_per_s`` (in the first of ``train_precisions``), ``train_steps_per_s_by_precision``
        and ``peak_gpu_memory_mib`` (None off the GPU).

    Raises:
        DermkitError: a count below 1, a bad device, an unknown preset or an unreadable model.
    """
    for key in ("batch_size", *(f"{name}_steps" for name in SAMPLERS), "train_steps"):
        if getattr(cfg, key) < 1:
            raise DermkitError(f"{key} must be at least 1, got {getattr(cfg, key)}.")
    if not cfg.train_precisions or set(cfg.train_precisions) - set(PRECISIONS):
        raise DermkitError(f"train_precisions must be a non-empty list of {', '.join(PRECISIONS)}, "
                           f"got {list(cfg.train_precisions)}.")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    unet, scheduler, label = load_unet(cfg)
    unet.to(device)
    console.print(f"synth.speed: {label} on {device}, batch {cfg.batch_size}, {torch.get_num_threads()} threads")
    time_sampling(unet, scheduler, "ddim", 2, cfg.batch_size, cfg.guidance)  # warm-up
    results: dict[str, Any] = {"model": label, "device": str(device), "batch_size": cfg.batch_size,
                               "threads": torch.get_num_threads(), "guidance": cfg.guidance}
    for name in SAMPLERS:
        steps = getattr(cfg, f"{name}_steps")
        results[f"{name}_steps"] = steps
        results[f"{name}_images_per_s"] = time_sampling(unet, scheduler, name, steps, cfg.batch_size, cfg.guidance)
    by_precision = {precision: time_training(unet, scheduler, cfg.batch_size, cfg.train_steps, device, precision)
                    for precision in cfg.train_precisions}
    results |= {
        "train_steps_per_s": by_precision[cfg.train_precisions[0]],
        "train_steps_per_s_by_precision": by_precision,
        # Of sampling and training together (None: not on a GPU).
        "peak_gpu_memory_mib": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
    }
    with replacing(cfg.out_dir, KIND) as staging:  # a measurement written before into the folder is replaced whole
        write_run_info(staging, cfg, 0, kind=KIND)
        (staging / RESULTS_FILE).write_text(json.dumps(results, indent=2) + "\n")
    return results


@entry_point
def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(SpeedConfig, "python -m synth.speed", __doc__.splitlines()[0], argv, FLAGS)
    results = measure(cfg)
    sampling = ", ".join(f"{name.upper()}-{results[f'{name}_steps']} {results[f'{name}_images_per_s']:.4g} images/s"
                         for name in SAMPLERS)
    console.print(f"synth.speed: {sampling}, training {results['train_steps_per_s']:.4g} steps/s -> "
                  f"{Path(cfg.out_dir) / RESULTS_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
