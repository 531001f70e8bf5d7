"""The benchmark report: ``report.md`` with PNG figures, from ``results.csv`` and the cells' predictions.

Sections: the setup (data, preset, command, seeds; demo data flagged as never evidence), balanced
accuracy against label fraction per initialisation (mean over seeds with a Student-t interval),
minority-class recall and one-vs-rest AUROC with and without synthetic images, and per class the paired
effect of synthetic images on recall (:func:`bench.report.stats.paired_bootstrap`) and on AUROC
(:func:`bench.report.stats.paired_auroc_bootstrap`) with a verdict (:func:`bench.report.verdicts.decide`: helps, hurts, no
effect larger than δ, or undecided with the seeds deciding needs). A grid with arms beyond
``real`` and ``synth`` (``grid.arms``: ``oversample``, ``oversample<R>``, ``synth<R>``, ``filtered``) gets
the section "Synthetic images against oversampling" instead of the last one: per arm balanced accuracy
and nevus recall, and the paired recall difference of every synthetic arm against ``real``, against
``oversample`` and, for ``synth<R>``, against ``oversample<R>`` (as many steps) for each minority class
and for nevus (a gain paid for by the majority class shows), ending with issue 12's target per synthetic
arm and oversampling arm (:data:`TARGET_GAIN` over it with the verdict "helps" in :data:`TARGET_CLASSES`
minority classes, balanced accuracy not lower): met or not.

Where the grid has ``random`` and another initialisation, the section "Does pretraining help?" gives,
per label fraction, the paired difference in balanced accuracy (initialisation minus random: same
seeds, arm and test images) with a bootstrap interval over seeds and test images
(:func:`bench.report.stats.balanced_accuracy_differences`), the per-seed differences and their t-interval.

A grid with synthetic images gets "Generator quality" (before the comparisons): per generator its
``synth.evaluate`` table (:func:`quality_table`: does each class rank its own real class first, as
held-out real images of the class do?) and a figure of real, synthetic and nearest training images.

With a seed plan (``report.plan``, :mod:`bench.report.comparison_plan`) the comparison tables mark the comparisons it
registered as planned, and the section "Planned comparisons" gives each one's verdict then and now.

Cells are keyed ``(fraction, init, arm, seed)``; the older arms print as before (``real`` as
synthetic ``off``, ``synth`` as ``on``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from dermkit.errors import DermkitError
from dermkit.vocab import MINORITY_CLASSES, display_name
from bench.grid.config import ARM_OVERSAMPLE, LEGACY_ARMS, arm_baselines, arm_sort_key, parse_arm
from bench.report.effects import (AUROC, BALANCED_ACCURACY, MAJORITY_CLASS, METRIC_NAMES, RECALL, TARGET_CLASSES,
                                  TARGET_GAIN, CellKey, Comparisons, Effect, InitEffect, ReportContext, SettingKey,
                                  _arms_of, arm_label, cell_table, meets_target, pooled_arm_effects, report_comparisons,
                                  seed_summary, synthetic_arms, target_gains)
from bench.report.figures import (ARM_FIGURE, FIGURES, INIT_FIGURE, plot_arm_effects, plot_balanced_accuracy,
                                  plot_init_effects, plot_minority_recall, plot_synthetic_effect)
from bench.report.markdown import _iv, _md_table, _signed, _signed_or_estimate, _verdict_cell
from bench.report.results import Predictions
from bench.report.run_sections import _filter_lines, _generator_quality_lines, _running_time_lines, _train_count_lines
from bench.report.stats import Interval, mean_t_interval
from bench.report.verdicts import DELTAS


VERDICT_RULE = ("Verdict: **helps** / **hurts** when both intervals, the bootstrap's and the t-interval over the "
                "per-seed differences, exclude 0 on the same side; **no effect larger than δ** when both lie within "
                f"±δ (δ = {DELTAS[RECALL]:g} for recall, {DELTAS[AUROC]:g} for AUROC, {DELTAS[BALANCED_ACCURACY]:g} "
                "for balanced accuracy); otherwise **undecided** (always with one seed), with the seeds it needs: "
                "the fewest n with t(0.975, n - 1) × sd / √n at most the half-width that decides, sd being the "
                "spread of the per-seed differences seen so far; the half-width is the observed mean's distance from "
                "0 (to exclude 0) when the mean is at least δ / 2 from 0, otherwise δ minus that distance (to lie "
                "within ±δ); where the seeds there are already suffice by that count, it is the bootstrap interval, "
                "which also draws the test images, that stays too wide (\"the test images do not\"). The bootstrap "
                "draws from the few seeds there are and so sees too little of the "
                "seed-to-seed spread; the t-interval (n - 1 degrees of freedom) covers it and is wide with 3 seeds.")
# The columns of one recall and one AUROC comparison side by side (_metric_cells of each).
METRIC_HEADER = ("Δ recall [CI]", "recall over seeds [t-interval]", "recall verdict", "Δ AUROC [CI]",
                 "AUROC over seeds [t-interval]", "AUROC verdict")
AUROC_RULE = ("Δ AUROC is the paired difference in the class's one-vs-rest AUROC (its probability ranking its own "
              "test images above all others, threshold-free), bootstrapped the same way: seeds, then the class's "
              "test images and the other test images (within their classes), one draw of images serving every "
              "seed drawn since every seed was tested on the same images.")
# The report's last section: what else the benchmark folder holds.
FILES_SECTION = ("## Files", "", "- `results.csv`: one row per cell and class (fraction, init, synthetic, arm, seed, "
                 "class, recall, precision, f1, auroc, support, balanced_accuracy, accuracy).",
                 "- `cells/<cell>/`: each fine-tuning run (metrics.json, predictions.csv, config.yaml, run.json, "
                 "stage.log; an exported copy leaves out stage.log and the checkpoints).", "")


def _setup_lines(ctx: ReportContext, cells: dict[CellKey, dict[str, Any]],
                 seeds: list[int]) -> list[str]:
    """The title, the demo-data banner and caveats, and the setup section."""
    data = ctx.data
    lines = [f"# Label efficiency and synthetic minority images: preset `{ctx.preset}`", ""]
    if data.get("name") == "demo":
        lines += ["> **DEMO DATA, NEVER EVIDENCE.** These numbers come from the embedded procedural demo images "
                  "(drawn blobs, not skin). They show that the pipeline runs end to end and say nothing about "
                  "skin lesions. Run the `cpu-small` or `gpu-full` preset on HAM10000 for results.", ""]
    for caveat in ctx.caveats:
        lines += [f"> **Caveat.** {caveat}", ""]
    lines += ["## Setup", "",
              f"- Preset: `{ctx.preset}`" + (f" ({ctx.about})" if ctx.about else ""),
              f"- Command: `{ctx.command}`",
              f"- Data: `{data.get('name')}` at `{data.get('root')}`, {data.get('images')} images at "
              f"{data.get('image_size')} px, lesion-grouped split seed {data.get('split_seed')}, "
              f"split hash `{data.get('split_hash')}`",
              "- Test images per class: " + ", ".join(f"{c} {n}" for c, n in ctx.test_counts.items()),
              f"- Seeds: {', '.join(map(str, seeds))} ({len(seeds)} fine-tuning runs per configuration)",
              f"- Cells: {len(cells)} (label fractions {', '.join(f'{f:g}' for f in sorted({k.fraction for k in cells}))}; "
              f"initialisations {', '.join(dict.fromkeys(k.init for k in cells))}; "
              + (f"synthetic {', '.join(arm_label(a) for a in _arms_of(cells))})" if set(_arms_of(cells)) <=
                 set(LEGACY_ARMS) else f"arms {', '.join(_arms_of(cells))})"),
              *[f"- {s}" for s in ctx.settings], "",
              "Every number is measured on the test split, which no stage trains on: pretraining and the generator "
              "use training images only, synthetic images enter training data only.", ""]
    return lines


def _balanced_accuracy_lines(bal: dict[SettingKey, Interval], fractions: list[float],
                             level: float) -> list[str]:
    """The balanced-accuracy section: the figure and a row per initialisation and synthetic setting."""
    lines = ["## Balanced accuracy against label fraction", "",
             f"![balanced accuracy](figures/{FIGURES['balanced_accuracy']})", "",
             f"Mean over seeds with a two-sided {level:.0%} Student-t interval (n - 1 degrees of freedom, "
             "n = seeds): the band in the figure, the brackets below.", ""]
    header = ["initialisation", _arm_column(_arms_of(bal)), *(f"fraction {f:g}" for f in fractions)]
    body = []
    for init in dict.fromkeys(k.init for k in bal):
        for syn in _arms_of(bal):
            body.append([init, arm_label(syn, legacy=_arm_column(_arms_of(bal)) == "synthetic"),
                         *(_iv(bal[(f, init, syn)]) if (f, init, syn) in bal else "-" for f in fractions)])
    return [*lines, *_md_table(header, body), ""]


def _metric_cells(effect: Effect | None) -> list[str]:
    """One metric's Δ [bootstrap], the per-seed mean [t-interval] and the verdict; ``-`` where not computed
    (predictions without probabilities give no AUROC)."""
    if effect is None:
        return ["-", "-", "-"]
    return [_signed(effect.interval), _signed_or_estimate(effect.over_seeds), _verdict_cell(effect.decision)]


def with_auroc(effects: Iterable[Effect]) -> list[tuple[Effect, Effect | None]]:
    """Each recall effect, in order, with the AUROC effect of the same class, arms and conditions (None: none)."""
    effects = list(effects)
    auroc = {(e.klass, e.scope, e.arm, e.baseline): e for e in effects if e.metric == AUROC}
    return [(e, auroc.get((e.klass, e.scope, e.arm, e.baseline))) for e in effects if e.metric == RECALL]


def _planned_cell(ctx: ReportContext, *comparisons: Effect | InitEffect | None) -> list[str]:
    """The ``planned`` column (only with a seed plan): which of the row's metrics the plan registered."""
    if ctx.plan is None:
        return []
    plan = ctx.plan
    planned = [c.key.metric for c in comparisons if c is not None and plan.planned(c.key) is not None]
    return [", ".join(METRIC_NAMES[m] for m in planned) or "no"]


