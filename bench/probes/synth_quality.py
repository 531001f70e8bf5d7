"""Does the class conditioning work on HAM10000? ``python -m bench.synth_quality``.

Runs the three synth stages with one set of settings: trains a generator (``small`` preset by default) on the HAM10000
training split at 32 px (resumes, so a finished run is not retrained), generates the chosen rare
classes, and evaluates them against the real training images. The question answered: is each
synthetic class closer (KID and Fréchet distance, in the feature space of a dermkit backbone) to
the real images of its own class than to those of every other class? Held-out real images of each
class (validation split, as many as the synthetic ones) are ranked the same way, as the reference
a perfect generator would reach in this feature space. Writes ``quality.md`` and
``quality.json`` into the samples folder (``--samples``, default ``OUT/samples``; give each
guidance weight its own folder to compare them) and, with ``--figure``, one stacked grid image.
The three stages run as their own commands (``python -m synth.train``, ``synth.generate``,
``synth.evaluate``), one after the other; the report is read from the evaluation's ``metrics.json``.

Example::

    python -m bench.synth_quality --steps 200 --batch-size 32 --figure docs/figures/synth_grid.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dermkit.console import console, entry_point
from bench.report.figures import stack_grids
from bench.report.run_sections import quality_table
from bench.grid.runner import run_stage

# The evaluation's report folder inside the samples folder (synth.evaluate's default place too),
# and the report file it writes there.
EVAL_DIR, EVAL_METRICS = "eval", "metrics.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.synth_quality", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/synth/ham32_small", help="generator folder (resumed if present)")
    parser.add_argument("--samples", default="", help="folder for the synthetic images and the report "
                        "(default: OUT/samples)")
    parser.add_argument("--preset", default="small", help="generator size preset (tiny is for tests)")
    parser.add_argument("--prediction-type", default="v_prediction", choices=["v_prediction", "epsilon"],
                        help="what the network predicts (model.prediction_type)")
    parser.add_argument("--data", default="ham10000", help="dataset name (data.name)")
    parser.add_argument("--image-size", type=int, default=32, help="image side in pixels")
    parser.add_argument("--steps", type=int, default=200, help="training optimiser steps")
    parser.add_argument("--batch-size", type=int, default=32, help="training batch size")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    parser.add_argument("--warmup", type=int, default=20, help="learning-rate warm-up steps")
    parser.add_argument("--classes", nargs="+", default=["mel", "vasc", "df"], help="classes to generate")
    parser.add_argument("--n", type=int, default=32, help="synthetic images per class")
    parser.add_argument("--gen-batch-size", type=int, default=32, help="images per sampling batch")
    parser.add_argument("--sampler", default="dpm", help="synth.generate's sampler: dpm, ddim or ddpm")
    parser.add_argument("--sample-steps", type=int, default=20, help="denoising steps")
    parser.add_argument("--guidance", type=float, default=3.0, help="guidance weight")
    parser.add_argument("--weights", default="", help="backbone.safetensors giving the feature space (default: a "
                        "random-init resnet18)")
    parser.add_argument("--figure", default="", help="write the stacked per-class grids to this PNG")
    return parser.parse_args(argv)


@entry_point
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    data = [f"data.name={args.data}", f"data.image_size={args.image_size}"]
    run_stage("synth.train", ["--out", str(out), "--preset", args.preset, "--steps", str(args.steps), "--batch-size",
                              str(args.batch_size), f"optim.lr={args.lr}", f"optim.warmup_steps={args.warmup}",
                              "data.num_workers=0", "checkpoint_every_n_steps=25",
                              f"model.prediction_type={args.prediction_type}", *data])
    samples = Path(args.samples) if args.samples else out / "samples"
    run_stage("synth.generate", ["--model", str(out), "--out", str(samples),
                                 *[a for c in args.classes for a in ("--class", c)], "--n", str(args.n),
                                 "--sampler", args.sampler, "--steps", str(args.sample_steps),
                                 "--guidance", str(args.guidance),
                                 "--batch-size", str(args.gen_batch_size)])
    eval_argv = ["--synthetic", str(samples), "--out", str(samples / EVAL_DIR), "--data", args.data,
                 "--no-small-stem"]
    if args.weights:
        eval_argv += ["--weights", args.weights]
    run_stage("synth.evaluate", eval_argv)
    report = json.loads((samples / EVAL_DIR / EVAL_METRICS).read_text())
    table = quality_table(report)
    (samples / "quality.md").write_text(table)
    (samples / "quality.json").write_text(json.dumps(report, indent=2) + "\n")
    print(table)  # plain markdown on stdout, unwrapped
    if args.figure:
        grids = [samples / EVAL_DIR / "grids" / f"{c}.png" for c in report["classes"]]
        console.print(f"Figure: {stack_grids(grids, Path(args.figure))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
