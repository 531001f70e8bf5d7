"""Generation and training speed of the synth generator: ``python -m bench.synth_speed``.

Measures, for one UNet in one process, side by side: images/s of DDIM at 50 steps and of DDPM at
1000 steps (both with classifier-free guidance, i.e. two network passes per step), and training
optimiser steps/s (noise prediction + AdamW) at the given batch size. The model is a trained
generator folder (``--model``) or a random-init preset (speed does not depend on the weights).

Example::

    python -m bench.synth_speed --preset small --image-size 32 --batch-size 8
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DModel

from dermkit.console import console, entry_point, print_table
from synth.generator import load_generator
from synth.model import PRESETS, build_unet
from synth.sampling import make_sampler, sample
from synth.train import DiffusionConfig, make_noise_scheduler


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.synth_speed", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="", help="generator folder (default: a random-init --preset)")
    parser.add_argument("--preset", default="small", choices=list(PRESETS), help="UNet preset without --model")
    parser.add_argument("--image-size", type=int, default=0, help="image side (default: the preset's)")
    parser.add_argument("--classes", type=int, default=7, help="classes of a random-init model")
    parser.add_argument("--batch-size", type=int, default=8, help="images per sampling and training batch")
    parser.add_argument("--ddim-steps", type=int, default=50, help="DDIM denoising steps")
    parser.add_argument("--ddpm-steps", type=int, default=1000, help="DDPM denoising steps")
    parser.add_argument("--guidance", type=float, default=3.0, help="guidance weight (not 1: two passes per step)")
    parser.add_argument("--train-steps", type=int, default=10, help="timed training steps (after 2 warm-up steps)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--json", default="", help="also write the results to this JSON file")
    return parser.parse_args(argv)


def time_sampling(unet: UNet2DModel, scheduler: DDPMScheduler, sampler: str, steps: int, batch: int,
                  guidance: float) -> float:
    """Images per second of one batch of ``batch`` images (classes cycled, fixed seeds)."""
    null = unet.config.num_class_embeds - 1
    labels = torch.arange(batch) % null
    start = time.perf_counter()
    sample(unet, make_sampler(sampler, scheduler), labels, list(range(batch)), steps, guidance)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return batch / (time.perf_counter() - start)


def time_training(unet: UNet2DModel, scheduler: DDPMScheduler, batch: int, steps: int, device: torch.device) -> float:
    """Optimiser steps per second of noise-prediction training on random images."""
    unet.train()
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    size, null = int(unet.config.sample_size), unet.config.num_class_embeds - 1
    x0 = torch.rand(batch, 3, size, size, device=device) * 2 - 1  # (B, 3, S, S)
    labels = torch.arange(batch, device=device) % (null + 1)

    def step() -> None:
        noise = torch.randn_like(x0)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (batch,), device=device)
        loss = F.mse_loss(unet(scheduler.add_noise(x0, noise, t), t, class_labels=labels).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    unet.eval()
    return steps / (time.perf_counter() - start)


@entry_point
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    if args.model:
        unet, scheduler, info = load_generator(args.model)
        label = f"{args.model} ({info.preset}, {info.image_size} px)"
    else:
        size = args.image_size or PRESETS[args.preset].image_size
        unet, scheduler = build_unet(args.preset, args.classes, size).eval(), make_noise_scheduler(DiffusionConfig())
        label = f"random-init {args.preset} ({size} px)"
    unet.to(device)
    console.print(f"bench.synth_speed: {label} on {device}, batch {args.batch_size}, {torch.get_num_threads()} threads")
    time_sampling(unet, scheduler, "ddim", 2, args.batch_size, args.guidance)  # warm-up
    results = {
        "model": label, "device": str(device), "batch_size": args.batch_size, "threads": torch.get_num_threads(),
        "ddim_steps": args.ddim_steps, "ddpm_steps": args.ddpm_steps, "guidance": args.guidance,
        "ddim_images_per_s": time_sampling(unet, scheduler, "ddim", args.ddim_steps, args.batch_size, args.guidance),
        "ddpm_images_per_s": time_sampling(unet, scheduler, "ddpm", args.ddpm_steps, args.batch_size, args.guidance),
        "train_steps_per_s": time_training(unet, scheduler, args.batch_size, args.train_steps, device),
        # Of sampling and training together (None: not on a GPU).
        "peak_gpu_memory_mib": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
    }
    print_table(f"synth speed: {label}, {device}, batch {args.batch_size}", ["measure", "value"], [
        [f"DDIM {args.ddim_steps} steps, images/s", results["ddim_images_per_s"]],
        [f"DDPM {args.ddpm_steps} steps, images/s", results["ddpm_images_per_s"]],
        ["DDIM / DDPM speed-up", results["ddim_images_per_s"] / results["ddpm_images_per_s"]],
        [f"training steps/s (batch {args.batch_size})", results["train_steps_per_s"]],
    ])
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