def _planned_header(ctx: ReportContext) -> list[str]:
    return [] if ctx.plan is None else ["planned"]


def _init_effect_lines(effects: list[InitEffect], ctx: ReportContext) -> list[str]:
    """The section on pretraining: per initialisation and label fraction, the paired difference in
    balanced accuracy against random initialisation (nothing when the grid has no such pair)."""
    if not effects:
        return []
    several_arms = len({e.arm for e in effects}) > 1
    column = _arm_column(e.arm for e in effects)
    lines = ["## Does pretraining help? Against random initialisation", "",
             f"![initialisation against random](figures/{INIT_FIGURE})", "",
             "Paired comparison: for every label fraction and seed, the cell of an initialisation is compared with "
             "the random-initialisation cell of the same seed on the same test images. Δ is the difference in "
             "balanced accuracy (initialisation minus random). Its "
             f"{ctx.level:.0%} interval is a percentile bootstrap ({ctx.n_bootstrap} replicates, seed "
             f"{ctx.bootstrap_seed}) that resamples seeds and, independently, the test images within each class "
             "(so every class keeps its size, as balanced accuracy needs). Beside it, the difference of each seed "
             "and their mean with a Student-t interval. " + VERDICT_RULE, ""]
    header = ["initialisation", *([column] if several_arms else []), "fraction", "Δ balanced accuracy [CI]",
              "Δ per seed", "over seeds [t-interval]", "test images", "verdict", *_planned_header(ctx)]
    body = [[e.init, *([arm_label(e.arm, legacy=column == "synthetic")] if several_arms else []), f"{e.fraction:g}",
             _signed(e.interval),
             ", ".join(f"s{seed} {d:+.3f}" for seed, d in e.per_seed), _signed_or_estimate(e.over_seeds),
             str(e.images), _verdict_cell(e.decision), *_planned_cell(ctx, e)] for e in effects]
    return [*lines, *_md_table(header, body), ""]


