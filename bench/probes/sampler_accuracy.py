"""Sampler accuracy and cost against a fine reference: ``python -m bench.sampler_accuracy``.

DDIM (eta = 0) and DPM-Solver++ both solve the generator's probability-flow ODE, and
``synth.generate`` draws each image's starting noise from (seed, class, index) alone, so the same
image made with two samplers differs only by the two solvers' discretisation errors. This benchmark
makes the same images with a fine reference setting (DDIM, 250 steps) and with each candidate
setting (default: DDIM at 50 steps, the grid's setting until now, and DPM-Solver++ at 10 to 25),
all with ``python -m synth.generate`` and the same guidance, and reports per candidate the mean and
99th-percentile absolute pixel difference to the reference (0-255) and the seconds of generation
per image (start-up excluded). The nearer a candidate comes to the reference, the nearer its images
are to the ones the generator's ODE defines (as long as the reference itself is fine enough).

Example::

    python -m synth.snapshot --run $DERMKIT_RUNS/bench/cpu-synth/synth/train-f0.1 --out /tmp/snap
    python -m bench.sampler_accuracy --model /tmp/snap --class mel --class vasc --class akiec --class df --n 8
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.grid.runner import run_stage
from dermkit.console import console, entry_point, print_table
from dermkit.errors import DermkitError
from dermkit.manifest import MANIFEST_CSV, read_manifest
from dermkit.progress_file import PROGRESS_FILE, read_progress
from bench.probes.figures import write_figures

STAGE = "synth.generate"
TIMING_FILE = "timing.json"  # this benchmark's record of one setting's generation time
RUN_FILE = "run.json"  # what every command writes into its --out folder, with the time it started
DEFAULT_CANDIDATES = ("ddim:50", "dpm:10", "dpm:15", "dpm:20", "dpm:25")


def parse_setting(text: str) -> tuple[str, int]:
    """``SAMPLER:STEPS`` (e.g. ``dpm:20``) -> (sampler, steps).

    Raises:
        DermkitError: not of that form.
    """
    sampler, _, steps = text.partition(":")
    if not sampler or not steps.isdigit() or int(steps) < 1:
        raise DermkitError(f"A sampler setting is SAMPLER:STEPS, e.g. dpm:20; got {text!r}.")
    return sampler, int(steps)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.sampler_accuracy", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="generator folder (synth.train, or synth.snapshot part-way)")
    parser.add_argument("--class", dest="classes", action="append", required=True,
                        help="class to generate; repeat for several")
    parser.add_argument("--n", type=int, default=8, help="images per class")
    parser.add_argument("--reference", default="ddim:250",
                        help="SAMPLER:STEPS of the reference, fine enough to stand for the exact ODE solution")
    parser.add_argument("--candidate", dest="candidates", action="append",
                        help=f"SAMPLER:STEPS to compare; repeat (default: {' '.join(DEFAULT_CANDIDATES)})")
    parser.add_argument("--guidance", type=float, default=3.0, help="classifier-free guidance weight, all settings")
    parser.add_argument("--seed", type=int, default=0, help="base seed, all settings (same noise per image)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per batch")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads of the generate commands (0: torch's default)")
    parser.add_argument("--out", default="", help="keep the images here (default: a scratch folder)")
    parser.add_argument("--json", default="", help="also write the results to this JSON file")
    parser.add_argument("--figure", default="", help="also draw the same images under every setting to this PNG")
    args = parser.parse_args(argv)
    args.candidates = args.candidates or list(DEFAULT_CANDIDATES)
    return args


def generate(args: argparse.Namespace, setting: str, out: Path) -> float:
    """Make the images of one setting into ``out``; returns the generation's seconds.

    The seconds run from the command's ``run.json`` (written once the model is loaded, before the
    first image) to its last ``progress.json`` (after the last batch): Python's and torch's start-up,
    about 10 s that any number of images shares, is left out. They are kept in ``out/timing.json``,
    and a folder that has it is not made again: a re-run of the benchmark (after Ctrl-C, or with
    other candidates) reuses every setting it finished.

    Raises:
        DermkitError: ``out`` holds images but no timing (an interrupted run: their time is lost),
            or images of another model, classes, count, guidance or seed.
    """
    timing = out / TIMING_FILE
    made_with = {"setting": setting, "model": str(Path(args.model).resolve()), "classes": args.classes, "n": args.n,
                 "guidance": args.guidance, "seed": args.seed}
    if timing.is_file():
        recorded = json.loads(timing.read_text())
        changed = {k: (recorded.get(k), v) for k, v in made_with.items() if recorded.get(k) != v}
        if changed:
            raise DermkitError(f"{out} holds images made otherwise ("
                               + "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
                               + "); use another --out.")
        return float(recorded["seconds"])
    if (out / MANIFEST_CSV).is_file():
        raise DermkitError(f"{out} holds images of an unfinished run, whose time is lost; delete the folder "
                           "to make it again.")
    sampler, steps = parse_setting(setting)
    classes = [arg for name in args.classes for arg in ("--class", name)]
    run_stage(STAGE, ["--model", args.model, "--out", str(out), *classes, "--n", str(args.n),
                      "--sampler", sampler, "--steps", str(steps), "--guidance", str(args.guidance),
                      "--seed", str(args.seed), "--batch-size", str(args.batch_size)])
    started = json.loads((out / RUN_FILE).read_text())["started"]
    finished = read_progress(out)
    if finished is None:
        raise DermkitError(f"{out} has no {PROGRESS_FILE} after synth.generate; cannot time it.")
    # run.json's time has whole seconds: about 1 s of error on runs of minutes.
    seconds = finished.updated - datetime.strptime(started, "%Y-%m-%dT%H:%M:%S%z").timestamp()
    timing.write_text(json.dumps({**made_with, "seconds": seconds, "threads": args.threads or None}) + "\n")
    return seconds


def load_images(folder: Path) -> dict[str, np.ndarray]:
    """The folder's images by manifest path, as (S, S, 3) int16 arrays."""
    rows = read_manifest(folder)
    if not rows:
        raise DermkitError(f"{folder / MANIFEST_CSV} lists no images.")
    return {r.file: np.asarray(Image.open(folder / r.file).convert("RGB"), dtype=np.int16) for r in rows}


