"""The figures of a grid's report (matplotlib, written as PNG): balanced accuracy and minority recall
against label fraction, and forest plots of the paired effects.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any
from PIL import Image

from dermkit.vocab import display_name
from bench.grid.config import ARM_OVERSAMPLE, ARM_REAL, ARM_SYNTH, LEGACY_ARMS
from bench.report.effects import Effect, InitEffect, SettingKey, _arms_of
from bench.report.stats import Interval
from bench.report.verdicts import HELPS, HURTS, NO_EFFECT


FIGURES = {
    "balanced_accuracy": "balanced_accuracy.png",
    "minority_recall": "minority_recall.png",
    "synthetic_effect": "synthetic_effect.png",
}
ARM_FIGURE = "arm_effect.png"  # only in grids with arms beyond real and synth
INIT_FIGURE = "init_effect.png"  # only in grids with random and another initialisation
LINE_STYLES = ("-", "--", ":", "-.", (0, (5, 1)), (0, (1, 3)), (0, (3, 1, 1, 1, 1, 1)))
INIT_COLOURS = {"random": "tab:gray", "simclr": "tab:blue", "dino": "tab:orange", "imagenet": "tab:green"}


# -- figures ----------------------------------------------------------------------------------
def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _fraction_axis(ax: Any, fractions: list[float]) -> None:
    ax.set_xscale("log")
    ax.set_xticks(fractions, [f"{f:g}" for f in fractions])
    ax.minorticks_off()
    ax.set_xlabel("label fraction of the training split")
    ax.grid(alpha=0.3)


def plot_balanced_accuracy(path: Path, summary: dict[SettingKey, Interval], level: float) -> None:
    """Balanced accuracy against label fraction, one line per init, a panel per arm."""
    plt = _pyplot()
    synthetic = _arms_of(summary)
    fractions = sorted({k.fraction for k in summary})
    inits = list(dict.fromkeys(k.init for k in summary))
    fig, axes = plt.subplots(1, len(synthetic), figsize=(4.6 * len(synthetic), 3.6), sharey=True, squeeze=False)
    for ax, syn in zip(axes[0], synthetic):
        for init in inits:
            xs = [f for f in fractions if (f, init, syn) in summary]
            ivs = [summary[(f, init, syn)] for f in xs]
            colour = INIT_COLOURS.get(init)
            ax.plot(xs, [iv.estimate for iv in ivs], marker="o", color=colour, label=init)
            ax.fill_between(xs, [iv.low for iv in ivs], [iv.high for iv in ivs], color=colour, alpha=0.2)
        _fraction_axis(ax, fractions)
        title = {ARM_SYNTH: "with synthetic images", ARM_REAL: "real images only"}.get(syn, f"arm {syn}")
        ax.set_title(title, fontsize=10)
    axes[0][0].set_ylabel(f"test balanced accuracy\n(mean, {level:.0%} t-interval over seeds)")
    axes[0][-1].legend(fontsize=8, title="initialisation", title_fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_minority_recall(path: Path, recall: dict[str, dict[SettingKey, Interval]]) -> None:
    """Recall of each minority class against label fraction: solid without, dashed with synthetic images
    (with more arms than ``real`` and ``synth``, one line style per arm)."""
    plt = _pyplot()
    classes = list(recall)
    columns = min(2, len(classes))
    rows = math.ceil(len(classes) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.3 * rows), sharey=True, squeeze=False)
    for ax in axes.flat[len(classes):]:
        ax.axis("off")
    for ax, klass in zip(axes.flat, classes):
        summary = recall[klass]
        fractions = sorted({k.fraction for k in summary})
        arms = _arms_of(summary)
        for init in dict.fromkeys(k.init for k in summary):
            for number, syn in enumerate(arms):
                xs = [f for f in fractions if (f, init, syn) in summary]
                style = ("--" if syn == ARM_SYNTH else "-") if set(arms) <= set(LEGACY_ARMS) else \
                    LINE_STYLES[number % len(LINE_STYLES)]
                ax.plot(xs, [summary[(f, init, syn)].estimate for f in xs], marker="s" if syn == ARM_REAL else "o",
                        linestyle=style, color=INIT_COLOURS.get(init),
                        label=f"{init}, {'synthetic' if syn == ARM_SYNTH else 'real only' if syn == ARM_REAL else syn}")
        _fraction_axis(ax, fractions)
        ax.set_ylim(-0.03, 1.03)
        ax.set_title(f"{klass} ({display_name(klass)})", fontsize=10)
        ax.set_ylabel("test recall (mean over seeds)")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _forest_plot(path: Path, rows: list[tuple[Interval, str, str, str, int]], xlabel: str, row_height: float) -> None:
    """A forest plot: one row per (interval, label, marker, colour, marker size), zero marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, row_height * len(rows) + 1.2))
    for y, (interval, _, marker, colour, size) in enumerate(rows):
        ax.errorbar(interval.estimate, y, xerr=[[interval.estimate - interval.low], [interval.high - interval.estimate]],
                    fmt=marker, color=colour, ms=size, capsize=2)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(rows)), [label for _, label, *_ in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _verdict_colour(effect: Effect | InitEffect) -> str:
    return {HELPS: "tab:green", HURTS: "tab:red", NO_EFFECT: "tab:blue"}.get(effect.decision.kind, "tab:gray")


def plot_synthetic_effect(path: Path, effects: list[Effect], level: float) -> None:
    """Forest plot: per class and scope, the paired difference in recall with its bootstrap interval."""
    rows = [(e.interval, f"{e.klass} · {e.scope}", "D" if e.scope == "all" else "o",
             _verdict_colour(e) if e.scope == "all" else "0.55", 6 if e.scope == "all" else 4) for e in effects]
    _forest_plot(path, rows, f"recall with minus without synthetic images (paired, {level:.0%} bootstrap CI)", 0.32)


def plot_init_effects(path: Path, effects: list[InitEffect], level: float) -> None:
    """Forest plot: per initialisation, arm and label fraction, the paired difference in balanced accuracy."""
    several_arms = len({e.arm for e in effects}) > 1
    rows = [(e.interval, f"{e.init}{f' · {e.arm}' if several_arms else ''} · fraction {e.fraction:g}", "D",
             _verdict_colour(e), 6) for e in effects]
    _forest_plot(path, rows, f"balanced accuracy minus random init (paired, {level:.0%} bootstrap CI)", 0.36)


def plot_arm_effects(path: Path, effects: list[Effect], level: float) -> None:
    """Forest plot of the pooled arm comparisons: per class, each synthetic arm against ``real`` (circles),
    ``oversample`` (squares) and ``oversample<R>`` (diamonds), coloured by verdict."""
    rows = [(e.interval, f"{e.klass} · {e.arm} vs {e.baseline}",
             "o" if e.baseline == ARM_REAL else "s" if e.baseline == ARM_OVERSAMPLE else "D",
             _verdict_colour(e), 5) for e in effects]
    _forest_plot(path, rows, f"recall difference, arm minus baseline (paired, {level:.0%} bootstrap CI)", 0.3)


def stack_grids(paths: list[Path], out: Path) -> Path:
    """Stack per-class grid PNGs vertically into one figure."""
    images = [Image.open(p).convert("RGB") for p in paths]
    canvas = Image.new("RGB", (max(i.width for i in images), sum(i.height for i in images)), "white")
    top = 0
    for image in images:
        canvas.paste(image, (0, top))
        top += image.height
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out, optimize=True)
    return out