def _arm_column(arms: Iterable[str]) -> str:
    """The header of the arm column: ``synthetic`` (on/off) for the older arms, else ``arm``."""
    return "synthetic" if set(arms) <= set(LEGACY_ARMS) else "arm"


def _per_class_table(summary: dict[str, dict[SettingKey, Interval]], fractions: list[float]) -> list[str]:
    """A table of one metric per class, initialisation and arm (rows) and label fraction (columns)."""
    body = []
    column = "synthetic"
    for klass, by_setting in summary.items():
        column = _arm_column(_arms_of(by_setting))
        settings = dict.fromkeys((k.init, k.arm) for k in by_setting)
        pairs = sorted(settings, key=lambda pair: (pair[0], arm_sort_key(pair[1])))
        for (init, syn) in pairs:
            body.append([klass, init, arm_label(syn, legacy=column == "synthetic"),
                         *(_iv(by_setting[(f, init, syn)]) if (f, init, syn) in by_setting else "-"
                           for f in fractions)])
    return _md_table(["class", "initialisation", column, *(f"{f:g}" for f in fractions)], body)


def _minority_recall_lines(recall: dict[str, dict[SettingKey, Interval]],
                           auroc: dict[str, dict[SettingKey, Interval]], fractions: list[float],
                           level: float, synthetic: bool) -> list[str]:
    """The minority-recall section, then the same classes' one-vs-rest AUROC where ``results.csv`` has it
    (nothing when no minority class was tested); ``synthetic``: some cells trained on synthetic images."""
    if not recall:
        return []
    lines = ["## Minority-class recall" + (" with and without synthetic images" if synthetic else ""), "",
             f"![minority recall](figures/{FIGURES['minority_recall']})", "",
             f"Test recall, mean over seeds [{level:.0%} t-interval]; columns are label fractions.", "",
             *_per_class_table(recall, fractions), ""]
    if any(math.isfinite(iv.estimate) for by_setting in auroc.values() for iv in by_setting.values()):
        lines += ["One-vs-rest AUROC of the same classes (the class's probability ranking its test images above all "
                  "others, whatever the threshold; torchmetrics, each cell's `metrics.json`), mean over seeds "
                  f"[{level:.0%} t-interval]:", "", *_per_class_table(auroc, fractions), ""]
    return lines


