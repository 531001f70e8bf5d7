"""Compare fine-tuning runs: test balanced accuracy and per-class recall, as a figure and a table.

Reads ``metrics.json`` of each run folder (written by ``python -m finetune.train``) and writes a
grouped bar chart of per-class recall (one bar per run, balanced accuracy in the legend) and prints
a Markdown table for ``docs/benchmarks.md``.

Example::

    python -m bench.finetune_figures runs/finetune/ham64_random_f0.1 runs/finetune/ham64_random_f1.0 \\
        --out docs/figures/finetune_ham64_recall.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from dermkit.console import entry_point
from dermkit.errors import DermkitError


def read_metrics(run: Path) -> dict[str, Any]:
    """The ``metrics.json`` of a run folder."""
    path = run / "metrics.json"
    if not path.is_file():
        raise DermkitError(f"{path} does not exist: pass run folders written by python -m finetune.train.")
    return json.loads(path.read_text())


def run_label(run: Path, metrics: dict[str, Any]) -> str:
    """``<init> <fraction>``, e.g. ``ssl 10%`` or ``random 100%``."""
    init = metrics.get("backbone", {}).get("init", "random")
    name = "random" if init == "random" else Path(init).parent.name or Path(init).stem
    return f"{name} {metrics['fraction'] * 100:g}%"


def markdown_table(labels: list[str], runs: list[dict[str, Any]]) -> str:
    """Balanced accuracy, accuracy, macro F1 and per-class recall of each run as a Markdown table."""
    classes = runs[0]["classes"]
    head = ["run", "bal. acc.", "acc.", "macro F1", *(f"recall {c}" for c in classes)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, m in zip(labels, runs):
        recall = [m["per_class"][c]["recall"] for c in classes]
        cells = [label, *(f"{m[k]:.3f}" for k in ("balanced_accuracy", "accuracy", "macro_f1")),
                 *("-" if r is None else f"{r:.2f}" for r in recall)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(labels: list[str], runs: list[dict[str, Any]], out: Path, title: str) -> None:
    """Grouped bars: per-class test recall, one colour per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    classes = runs[0]["classes"]
    width = 0.8 / len(runs)
    fig, ax = plt.subplots(figsize=(1.5 + 1.1 * len(classes), 3.6))
    for i, (label, m) in enumerate(zip(labels, runs)):
        recall = [m["per_class"][c]["recall"] or 0.0 for c in classes]
        ax.bar(np.arange(len(classes)) + (i - (len(runs) - 1) / 2) * width, recall, width,
               label=f"{label} (bal. acc. {m['balanced_accuracy']:.3f})")
    support = runs[0]["per_class"]
    ax.set_xticks(range(len(classes)), [f"{c}\nn={support[c]['support']}" for c in classes], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("test recall")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.finetune_figures", description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finetune.train run folders (same test split)")
    parser.add_argument("--out", type=Path, default=Path("docs/figures/finetune_recall.png"), help="figure file")
    parser.add_argument("--title", default="per-class test recall", help="figure title")
    args = parser.parse_args(argv)
    runs = [read_metrics(run) for run in args.runs]
    hashes = {m["split_hash"] for m in runs}
    if len(hashes) > 1:
        raise DermkitError(f"The runs use different splits ({', '.join(sorted(hashes))}): their test sets differ.")
    labels = [run_label(run, m) for run, m in zip(args.runs, runs)]
    plot(labels, runs, args.out, args.title)
    print(markdown_table(labels, runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
