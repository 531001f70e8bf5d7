"""Pretraining curve: validation kNN and linear-probe balanced accuracy against epoch.

Reads the backbone snapshots that ``python -m ssl.pretrain`` writes with
``snapshot_every_n_epochs`` (``RUN/snapshots/epochNNN.safetensors``) and evaluates each one with
``python -m ssl.evaluate`` on the validation split (frozen features, labels used only here). An
untrained backbone of the same architecture, evaluated the same way over ``--random-seeds``, gives
the level pretraining has to beat; note that a linear probe on *random* ResNet features is far from
chance. Every evaluation lands in ``RUN/curve/<name>/metrics.json`` and is skipped when that file
exists, so the script can run while pretraining goes on and be re-run as snapshots appear.

Writes ``OUT/curve.csv`` (one row per evaluated backbone), ``OUT/curve.json`` and ``OUT/curve.png``:
kNN and linear-probe balanced accuracy per epoch, the random-init mean as horizontal lines with its
95% t-interval as a band, and the kNN monitor that pretraining logs each epoch (on a training-image
subset bank) as a thin line.

Usage (from the repository root)::

    python -m bench.ssl_curve --run $DERMKIT_RUNS/ssl/simclr_ham64_long --out docs/results/ssl-curve
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bench.probes.ssl_quality import evaluate_backbone  # noqa: E402
from bench.report.stats import Interval, mean_t_interval
from dermkit.console import console, entry_point, print_table  # noqa: E402
from dermkit.errors import DermkitError  # noqa: E402

SNAPSHOT = re.compile(r"epoch(\d+)\.safetensors$")
PROBES = ("knn", "linear")
PROBE_NAMES = {"knn": "kNN", "linear": "linear probe"}


def snapshots(run: Path) -> list[tuple[int, Path]]:
    """(epoch, file) of every snapshot of a pretraining run, by epoch."""
    found = [(int(m.group(1)), p) for p in (run / "snapshots").glob("epoch*.safetensors") if (m := SNAPSHOT.search(p.name))]
    return sorted(found)


def monitor_curve(run: Path) -> list[tuple[int, float]]:
    """(epoch, monitor/knn_balanced_acc) logged by ``ssl.pretrain`` in its CSV log, resumes included.

    Reads ``logs/metrics.csv`` and the layout of runs started before the shared trainer
    (``logs/csv/version_N/metrics.csv``, one folder per resume).
    """
    points: dict[int, float] = {}
    logs = sorted((run / "logs" / "csv").glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name[8:]))
    for log in [*logs, run / "logs" / "metrics.csv"]:
        if not log.is_file():
            continue
        with log.open(newline="") as f:
            for row in csv.DictReader(f):
                value = row.get("monitor/knn_balanced_acc") or ""
                if value and row.get("epoch"):
                    points[int(float(row["epoch"])) + 1] = float(value)
    return sorted(points.items())


def _card(path: Path) -> dict[str, Any]:
    return json.loads(path.with_suffix(".json").read_text())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.ssl_curve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="ssl.pretrain run folder with snapshots/ (snapshot_every_n_epochs)")
    parser.add_argument("--out", default="", help="where curve.csv/json/png go (default: RUN/curve)")
    parser.add_argument("--data", default="", help="labelled dataset (default: the one the run was trained on)")
    parser.add_argument("--root", default="", help="dataset folder (default: the data's usual folder)")
    parser.add_argument("--random-seeds", nargs="+", type=int, default=[0, 1, 2],
                        help="initialisation seeds of the untrained baseline (its mean and 95%% t-interval)")
    parser.add_argument("--evaluate-args", default="", help="extra ssl.evaluate arguments, space-separated")
    return parser


def _interval_text(iv: Interval) -> str:
    return f"{iv.estimate:.3f}" + (f" [{iv.low:.3f}, {iv.high:.3f}]" if iv.defined else "")


def draw(points: list[dict[str, Any]], random: dict[str, Interval], monitor: list[tuple[int, float]],
         title: str, path: Path) -> None:
    """The curve figure (see module doc)."""
    fig, ax = plt.subplots(figsize=(9.5, 4.2))
    colours = {"knn": "tab:blue", "linear": "tab:orange"}
    for probe in PROBES:
        iv = random[probe]
        ax.axhline(iv.estimate, color=colours[probe], linestyle="--", linewidth=1,
                   label=f"random init, {PROBE_NAMES[probe]} ({iv.estimate:.3f})")
        if iv.defined:
            ax.axhspan(iv.low, iv.high, color=colours[probe], alpha=0.12)
        ax.plot([p["epoch"] for p in points], [p[probe] for p in points], marker="o", color=colours[probe],
                label=f"pretrained, {PROBE_NAMES[probe]}")
    if monitor:
        ax.plot(*zip(*monitor), color="tab:blue", alpha=0.35, linewidth=1, label="kNN monitor during training")
    ax.set_xlabel("pretraining epoch")
    ax.set_ylabel("validation balanced accuracy")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: the bands fill the plot
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@entry_point
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run = Path(args.run)
    found = snapshots(run)
    if not found:
        raise DermkitError(f"{run / 'snapshots'} holds no epochNNN.safetensors: pretrain with "
                           "snapshot_every_n_epochs=N (e.g. configs/ssl_simclr_ham64_long.yaml) first.")
    card = _card(found[0][1])
    data, size = args.data or card["data"]["name"], int(card["input_size"])
    extra = args.evaluate_args.split()
    random_runs = [evaluate_backbone("", run / "curve" / f"random_seed{seed}", args.root,
                                     ["--backbone", card["architecture"], f"model.small_stem={card['small_stem']}",
                                      f"seed={seed}", *extra], data, size)
                   for seed in args.random_seeds]
    random = {p: mean_t_interval([m[p]["balanced_accuracy"] for m in random_runs]) for p in PROBES}
    points = []
    for epoch, path in found:
        metrics = evaluate_backbone(str(path), run / "curve" / f"epoch{epoch:03d}", args.root, extra, data, size)
        points.append({"epoch": epoch, "steps": _card(path)["data"].get("steps"),
                       **{p: metrics[p]["balanced_accuracy"] for p in PROBES}})
    out = Path(args.out) if args.out else run / "curve"
    out.mkdir(parents=True, exist_ok=True)
    with (out / "curve.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["epoch", "steps", *PROBES])
        writer.writeheader()
        writer.writerows(points)
    monitor = monitor_curve(run)
    (out / "curve.json").write_text(json.dumps({
        "run": str(run), "method": card["method"], "architecture": card["architecture"], "data": data,
        "image_size": size, "points": points, "monitor": monitor,
        "random": {p: {"mean": iv.estimate, "low": iv.low, "high": iv.high, "seeds": args.random_seeds}
                   for p, iv in random.items()}}, indent=2) + "\n")
    title = (f"{card['method']} {card['architecture']} {size} px on {data}: validation balanced accuracy\n"
             f"random init: mean of {len(args.random_seeds)} seeds, band = 95% t-interval")
    draw(points, random, monitor, title, out / "curve.png")
    rows = [["random init", "-", _interval_text(random["knn"]), _interval_text(random["linear"])]]
    rows += [[f"epoch {p['epoch']}", p["steps"], f"{p['knn']:.3f}", f"{p['linear']:.3f}"] for p in points]
    print_table(f"{run.name}: validation balanced accuracy", ["backbone", "steps", "kNN", "linear probe"], rows)
    console.print(f"Wrote {out}/curve.csv, curve.json and curve.png.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