def _synthetic_effect_lines(effects: list[Effect], ctx: ReportContext) -> list[str]:
    """The synthetic-effect section: how the pairs are compared, the pooled verdicts, then per condition."""
    lines = ["## Do synthetic images help the minority classes?", ""]
    if not effects:
        return [*lines, "No paired cells (the grid ran synthetic off or on only), so no effect is estimated.", ""]
    lines += [f"![synthetic effect](figures/{FIGURES['synthetic_effect']})", "",
              "Paired comparison: for every initialisation, label fraction and seed, the run with synthetic "
              "images is compared with the run without them on the same test images. Per test image of a class "
              "the difference is 1 (only the synthetic-on run is right), -1 or 0; its mean is the difference in "
              f"recall. The {ctx.level:.0%} interval is a percentile bootstrap ({ctx.n_bootstrap} replicates, "
              f"seed {ctx.bootstrap_seed}) that resamples seeds and, independently, the class's test images, both "
              "with replacement. " + AUROC_RULE + " " + VERDICT_RULE, "",
              "Pooled over every initialisation and label fraction (the verdict):", ""]
    body = [[e.klass, display_name(e.klass), *_metric_cells(e), *_metric_cells(a), str(e.pairs), str(e.seeds),
             str(e.images), *_planned_cell(ctx, e, a)] for e, a in with_auroc(effects) if e.scope == "all"]
    lines += [*_md_table(["class", "name", *METRIC_HEADER, "pairs", "seeds", "test images",
                          *_planned_header(ctx)], body), ""]
    lines += ["By label fraction and by initialisation (descriptive: with this many intervals some exclude 0 by "
              "chance, so read the pooled verdict first):", ""]
    body = [[e.klass, e.scope, _signed(e.interval), _signed(a.interval) if a else "-", str(e.pairs)]
            for e, a in with_auroc(effects) if e.scope != "all"]
    return [*lines, *_md_table(["class", "conditions", "Δ recall [CI]", "Δ AUROC [CI]", "pairs"], body), ""]


