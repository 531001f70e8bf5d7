"""Generation and training speed of the synth generator: ``python -m bench.synth_speed``.

Measures, for one UNet in one process, side by side: images/s of DDIM at 50 steps, of DPM-Solver++
at 20 (synth.generate's default) and of DDPM at 1000 steps (all with classifier-free guidance, i.e.
two network passes per step), and training optimiser steps/s (noise prediction + AdamW) at the
given batch size. The model is a trained generator folder (``--model``) or a random-init preset
(speed does not depend on the weights).

The measurement is the synth stage's own timing command, ``python -m synth.speed`` (the clock has
to run in the process that holds the model), run here as a subprocess; this script reads its
``speed.json``, prints the table and, with ``--json``, keeps the results.

Example::

    python -m bench.synth_speed --preset small --image-size 32 --batch-size 8
    python -m bench.synth_speed --preset small --image-size 64 --batch-size 32 --train-precisions 32-true bf16-mixed
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from dermkit.console import entry_point, print_table
from dermkit.unet_presets import PRESETS
from bench.grid.runner import run_stage
from bench.probes.figures import write_figures

STAGE = "synth.speed"
RESULTS_FILE = "speed.json"  # what python -m synth.speed writes into its --out folder


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.synth_speed", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="", help="generator folder (default: a random-init --preset)")
    parser.add_argument("--preset", default="small", choices=list(PRESETS), help="UNet preset without --model")
    parser.add_argument("--image-size", type=int, default=0, help="image side (default: the preset's)")
    parser.add_argument("--classes", type=int, default=7, help="classes of a random-init model")
    parser.add_argument("--batch-size", type=int, default=8, help="images per sampling and training batch")
    parser.add_argument("--ddim-steps", type=int, default=50, help="DDIM denoising steps")
    parser.add_argument("--dpm-steps", type=int, default=20, help="DPM-Solver++ denoising steps")
    parser.add_argument("--ddpm-steps", type=int, default=1000, help="DDPM denoising steps")
    parser.add_argument("--guidance", type=float, default=3.0, help="guidance weight (not 1: two passes per step)")
    parser.add_argument("--train-steps", type=int, default=10, help="timed training steps (after 2 warm-up steps)")
    parser.add_argument("--train-precisions", nargs="+", default=["32-true"],
                        help="precisions to time training in, side by side (32-true, bf16-mixed)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--json", default="", help="also write the results to this JSON file")
    return parser.parse_args(argv)


def stage_args(args: argparse.Namespace, out: Path) -> list[str]:
    """The ``python -m synth.speed`` arguments for this benchmark's options, writing into ``out``."""
    model = ["--model", args.model] if args.model else []
    return [*model, "--preset", args.preset, "--image-size", str(args.image_size),
            "--classes", str(args.classes), "--batch-size", str(args.batch_size),
            "--ddim-steps", str(args.ddim_steps), "--dpm-steps", str(args.dpm_steps),
            "--ddpm-steps", str(args.ddpm_steps),
            "--guidance", str(args.guidance), "--train-steps", str(args.train_steps), "--device", args.device,
            f"train_precisions=[{','.join(args.train_precisions)}]",
            "--threads", str(args.threads), "--out", str(out)]


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``python -m synth.speed`` in a scratch folder and return its ``speed.json``."""
    with tempfile.TemporaryDirectory(prefix="synth-speed-") as tmp:
        run_stage(STAGE, stage_args(args, Path(tmp)))
        return json.loads((Path(tmp) / RESULTS_FILE).read_text())


@entry_point
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = measure(args)
    label, device = results["model"], results["device"]  # the stage printed them with its thread count
    print_table(f"synth speed: {label}, {device}, batch {args.batch_size}", ["measure", "value"], [
        [f"DDIM {args.ddim_steps} steps, images/s", results["ddim_images_per_s"]],
        [f"DPM-Solver++ {args.dpm_steps} steps, images/s", results["dpm_images_per_s"]],
        [f"DDPM {args.ddpm_steps} steps, images/s", results["ddpm_images_per_s"]],
        ["DDIM / DDPM speed-up", results["ddim_images_per_s"] / results["ddpm_images_per_s"]],
        *([f"training steps/s, {precision} (batch {args.batch_size})", steps_per_s]
          for precision, steps_per_s in results["train_steps_per_s_by_precision"].items()),
    ])
    write_figures(results, args.json, echo=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
