"""Pretraining quality: validation kNN / linear-probe balanced accuracy, pretrained vs random init.

For each method it runs (unless its outputs already exist, so an interrupted benchmark resumes)::

    python -m ssl.pretrain --config configs/ssl_cpu_small.yaml --method M --out RUNS/ham64_M [extra]
    python -m ssl.evaluate --weights RUNS/ham64_M/backbone.safetensors --data ham10000

and once the baseline, an untrained backbone of the same architecture evaluated the same way::

    python -m ssl.evaluate --backbone ARCH --data ham10000 --image-size 64 \
        --out runs/ssl_eval/ham64_random_ARCH

then prints one table and writes ``RUNS/quality.json``. Pretraining runs are resumable
(re-running continues from ``checkpoints/last.ckpt``).

With ``--seeds 0 1 2`` each pretraining run and the random baseline are repeated per seed (folders
``..._seedK`` for K > 0; the random baseline's seed is its initialisation) and each row gives the
mean with a 95% Student-t interval over seeds. A pretrained row beats random init only where its
interval lies wholly above the random one.

Usage (from the repository root)::

    python -m bench.ssl_quality --methods simclr dino
    python -m bench.ssl_quality --methods simclr --seeds 0 1 2 --run-suffix _2ep \
        --pretrain-args "--workers 0 monitor.every_n_epochs=0"
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.report.stats import mean_t_interval
from dermkit.console import console, entry_point, print_table


def _run(command: list[str]) -> None:
    console.print("$ " + " ".join(command), highlight=False)
    done = subprocess.run(command)
    if done.returncode:
        raise SystemExit(f"command failed with status {done.returncode}: {' '.join(command)}")


def evaluate_backbone(weights: str, out: Path, root: str, extra: list[str], data: str = "ham10000",
                      image_size: int = 64) -> dict[str, Any]:
    """``python -m ssl.evaluate`` into ``out`` unless its metrics.json exists; returns that file's content.

    Args:
        weights: the backbone file to evaluate; empty: a random-init backbone (``extra`` names its
            architecture with ``--backbone``).
        out: the evaluation's folder.
        root: the dataset folder (empty: the stage's default).
        extra: further ``ssl.evaluate`` arguments.
        data: the dataset format.
        image_size: image side in pixels.
    """
    metrics = out / "metrics.json"
    if not metrics.is_file():
        _run([sys.executable, "-m", "ssl.evaluate", *(["--weights", weights] if weights else []), "--data", data,
              *(["--root", root] if root else []), "--image-size", str(image_size), "--out", str(out), *extra])
    return json.loads(metrics.read_text())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.ssl_quality", description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=["simclr", "dino"], help="methods to pretrain")
    parser.add_argument("--config", default="configs/ssl_cpu_small.yaml", help="ssl.pretrain preset")
    parser.add_argument("--backbone", default="resnet18", help="architecture of the preset (for the random baseline)")
    parser.add_argument("--root", default="", help="HAM10000 folder (default: $DERMKIT_HAM10000 or ../shared/...)")
    parser.add_argument("--runs", default="runs/ssl", help="folder of the pretraining runs")
    parser.add_argument("--pretrain-args", default="", help="extra ssl.pretrain arguments, space-separated")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds of pretraining and random init")
    parser.add_argument("--random-seeds", nargs="+", type=int, default=None,
                        help="initialisation seeds of the random baseline (default: --seeds)")
    parser.add_argument("--run-suffix", default="", help="run folders are RUNS/ham64_<method><suffix>[_seedK]")
    return parser


def _seeded(folder: Path, seed: int) -> Path:
    return folder if seed == 0 else folder.with_name(f"{folder.name}_seed{seed}")


def _row(name: str, per_seed: list[dict[str, Any]], steps: Any) -> list[Any]:
    """Table row: mean [95% t-interval] of kNN and linear-probe balanced accuracy over seeds."""
    cells = []
    for key in ("knn", "linear"):
        iv = mean_t_interval([m[key]["balanced_accuracy"] for m in per_seed])
        cells.append(f"{iv.estimate:.3f}" + (f" [{iv.low:.3f}, {iv.high:.3f}]" if iv.defined else ""))
    return [name, len(per_seed), *cells, steps]


@entry_point
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    runs = Path(args.runs)
    root_args = ["--root", args.root] if args.root else []
    rows: list[list[Any]] = []
    results: dict[str, Any] = {"seeds": args.seeds}
    baseline = [evaluate_backbone("", _seeded(runs.parent / "ssl_eval" / f"ham64_random_{args.backbone}", seed),
                                  args.root, ["--backbone", args.backbone, "--no-small-stem", f"seed={seed}"])
                for seed in args.random_seeds or args.seeds]
    results["random"] = baseline
    rows.append(_row(f"random init ({args.backbone})", baseline, "-"))
    for method in args.methods:
        per_seed = []
        for seed in args.seeds:
            out = _seeded(runs / f"ham64_{method}{args.run_suffix}", seed)
            backbone = out / "backbone.safetensors"
            if not backbone.is_file():
                _run([sys.executable, "-m", "ssl.pretrain", "--config", args.config, "--method", method, "--out",
                      str(out), "--seed", str(seed), *root_args, *args.pretrain_args.split()])
            metrics = evaluate_backbone(str(backbone), out / "eval_ham10000_val", args.root, [])
            per_seed.append({**metrics, "card": json.loads(backbone.with_suffix(".json").read_text())})
        results[method] = per_seed
        steps = per_seed[0]["card"]["data"]["steps"]
        rows.append(_row(f"{method} ({steps} steps)", per_seed, steps))
    print_table("HAM10000 val, 64 px, frozen features: balanced accuracy, mean [95% t-interval over seeds]",
                ["backbone", "seeds", "kNN", "linear probe", "steps"], rows)
    (runs / "quality.json").write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M %Z"), **results}, indent=2)
                                       + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