def _arm_lines(cells: dict[CellKey, dict[str, Any]], classes: list[str], fractions: list[float],
               ctx: ReportContext) -> list[str]:
    """The arm comparison's opening: what each arm is, the training counts, and per arm balanced accuracy and
    nevus recall."""
    arms = _arms_of(cells)
    lines = ["## Synthetic images against oversampling", "",
             "Arms: " + ", ".join(f"`{a}`" for a in arms) + ". `real`: real images only; `oversample`: real images "
             "only, drawn by the class-balanced sampler without class weights in the loss (`finetune.train "
             "sampler=balanced loss.weighting=none`), the cheap alternative; `oversample<R>`: the same for as "
             "many optimizer steps as `synth<R>` (epochs as long as real + its generated images, drawn from the real "
             "ones: `synth.steps_only=true`), the fair comparison for `synth<R>`; "
             "`synth<R>`: real images plus generated minority images, at most R per real image of the class "
             "(`synth.max_ratio=R`); `filtered`: the generated images the `real` cell's classifier (same fraction, "
             "initialisation and seed) assigns to their class (`finetune.filter_synthetic`). A synthetic arm is worth "
             "its cost only where it beats oversampling, not just `real`.", "",
             f"Balanced accuracy and {MAJORITY_CLASS} ({display_name(MAJORITY_CLASS)}, the majority class) recall "
             f"per arm: mean over seeds [{ctx.level:.0%} t-interval]. A minority-class gain bought with "
             f"{MAJORITY_CLASS} recall shows here.", ""]
    lines += _train_count_lines(cells, classes, ctx)
    lines += _filter_lines(classes, ctx)
    bal = seed_summary(cells, lambda e: e["balanced_accuracy"], ctx.level)
    nv = seed_summary(cells, lambda e: e["recall"].get(MAJORITY_CLASS, math.nan), ctx.level)
    body = []
    for init in dict.fromkeys(k.init for k in bal):
        for arm in arms:
            body.append([init, arm, *(_iv(bal[(f, init, arm)]) if (f, init, arm) in bal else "-" for f in fractions),
                         *(_iv(nv[(f, init, arm)]) if (f, init, arm) in nv else "-" for f in fractions)])
    header = ["initialisation", "arm", *(f"balanced accuracy {f:g}" for f in fractions),
              *(f"{MAJORITY_CLASS} recall {f:g}" for f in fractions)]
    return [*lines, *_md_table(header, body), ""]


