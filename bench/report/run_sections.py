"""The report's sections on what the grid ran rather than what it found: the training images per class
of each arm, the filter's acceptance, the generator's quality, and the running time of the steps.
"""

from __future__ import annotations

import numpy as np
from collections import defaultdict
from pathlib import Path
from typing import Any

from dermkit.vocab import display_name
from bench.grid.config import arm_sort_key
from bench.report.effects import CellKey, ReportContext, SettingKey, StepTime
from bench.report.figures import stack_grids
from bench.report.markdown import _md_table


def _train_count_lines(cells: dict[CellKey, dict[str, Any]], classes: list[str], ctx: ReportContext) -> list[str]:
    """Training images per class of each (fraction, init, arm), real + synthetic, from the first seed's cell.

    ``synth.max_ratio`` is a ceiling: a class with fewer generated (or kept) images than the ratio
    allows gets them all, so the table shows the ratio each arm really had.
    """
    first: dict[SettingKey, dict[str, dict[str, int]]] = {}
    for (fraction, init, arm, _seed), entry in sorted(cells.items()):
        counts = ctx.train_counts.get(entry["cell_id"])
        if counts and (fraction, init, arm) not in first:
            first[SettingKey(fraction, init, arm)] = counts
    if not first:
        return []
    lines = ["Training images per class, real + synthetic (first seed's cell; `synth.max_ratio` is a ceiling, "
             "so this is the ratio each arm really had):", ""]
    body = []
    for (fraction, init, arm) in sorted(first, key=lambda k: (k.fraction, k.init, arm_sort_key(k.arm))):
        counts = first[(fraction, init, arm)]
        body.append([f"{fraction:g}", init, arm, *(f"{counts.get('real', {}).get(c, 0)} + "
                                                  f"{counts.get('synthetic', {}).get(c, 0)}" for c in classes)])
    return [*lines, *_md_table(["fraction", "initialisation", "arm", *classes], body), ""]


def _filter_lines(classes: list[str], ctx: ReportContext) -> list[str]:
    """The filtered arms' acceptance: generated images kept / scored per class and filter step."""
    if not ctx.filter_acceptance:
        return []
    shown = [c for c in classes if any(c in a for a in ctx.filter_acceptance.values())]
    body = [[name, *(f"{a[c]['kept']} / {a[c]['scored']}" if c in a else "-" for c in shown)]
            for name, a in sorted(ctx.filter_acceptance.items())]
    return ["Generated images the `real` cell's classifier kept for the filtered arms (kept / scored, "
            "`finetune.filter_synthetic`):", "", *_md_table(["filter (fraction, init, seed)", *shown], body), ""]


def _rgb(colour: dict[str, list[float]]) -> str:
    """``(r, g, b)`` of a colour entry of a ``synth.evaluate`` report, two decimals."""
    return "(" + ", ".join(f"{v:.2f}" for v in colour["mean_rgb"]) + ")"


def conditioning_verdict(metrics: dict[str, Any]) -> str:
    """Whether a synthetic class's conditioning shows (issue 12's target): it ranks its own real class
    first by KID, or no worse than held-out real images of the class do in the same feature space."""
    own = int(metrics["own_rank_kid"])
    if own == 1:
        return "yes: own class first"
    held_out = metrics.get("held_out_real")
    if held_out and own <= int(held_out["own_rank_kid"]):
        return (f"as held-out real: rank {own}, held-out {held_out['own_rank_kid']} (this feature space does not "
                "separate the class)")
    return f"no: rank {own}" + (f", held-out real {held_out['own_rank_kid']}" if held_out else "")