def differences(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray]) -> dict[str, float]:
    """Mean and 99th-percentile absolute pixel difference (0-255) over the images both hold.

    Raises:
        DermkitError: the two sets do not hold the same images.
    """
    if set(reference) != set(candidate):
        raise DermkitError(f"The reference and the candidate made different images ({len(reference)} and "
                           f"{len(candidate)}); use a fresh --out.")
    diff = np.concatenate([np.abs(candidate[name] - reference[name]).ravel() for name in sorted(reference)])
    return {"mean_abs": float(diff.mean()), "p99_abs": float(np.percentile(diff, 99))}


def measure(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Generate every setting under ``root`` and compare each candidate with the reference."""
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the generate commands' torch threads
    settings = [args.reference, *args.candidates]
    for setting in settings:
        parse_setting(setting)  # every setting checked before hours of generation
    seconds = {s: generate(args, s, root / setting_folder(s)) for s in settings}
    reference = load_images(root / setting_folder(args.reference))
    images = len(reference)
    rows = {s: {**differences(reference, load_images(root / setting_folder(s))),
                "seconds_per_image": seconds[s] / images} for s in args.candidates}
    return {"model": args.model, "classes": args.classes, "images": images, "guidance": args.guidance,
            "reference": args.reference, "reference_seconds_per_image": seconds[args.reference] / images,
            "threads": args.threads or None, "candidates": rows}


def save_figure(path: Path, root: Path, results: dict[str, Any], per_class: int = 2) -> Path:
    """A grid of the same images under each setting: one row per setting (the reference first, labelled
    with its mean difference), the first ``per_class`` images of each class as columns."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = [results["reference"], *results["candidates"]]
    names = sorted(load_images(root / setting_folder(results["reference"])),
                   key=lambda name: (results["classes"].index(Path(name).parent.name), name))
    shown = [name for klass in results["classes"]
             for name in [n for n in names if Path(n).parent.name == klass][:per_class]]
    fig, axes = plt.subplots(len(settings), len(shown), figsize=(0.9 * len(shown) + 1.6, 0.9 * len(settings)),
                             squeeze=False)
    for row, setting in enumerate(settings):
        images = load_images(root / setting_folder(setting))
        diff = results["candidates"].get(setting, {}).get("mean_abs")
        label = f"{setting}\n(reference)" if diff is None else f"{setting}\n|diff| {diff:.1f}"
        for col, name in enumerate(shown):
            ax = axes[row, col]
            ax.imshow(images[name].astype(np.uint8))
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
            if row == 0:
                ax.set_title(Path(name).parent.name, fontsize=7)
    fig.tight_layout(pad=0.2)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def setting_folder(setting: str) -> str:
    """The folder of one setting's images under ``--out``: ``dpm:20`` -> ``dpm-20``."""
    return setting.replace(":", "-")


@entry_point
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    scratch = contextlib.nullcontext(args.out) if args.out else tempfile.TemporaryDirectory(prefix="sampler-accuracy-")
    with scratch as folder:
        root = Path(folder)
        results = measure(args, root)
        if args.figure:
            console.print(f"Figure: {save_figure(Path(args.figure), root, results)}")
    print_table(f"sampler accuracy: {results['images']} images of {', '.join(args.classes)}, guidance "
                f"{args.guidance}, against {args.reference} "
                f"({results['reference_seconds_per_image']:.2f} s/image)",
                ["setting", "mean |diff| (0-255)", "99th pct |diff|", "s/image"],
                [[s, f"{r['mean_abs']:.2f}", f"{r['p99_abs']:.0f}", f"{r['seconds_per_image']:.2f}"]
                 for s, r in results["candidates"].items()])
    write_figures(results, args.json, echo=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