def _arm_comparison_lines(cells: dict[CellKey, dict[str, Any]], effects: list[Effect], classes: list[str],
                          fractions: list[float], ctx: ReportContext) -> list[str]:
    """The arm comparison: per arm balanced accuracy and nevus recall, then each synthetic arm's paired
    recall and AUROC differences against its baselines (:func:`bench.grid.config.arm_baselines`) per class, pooled (the
    verdict) and per fraction.

    Args:
        cells: :func:`cell_table`.
        effects: :func:`arm_effects` over ``classes``.
        classes: the minority classes, then nevus.
        fractions: the label fractions (table columns).
        ctx: the report settings.
    """
    lines = _arm_lines(cells, classes, fractions, ctx)
    if not effects:
        return [*lines, "No synthetic arm has a `real` or `oversample` cell of the same fraction, initialisation "
                "and seed, so no paired difference is estimated.", ""]
    lines += ["Paired recall and AUROC differences (arm minus baseline) on the same test images, seeds and "
              f"conditions, with a {ctx.level:.0%} percentile bootstrap over seeds and test images ({ctx.n_bootstrap} "
              f"replicates, seed {ctx.bootstrap_seed}), and the mean of the per-seed differences with its "
              "t-interval. " + AUROC_RULE + " " + VERDICT_RULE + " Pooled over every initialisation and label "
              f"fraction (the verdict); {MAJORITY_CLASS} is the majority class, where a minority gain may be paid "
              "for:", ""]
    pooled = pooled_arm_effects(effects, classes)
    lines += [f"![synthetic arms against real and oversample](figures/{ARM_FIGURE})", ""]
    body = [[e.klass, e.arm, e.baseline, *_metric_cells(e), *_metric_cells(a), str(e.pairs), str(e.seeds),
             str(e.images), *_planned_cell(ctx, e, a)] for e, a in with_auroc(pooled)]
    lines += [*_md_table(["class", "arm", "against", *METRIC_HEADER, "pairs", "seeds", "test images",
                          *_planned_header(ctx)], body), ""]
    order = {c: n for n, c in enumerate(classes)}
    per_fraction = [e for e in effects if e.scope.startswith("fraction ")]
    if len({e.scope for e in per_fraction}) > 1:
        lines += ["By label fraction (descriptive, many intervals):", ""]
        per_fraction.sort(key=lambda e: (order.get(e.klass, len(order)), arm_sort_key(e.arm),
                                         arm_sort_key(e.baseline), e.scope))
        body = [[e.klass, e.arm, e.baseline, e.scope, _signed(e.interval), _verdict_cell(e.decision, bold=False),
                 _signed(a.interval) if a else "-", _verdict_cell(a.decision, bold=False) if a else "-"]
                for e, a in with_auroc(per_fraction)]
        lines += [*_md_table(["class", "arm", "against", "conditions", "Δ recall [CI]", "recall verdict",
                              "Δ AUROC [CI]", "AUROC verdict"], body), ""]
    return lines + _target_lines(cells, [e for e in pooled if e.metric == RECALL], ctx.level)


def _target_lines(cells: dict[CellKey, dict[str, Any]], pooled: list[Effect], level: float) -> list[str]:
    """Whether each synthetic arm meets the target against each of its oversampling arms (``oversample``, and
    ``oversample<R>`` for ``synth<R>``; :data:`TARGET_GAIN`), pooled over every fraction and initialisation, as
    the verdicts above; empty without oversampling cells."""
    arms = _arms_of(cells)
    body = []
    for arm in synthetic_arms(arms):
        for baseline in (b for b in arm_baselines(arm, arms) if parse_arm(b).sampler):
            gains = target_gains(pooled, arm, baseline)
            paired = [entry["balanced_accuracy"] - cells[(f, i, baseline, s)]["balanced_accuracy"]
                      for (f, i, a, s), entry in sorted(cells.items()) if a == arm and (f, i, baseline, s) in cells]
            if not paired:
                continue
            balanced = mean_t_interval(paired, level)
            body.append([arm, baseline, ", ".join(gains) or "none", _signed_or_estimate(balanced),
                         "**met**" if meets_target(gains, balanced.estimate) else "not met"])
    if not body:
        return []
    return [f"Target (issue 12): a synthetic arm {target_rule('oversampling')} (the mean of the paired "
            f"per-cell differences against the oversampling arm at least 0; its {level:.0%} t-interval shown). "
            f"Against `{ARM_OVERSAMPLE}<R>` the two arms trained for as many steps:", "",
            *_md_table(["arm", "against", "classes with the gain", "Δ balanced accuracy [t-interval]", "target"],
                       body), ""]


def target_rule(baseline: str) -> str:
    """Issue 12's target in words, against ``baseline`` (an oversampling arm)."""
    return (f"beats {baseline} by at least {TARGET_GAIN * 100:.0f} recall points, with the verdict **helps**, in at "
            f"least {TARGET_CLASSES} of {', '.join(MINORITY_CLASSES)}, and its balanced accuracy is not lower")


