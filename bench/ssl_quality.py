"""Pretraining quality: validation kNN / linear-probe balanced accuracy, pretrained vs random init.

For each method it runs (unless its outputs already exist, so an interrupted benchmark resumes)::

    python -m ssl.pretrain --config configs/ssl_cpu_small.yaml --method M --out RUNS/ham64_M [extra]
    python -m ssl.evaluate --backbone RUNS/ham64_M/backbone.safetensors --data ham10000

and once the baseline, an untrained backbone of the same architecture evaluated the same way::

    python -m ssl.evaluate --backbone random --arch ARCH --data ham10000 --image-size 64 \
        --out runs/ssl_eval/ham64_random_ARCH

then prints one table and writes ``RUNS/quality.json``. Pretraining runs are resumable
(re-running continues from ``checkpoints/last.ckpt``).

Usage (from the repository root)::

    python -m bench.ssl_quality --methods simclr dino
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from dermkit.console import console, print_table


def _run(command: list[str]) -> None:
    console.print("$ " + " ".join(command), highlight=False)
    done = subprocess.run(command)
    if done.returncode:
        raise SystemExit(f"command failed with status {done.returncode}: {' '.join(command)}")


def _evaluate(backbone: str, out: Path, root: str, extra: list[str]) -> dict[str, Any]:
    metrics = out / "metrics.json"
    if not metrics.is_file():
        _run([sys.executable, "-m", "ssl.evaluate", "--backbone", backbone, "--data", "ham10000", "--root", root,
              "--image-size", "64", "--out", str(out), *extra])
    return json.loads(metrics.read_text())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.ssl_quality", description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=["simclr", "dino"], help="methods to pretrain")
    parser.add_argument("--config", default="configs/ssl_cpu_small.yaml", help="ssl.pretrain preset")
    parser.add_argument("--arch", default="resnet18", help="architecture of the preset (for the random baseline)")
    parser.add_argument("--root", default="", help="HAM10000 folder (default: $DERMKIT_HAM10000 or ../shared/...)")
    parser.add_argument("--runs", default="runs/ssl", help="folder of the pretraining runs")
    parser.add_argument("--pretrain-args", default="", help="extra ssl.pretrain arguments, space-separated")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    runs = Path(args.runs)
    root_args = ["--root", args.root] if args.root else []
    rows: list[list[Any]] = []
    results: dict[str, Any] = {}
    baseline = _evaluate("random", runs.parent / "ssl_eval" / f"ham64_random_{args.arch}", args.root,
                         ["--arch", args.arch, "--no-small-stem"])
    results["random"] = baseline
    rows.append([f"random init ({args.arch})", baseline["knn"]["balanced_accuracy"],
                 baseline["linear"]["balanced_accuracy"], "-"])
    for method in args.methods:
        out = runs / f"ham64_{method}"
        backbone = out / "backbone.safetensors"
        if not backbone.is_file():
            _run([sys.executable, "-m", "ssl.pretrain", "--config", args.config, "--method", method, "--out", str(out),
                  *root_args, *args.pretrain_args.split()])
        metrics = _evaluate(str(backbone), out / "eval_ham10000_val", args.root, [])
        card = json.loads(backbone.with_suffix(".json").read_text())
        results[method] = {**metrics, "card": card}
        rows.append([f"{method} ({card['data']['steps']} steps)", metrics["knn"]["balanced_accuracy"],
                     metrics["linear"]["balanced_accuracy"], card["data"]["steps"]])
    print_table("HAM10000 val, 64 px, frozen features: balanced accuracy", ["backbone", "kNN", "linear probe", "steps"],
                rows)
    (runs / "quality.json").write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M %Z"), **results}, indent=2)
                                       + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