def quality_table(report: dict[str, Any]) -> str:
    """A markdown table with one row per synthetic class of a ``synth.evaluate`` report.

    Args:
        report: the evaluation's ``metrics.json``.
    """
    lines = [f"Feature space: {report['feature_space']}", "",
             "| synthetic class | n | KID to own class | nearest other class by KID (KID) | own rank KID | "
             "FD to own class | nearest other class by FD (FD) | own rank FD | held-out real: n, KID to own class, "
             "own rank KID, FD | conditioning shows | precision | recall | copy rate (near-copies, of own class) | "
             "mean RGB synthetic / real |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for klass, m in report["classes"].items():
        others = {c: v for c, v in m["to_class"].items() if c != klass}
        kid_other = min(others, key=lambda c: others[c]["kid"])
        fd_other = min(others, key=lambda c: others[c]["fd"])
        ref = m.get("held_out_real")
        held_out = f"{ref['n']}, {ref['kid']:.4f}, {ref['own_rank_kid']}, {ref['own_rank_fd']}" if ref else "-"
        own_copies = m.get("near_copies_own_class", "-")  # evaluations before 2026-12-05 did not count them
        lines.append(f"| {klass} ({display_name(klass)}) | {m['synthetic']} | {m['kid']:.4f} | {kid_other} "
                     f"({others[kid_other]['kid']:.4f}) | {m['own_rank_kid']} of {len(m['to_class'])} | {m['fd']:.2f} | "
                     f"{fd_other} ({others[fd_other]['fd']:.2f}) | {m['own_rank_fd']} of {len(m['to_class'])} | "
                     f"{held_out} | {conditioning_verdict(m)} | {m['precision']:.2f} | {m['recall']:.2f} | "
                     f"{m['copy_rate']:.3f} ({m['near_copies']}, {own_copies}) | "
                     f"{_rgb(m['colour']['synthetic'])} / {_rgb(m['colour']['real_train'])} |")
    return "\n".join(lines) + "\n"


def _generator_quality_lines(ctx: ReportContext, figures: Path) -> list[str]:
    """One ``synth.evaluate`` table and grid figure per generator whose evaluation has finished."""
    if not ctx.generator_quality:
        return []
    lines = ["## Generator quality", "",
             "Each generator's images judged by `synth.evaluate` against the real training images of every class "
             "(KID and Fréchet distance in one feature space; held-out real images of the class, from the validation "
             "split, ranked the same way as the reference a perfect generator reaches). The conditioning shows when "
             "a class ranks its own real class first by KID, or no worse than its held-out real images do. "
             "Figures: per class a row of real training images, a row of synthetic ones and the nearest training "
             "image of each.", ""]
    for name, (metrics, folder) in sorted(ctx.generator_quality.items()):
        grids = [folder / "grids" / f"{c}.png" for c in metrics["classes"]]
        lines += [f"### Generator `{name}`", "", quality_table(metrics)]
        if grids and all(p.is_file() for p in grids):
            figure = stack_grids(grids, figures / f"generator_{name}.png")
            lines += [f"![real, synthetic and nearest training images, generator {name}](figures/{figure.name})", ""]
    return lines


def _running_time_lines(ctx: ReportContext) -> list[str]:
    """The running-time section: wall and CPU seconds per stage (nothing when no timings were recorded)."""
    if not ctx.timings:
        return []
    lines = ["## Running time", "", "Per step as recorded in its `done.json`: wall-clock seconds and the CPU seconds "
             "(user + system) of the stage process, which depend less on what else the machine was running, "
             "summed over every attempt of a step that was stopped and resumed. Steps reused from an earlier "
             "invocation keep their original times.", ""]
    if ctx.untimed_attempts:
        lines += [f"{len(ctx.untimed_attempts)} step(s) had attempts whose time was lost because the grid was killed "
                  "while they ran, so the totals below are lower bounds: "
                  + ", ".join(f"{name} ({n})" for name, n in sorted(ctx.untimed_attempts.items())) + ".", ""]
    groups: dict[str, list[StepTime]] = defaultdict(list)
    for name, times in ctx.timings.items():
        groups[name.split("/")[0]].append(times)
    body = [[g, str(len(v)), f"{sum(t.seconds for t in v):.0f}", f"{sum(t.cpu_seconds for t in v):.0f}",
             f"{np.mean([t.seconds for t in v]):.1f}"] for g, v in groups.items()]
    body.append(["total", str(len(ctx.timings)), f"{sum(t.seconds for t in ctx.timings.values()):.0f}",
                 f"{sum(t.cpu_seconds for t in ctx.timings.values()):.0f}", ""])
    lines += [*_md_table(["stage", "steps", "wall s", "CPU s", "mean wall s per step"], body), ""]
    if ctx.wall_seconds:
        lines += [f"This invocation took {ctx.wall_seconds:.0f} s of wall-clock time end to end.", ""]
    return lines