def _plan_lines(ctx: ReportContext, found: Comparisons, seeds: list[int]) -> list[str]:
    """The section on the seed plan (only with ``report.plan``): each planned comparison, the seeds it was
    planned from and said it needed, and its verdict now."""
    if ctx.plan is None:
        return []
    plan = ctx.plan
    now = {c.key: c for c in found.pooled()}
    body = []
    for entry in plan.comparisons:
        k, current = entry.key, now.get(entry.key)
        planned_needs = "-" if entry.seeds_needed is None else str(entry.seeds_needed)
        body.append([METRIC_NAMES.get(k.metric, k.metric), k.klass or "-", k.arm, k.against, k.scope, entry.verdict,
                     planned_needs, str(current.over_seeds.n) if current else "-",
                     _signed(current.interval) if current else "-",
                     _verdict_cell(current.decision) if current else "not in this report"])
    decided = sum(1 for e in plan.comparisons if e.key in now and now[e.key].decision.decided)
    return ["## Planned comparisons", "",
            f"Seed plan `{ctx.plan_path}`, made {plan.created} from seeds {', '.join(map(str, plan.seeds))} of "
            f"{plan.source} (`{plan.command}`); this report has seeds {', '.join(map(str, seeds))}. The "
            f"{len(plan.comparisons)} comparisons it registered are marked *planned* in the tables above (their "
            "verdicts are the confirmatory ones); every other comparison is exploratory. "
            f"Decided now: {decided} of {len(plan.comparisons)}.", "",
            *_md_table(["metric", "class", "arm", "against", "conditions", "verdict when planned",
                        "seeds needed (plan)", "seeds now", "Δ now [CI]", "verdict now"], body), ""]


def write_report(out_dir: Path, rows: list[dict[str, Any]], load: Callable[[str], Predictions],
                 ctx: ReportContext) -> Path:
    """Write ``report.md`` and its figures (under ``figures/``) into ``out_dir``; returns the report path.

    Args:
        out_dir: the benchmark's output folder.
        rows: the rows of ``results.csv`` (:func:`bench.report.results.read_results`).
        load: a cell id -> its test predictions.
        ctx: how the results were made.

    Raises:
        DermkitError: no results to report.
    """
    if not rows:
        raise DermkitError("No finished cells to report on: results.csv is empty.")
    figures = out_dir / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    cells = cell_table(rows)
    seeds = sorted({k.seed for k in cells})
    bal = seed_summary(cells, lambda e: e["balanced_accuracy"], ctx.level)
    found = report_comparisons(cells, load, ctx)
    minority = found.minority
    recall = {c: seed_summary(cells, lambda e, c=c: e["recall"].get(c, math.nan), ctx.level) for c in minority}
    auroc = {c: seed_summary(cells, lambda e, c=c: e["auroc"].get(c, math.nan), ctx.level) for c in minority}
    effects = [e for e in found.synthetic if e.metric == RECALL]  # the figures show recall

    plot_balanced_accuracy(figures / FIGURES["balanced_accuracy"], bal, ctx.level)
    if minority:
        plot_minority_recall(figures / FIGURES["minority_recall"], recall)
    if effects:
        plot_synthetic_effect(figures / FIGURES["synthetic_effect"], effects, ctx.level)
    if found.arms:
        plot_arm_effects(figures / ARM_FIGURE, [e for e in pooled_arm_effects(found.arms, found.compared)
                                                if e.metric == RECALL], ctx.level)
    if found.inits:
        plot_init_effects(figures / INIT_FIGURE, found.inits, ctx.level)

    fractions = sorted({k.fraction for k in bal})  # the columns of both fraction tables
    # A grid of real images only (cpu-real) asks nothing about synthetic images: no section on them.
    synthetic = any(parse_arm(arm).synthetic for arm in _arms_of(cells))
    comparison = (_synthetic_effect_lines(found.synthetic, ctx) if synthetic else []) if found.legacy else \
        _arm_comparison_lines(cells, found.arms, found.compared, fractions, ctx)
    lines = [*_setup_lines(ctx, cells, seeds), *_balanced_accuracy_lines(bal, fractions, ctx.level),
             *_init_effect_lines(found.inits, ctx),
             *_minority_recall_lines(recall, auroc, fractions, ctx.level, synthetic),
             *_generator_quality_lines(ctx, figures), *comparison, *_plan_lines(ctx, found, seeds),
             *_running_time_lines(ctx), *FILES_SECTION]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines))
    return path
