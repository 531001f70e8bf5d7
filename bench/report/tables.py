"""The benchmark report: ``report.md`` with PNG figures, from ``results.csv`` and the cells' predictions.

Sections: the setup (data, preset, command, seeds; demo data flagged as never evidence), balanced
accuracy against label fraction per initialisation (mean over seeds with a Student-t interval),
minority-class recall and one-vs-rest AUROC with and without synthetic images, and per class the paired
effect of synthetic images on recall (:func:`bench.report.stats.paired_bootstrap`) and on AUROC
(:func:`bench.report.stats.paired_auroc_bootstrap`) with a verdict (:func:`bench.report.stats.decide`: helps, hurts, no
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
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

from dermkit.errors import DermkitError
from dermkit.vocab import MINORITY_CLASSES, display_name
from bench.grid.config import ARM_OVERSAMPLE, ARM_REAL, ARM_SYNTH, LEGACY_ARMS, arm_baselines, arm_sort_key, parse_arm
from bench.report.comparison_plan import ComparisonKey, SeedPlan
from bench.report.results import Predictions
from bench.report.stats import (DELTAS, HELPS, HURTS, NO_EFFECT, Decision, Interval, auroc_kernel,
                         balanced_accuracy_differences, decide, mean_t_interval, paired_auroc_bootstrap, paired_bootstrap)

MAJORITY_CLASS = "nv"  # nevus: where a minority-class gain would be paid for
RECALL, AUROC, BALANCED_ACCURACY = "recall", "auroc", "balanced_accuracy"  # the metrics compared (keys of DELTAS)


class CellKey(NamedTuple):
    """One cell of the grid in the report's tables; sorts (and hashes) as the tuple ``(fraction, init, arm, seed)``."""

    fraction: float
    init: str
    arm: str
    seed: int


class SettingKey(NamedTuple):
    """A cell's setting, its seeds pooled: ``(fraction, init, arm)``."""

    fraction: float
    init: str
    arm: str


class PairKey(NamedTuple):
    """A (fraction, init, seed) with a cell of both arms compared."""

    fraction: float
    init: str
    seed: int


FIGURES = {
    "balanced_accuracy": "balanced_accuracy.png",
    "minority_recall": "minority_recall.png",
    "synthetic_effect": "synthetic_effect.png",
}
ARM_FIGURE = "arm_effect.png"  # only in grids with arms beyond real and synth
INIT_FIGURE = "init_effect.png"  # only in grids with random and another initialisation
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
BASELINE_INIT = "random"
METRIC_NAMES = {RECALL: "recall", AUROC: "AUROC", BALANCED_ACCURACY: "balanced accuracy"}
# The columns of one recall and one AUROC comparison side by side (_metric_cells of each).
METRIC_HEADER = ("Δ recall [CI]", "recall over seeds [t-interval]", "recall verdict", "Δ AUROC [CI]",
                 "AUROC over seeds [t-interval]", "AUROC verdict")
AUROC_RULE = ("Δ AUROC is the paired difference in the class's one-vs-rest AUROC (its probability ranking its own "
              "test images above all others, threshold-free), bootstrapped the same way: seeds, then the class's "
              "test images and the other test images (within their classes), one draw of images serving every "
              "seed drawn since every seed was tested on the same images.")
# Issue 12's benchmark target for a synthetic arm against oversampling: this gain in recall, with the
# verdict "helps", in at least TARGET_CLASSES of the minority classes, and balanced accuracy not lower.
TARGET_GAIN = 0.05
TARGET_CLASSES = 2
# The report's last section: what else the benchmark folder holds.
FILES_SECTION = ("## Files", "", "- `results.csv`: one row per cell and class (fraction, init, synthetic, arm, seed, "
                 "class, recall, precision, f1, auroc, support, balanced_accuracy, accuracy).",
                 "- `cells/<cell>/`: each fine-tuning run (metrics.json, predictions.csv, config.yaml, run.json, "
                 "stage.log; an exported copy leaves out stage.log and the checkpoints).", "")
LINE_STYLES = ("-", "--", ":", "-.", (0, (5, 1)), (0, (1, 3)), (0, (3, 1, 1, 1, 1, 1)))
INIT_COLOURS = {"random": "tab:gray", "simclr": "tab:blue", "dino": "tab:orange", "imagenet": "tab:green"}


@dataclass
class ReportContext:
    """What the report states about how its numbers were made.

    Attributes:
        preset: preset name.
        about: the preset's one-line description.
        command: the command line that produced the results.
        data: the data description (``PreparedData.describe()``: name, root, images, split hash, ...).
        test_counts: test images per class.
        minority_classes: classes whose recall and synthetic effect are reported.
        settings: further lines for the setup section (backbone, stage overrides, ...).
        caveats: warnings the reader must see (e.g. the generator saw more labels).
        timings: (wall, CPU) seconds per step name (from ``done.json``), for the running-time section.
        wall_seconds: wall-clock seconds of the invocation that wrote the report (0: not stated).
        level: confidence level.
        n_bootstrap: bootstrap replicates.
        bootstrap_seed: seed of the resampling.
        train_counts: per cell id, the training images per class its ``metrics.json`` records
            (``{"real": {class: n}, "synthetic": {class: n}}``): what each arm trained on.
        filter_acceptance: per filter step (``f0.1-random-s0``), the acceptance per class its
            ``manifest.json`` records (``{class: {"scored": n, "kept": m, "rate": m / n}}``).
        untimed_attempts: per step name, the attempts whose time was lost (the grid was killed while
            they ran): that step's times are lower bounds.
        generator_quality: per generator (``f0.1``), its ``synth.evaluate`` report (``metrics.json``)
            and the folder holding its ``grids/<class>.png``.
        plan: the seed plan (``report.plan``) whose comparisons the report marks as planned; None: none.
        plan_path: where that plan was read from, as the report names it.
    """

    preset: str
    about: str
    command: str
    data: dict[str, Any]
    test_counts: dict[str, int]
    minority_classes: list[str]
    settings: list[str] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)
    timings: dict[str, tuple[float, float]] = field(default_factory=dict)
    wall_seconds: float = 0.0
    level: float = 0.95
    n_bootstrap: int = 5000
    bootstrap_seed: int = 0
    train_counts: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    filter_acceptance: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    untimed_attempts: dict[str, int] = field(default_factory=dict)
    generator_quality: dict[str, tuple[dict[str, Any], Path]] = field(default_factory=dict)
    plan: SeedPlan | None = None
    plan_path: str = ""


@dataclass(frozen=True)
class Effect:
    """The paired effect of an arm on one class's recall or AUROC against a baseline arm, over a set of conditions.

    Attributes:
        klass: class name.
        scope: which conditions were pooled (``all``, ``fraction 0.1``, ``init simclr``).
        interval: mean difference (arm minus baseline) with its bootstrap interval over seeds and test images.
        pairs: (init, fraction, seed) pairs compared.
        seeds: distinct seeds among them.
        images: test images of the class.
        arm: the arm compared (``synth`` for the older on/off comparison).
        baseline: the arm it is compared against (``real``, ``oversample`` or ``oversample<R>``).
        over_seeds: the mean of the per-seed differences with its Student-t interval.
        metric: ``recall`` or ``auroc`` (one-vs-rest, the class against every other).
    """

    klass: str
    scope: str
    interval: Interval
    pairs: int
    seeds: int
    images: int
    arm: str = ARM_SYNTH
    baseline: str = ARM_REAL
    over_seeds: Interval = field(default_factory=lambda: Interval(math.nan, math.nan, math.nan, 0))
    metric: str = RECALL

    @property
    def decision(self) -> Decision:
        """:func:`bench.report.stats.decide` on both intervals with the metric's δ."""
        return decide(self.interval, self.over_seeds, DELTAS[self.metric], self.interval.level)

    @property
    def verdict(self) -> str:
        """The decision's verdict in words."""
        return self.decision.verdict

    @property
    def key(self) -> ComparisonKey:
        """How a seed plan names this comparison."""
        return ComparisonKey(self.metric, self.klass, self.arm, self.baseline, self.scope)


def arm_label(arm: str, long: bool = False, legacy: bool = True) -> str:
    """How tables name an arm: in a grid of the older arms only (``legacy``), ``real``/``synth`` as
    synthetic ``off``/``on`` (``real``/``synthetic`` when ``long``); otherwise by its name."""
    if legacy and arm in LEGACY_ARMS:
        return ("synthetic" if arm == ARM_SYNTH else "real") if long else ("on" if arm == ARM_SYNTH else "off")
    return arm


def _row_arm(row: dict[str, Any]) -> str:
    """A result row's arm; rows of a results.csv written before arms existed derive it from ``synthetic``."""
    return str(row.get("arm") or (ARM_SYNTH if row["synthetic"] else ARM_REAL))


def _arms_of(keys: Any) -> list[str]:
    """The distinct arms of cell or setting keys, in report order."""
    return sorted({k.arm for k in keys}, key=arm_sort_key)


# -- numbers ----------------------------------------------------------------------------------
def cell_table(rows: list[dict[str, Any]]) -> dict[CellKey, dict[str, Any]]:
    """One entry per cell ``(fraction, init, arm, seed)``: balanced accuracy, recall and AUROC per class (AUROC NaN
    from a ``results.csv`` written without it)."""
    cells: dict[CellKey, dict[str, Any]] = {}
    for r in rows:
        key = CellKey(r["fraction"], r["init"], _row_arm(r), r["seed"])
        entry = cells.setdefault(key, {"cell_id": r["cell_id"], "balanced_accuracy": r["balanced_accuracy"],
                                       "accuracy": r["accuracy"], "recall": {}, "auroc": {}})
        entry["recall"][r["class"]] = r["recall"]
        entry["auroc"][r["class"]] = r.get("auroc", math.nan)
    return cells


def seed_summary(cells: dict[CellKey, dict[str, Any]], value: Callable[[dict], float],
                 level: float) -> dict[SettingKey, Interval]:
    """Mean and t-interval over seeds of ``value(cell)`` per ``(fraction, init, arm)``."""
    groups: dict[SettingKey, list[float]] = defaultdict(list)
    for (fraction, init, arm, _seed), entry in sorted(cells.items()):
        groups[SettingKey(fraction, init, arm)].append(value(entry))
    return {k: mean_t_interval(v, level) for k, v in groups.items()}


def _load_pair(cells: dict[CellKey, dict[str, Any]], load: Callable[[str], Predictions], baseline: CellKey,
               other: CellKey) -> tuple[Predictions, Predictions]:
    """The test predictions of two cells compared image by image (baseline first).

    Raises:
        DermkitError: the two cells were tested on different images.
    """
    base_id, other_id = cells[baseline]["cell_id"], cells[other]["cell_id"]
    base, found = load(base_id), load(other_id)
    if not np.array_equal(base.image_ids, found.image_ids):
        raise DermkitError(f"Cells {base_id} and {other_id} "
                           "were tested on different images; their split settings differ. Re-run the grid.")
    return base, found


Scope = tuple[str, Callable[[PairKey], bool]]  # a name and which pairs it pools


def synthetic_effects(cells: dict[CellKey, dict[str, Any]], load: Callable[[str], Predictions],
                      classes: list[str], ctx: ReportContext, arm: str = ARM_SYNTH,
                      baseline: str = ARM_REAL) -> list[Effect]:
    """Paired effect of ``arm`` against ``baseline`` on each class's recall and AUROC: pooled, then per fraction and
    per init.

    For every (init, fraction, seed) with a cell of both arms, the per-image difference
    ``correct_arm - correct_baseline`` over the class's test images is taken; per seed these are
    averaged over the conditions in scope, giving a (seeds, images) array for
    :func:`paired_bootstrap`. The AUROC effects (:func:`auroc_effects`), where the predictions hold
    probabilities, follow the recall effects. The defaults are the older comparison: synthetic
    images on (``synth``) against off (``real``).

    Raises:
        DermkitError: the two cells of a pair were tested on different images.
    """
    pairs = sorted({PairKey(f, i, s) for (f, i, a, s) in cells if a == arm and (f, i, baseline, s) in cells})
    if not pairs:
        return []
    loaded = {PairKey(f, i, s): _load_pair(cells, load, (f, i, baseline, s), (f, i, arm, s)) for f, i, s in pairs}
    scopes: list[Scope] = [("all", lambda p: True)]
    scopes += [(f"fraction {f:g}", lambda p, f=f: p.fraction == f) for f in sorted({p.fraction for p in pairs})]
    scopes += [(f"init {i}", lambda p, i=i: p.init == i) for i in sorted({p.init for p in pairs})]
    effects = []
    for klass in classes:
        for scope, keep in scopes:
            chosen = [p for p in pairs if keep(p)]
            by_seed: dict[int, list[np.ndarray]] = defaultdict(list)
            for p in chosen:
                off, on = loaded[p]
                mask = off.true == klass
                by_seed[p.seed].append(on.correct[mask].astype(float) - off.correct[mask].astype(float))
            if not by_seed or not next(iter(by_seed.values()))[0].size:
                continue
            matrix = np.stack([np.mean(by_seed[s], axis=0) for s in sorted(by_seed)])  # (S, N_class)
            interval = paired_bootstrap(matrix, ctx.n_bootstrap, ctx.level, ctx.bootstrap_seed)
            effects.append(Effect(klass, scope, interval, len(chosen), len(by_seed), matrix.shape[1], arm, baseline,
                                  mean_t_interval(matrix.mean(axis=1), ctx.level)))
    return effects + auroc_effects(loaded, classes, scopes, ctx, arm, baseline)


def auroc_effects(loaded: dict[PairKey, tuple[Predictions, Predictions]], classes: list[str], scopes: list[Scope],
                  ctx: ReportContext, arm: str, baseline: str) -> list[Effect]:
    """Paired effect of ``arm`` against ``baseline`` on each class's one-vs-rest AUROC, per scope.

    Per (fraction, init, seed) the kernel difference :func:`bench.report.stats.auroc_kernel` of the arm's
    cell minus the baseline's (class probability, the class's test images against all others) is
    averaged per seed over the conditions in scope and bootstrapped over seeds, then test images
    (:func:`bench.report.stats.paired_auroc_bootstrap`, the other images drawn within their class). A class
    without probabilities in either cell's predictions, or without test images, gets none.

    Args:
        loaded: per pair, the (baseline, arm) test predictions.
        classes: the classes compared.
        scopes: which pairs each scope pools.
        ctx: the bootstrap settings.
        arm: the arm compared.
        baseline: its baseline.
    """
    effects = []
    true = next(iter(loaded.values()))[0].true  # (N,) every pair was tested on these images (checked by the caller)
    for klass in classes:
        positive = true == klass
        if positive.all() or not positive.any() or any(p.scores(klass) is None for pair in loaded.values()
                                                      for p in pair):
            continue
        for scope, keep in scopes:
            chosen = [p for p in loaded if keep(p)]
            by_seed: dict[int, list[np.ndarray]] = defaultdict(list)  # per seed, (P, Q) kernel differences
            for p in chosen:
                off, on = loaded[p]
                by_seed[p.seed].append(auroc_kernel(on.scores(klass), positive)
                                     - auroc_kernel(off.scores(klass), positive))
            kernels = np.stack([np.mean(by_seed[s], axis=0) for s in sorted(by_seed)])  # (S, P, Q)
            interval = paired_auroc_bootstrap(kernels, ctx.n_bootstrap, ctx.level, ctx.bootstrap_seed,
                                              negative_strata=true[~positive])
            per_seed = kernels.mean(axis=(1, 2), dtype=np.float64)  # (S,) each seed's AUROC difference
            effects.append(Effect(klass, scope, interval, len(chosen), len(by_seed), int(positive.sum()), arm, baseline,
                                  mean_t_interval(per_seed, ctx.level), AUROC))
    return effects


@dataclass(frozen=True)
class InitEffect:
    """The paired effect of an initialisation on balanced accuracy against random initialisation.

    Attributes:
        init: the initialisation compared (``simclr``, ``dino``, ``imagenet``).
        fraction: label fraction.
        arm: the arm of both cells (``real`` in a grid without synthetic images).
        interval: mean difference in balanced accuracy (init minus random) with its bootstrap interval
            over seeds and test images.
        per_seed: ``(seed, difference)`` of each seed with both cells, in seed order.
        over_seeds: mean of the per-seed differences with its Student-t interval (n - 1 degrees of freedom).
        images: test images.
    """

    init: str
    fraction: float
    arm: str
    interval: Interval
    per_seed: tuple[tuple[int, float], ...]
    over_seeds: Interval
    images: int

    @property
    def decision(self) -> Decision:
        """:func:`bench.report.stats.decide` on both intervals with balanced accuracy's δ."""
        return decide(self.interval, self.over_seeds, DELTAS[BALANCED_ACCURACY], self.interval.level)

    @property
    def verdict(self) -> str:
        """The decision's verdict in words."""
        return self.decision.verdict

    @property
    def key(self) -> ComparisonKey:
        """How a seed plan names this comparison."""
        return ComparisonKey(BALANCED_ACCURACY, "", self.init, BASELINE_INIT,
                             f"fraction {self.fraction:g}, arm {self.arm}")


def init_effects(cells: dict[CellKey, dict[str, Any]], load: Callable[[str], Predictions],
                 ctx: ReportContext) -> list[InitEffect]:
    """Every initialisation against ``random`` per label fraction and arm, on balanced accuracy.

    For each seed with both cells, ``correct_init - correct_random`` per test image is weighted so that
    its mean is the difference in balanced accuracy (:func:`balanced_accuracy_differences`); the
    (seeds, images) array goes to :func:`paired_bootstrap` with the true classes as strata.

    Raises:
        DermkitError: the two cells of a pair were tested on different images.
    """
    effects = []
    groups = sorted({SettingKey(f, i, a) for (f, i, a, _s) in cells if i != BASELINE_INIT},
                    key=lambda k: (k.init, arm_sort_key(k.arm), k.fraction))
    for fraction, init, arm in groups:
        seeds = sorted(s for (f, i, a, s) in cells if (f, i, a) == (fraction, init, arm)
                       and (fraction, BASELINE_INIT, arm, s) in cells)
        if not seeds:
            continue
        pairs = [_load_pair(cells, load, (fraction, BASELINE_INIT, arm, seed), (fraction, init, arm, seed))
                 for seed in seeds]
        interval, per_seed, over_seeds = paired_balanced_accuracy(pairs, ctx, f"{init} and random at fraction "
                                                                  f"{fraction:g}")
        effects.append(InitEffect(init, fraction, arm, interval, tuple(zip(seeds, per_seed)), over_seeds,
                                  pairs[0][0].true.size))
    return effects


def paired_balanced_accuracy(pairs: list[tuple[Predictions, Predictions]], ctx: ReportContext,
                             what: str) -> tuple[Interval, list[float], Interval]:
    """The difference in balanced accuracy, second cell minus first, of ``(baseline, other)`` pairs, one per seed.

    ``correct_other - correct_baseline`` per test image is weighted so that its mean is the difference
    in balanced accuracy (:func:`balanced_accuracy_differences`); the (seeds, images) array goes to
    :func:`paired_bootstrap` with the true classes as strata.

    Args:
        pairs: the test predictions of each seed's two cells, baseline first.
        ctx: the bootstrap settings.
        what: the comparison, as an error names it.

    Returns:
        The bootstrap interval over seeds and images, the per-seed differences in pair order, and
        their mean with its Student-t interval.

    Raises:
        DermkitError: the cells were not all tested on the same images.
    """
    ids = pairs[0][0].image_ids
    if any(not np.array_equal(p.image_ids, ids) for pair in pairs for p in pair):
        raise DermkitError(f"The seeds of {what} were tested on different images; their split settings differ. "
                           "Re-run the grid.")
    true = pairs[0][0].true
    d = balanced_accuracy_differences(np.stack([other.correct for _, other in pairs]),
                                      np.stack([base.correct for base, _ in pairs]), true)  # (S, N)
    interval = paired_bootstrap(d, ctx.n_bootstrap, ctx.level, ctx.bootstrap_seed, strata=true)
    per_seed = [float(row.mean()) for row in d]
    return interval, per_seed, mean_t_interval(per_seed, ctx.level)


def synthetic_arms(arms: list[str]) -> list[str]:
    """The arms that add synthetic images (``synth``, ``synth<R>``, ``filtered``...), in report order."""
    return [a for a in sorted(arms, key=arm_sort_key) if parse_arm(a).synthetic]


def arm_effects(cells: dict[CellKey, dict[str, Any]], load: Callable[[str], Predictions], classes: list[str],
                ctx: ReportContext) -> list[Effect]:
    """Every synthetic arm against each of its baseline arms present (:func:`bench.grid.config.arm_baselines`), per
    class.

    Args:
        cells: :func:`cell_table`.
        load: a cell id -> its test predictions.
        classes: the classes compared (the minority classes and nevus).
        ctx: the bootstrap settings.
    """
    present = _arms_of(cells)
    effects: list[Effect] = []
    for arm in synthetic_arms(present):
        for baseline in arm_baselines(arm, present):
            effects += synthetic_effects(cells, load, classes, ctx, arm, baseline)
    return effects


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


# -- markdown ---------------------------------------------------------------------------------
def _iv(interval: Interval) -> str:
    if not math.isfinite(interval.estimate):
        return "-"
    if not interval.defined:
        return f"{interval.estimate:.3f} (n={interval.n})"
    return f"{interval.estimate:.3f} [{interval.low:.3f}, {interval.high:.3f}]"


def _signed(interval: Interval) -> str:
    return f"{interval.estimate:+.3f} [{interval.low:+.3f}, {interval.high:+.3f}]"


def _signed_or_estimate(interval: Interval) -> str:
    """A signed interval, or the signed estimate alone where the interval is undefined (one seed)."""
    return _signed(interval) if interval.defined else f"{interval.estimate:+.3f}"


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


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


def _verdict_cell(decision: Decision, bold: bool = True) -> str:
    """A verdict as a table shows it, with what deciding takes when undecided: ``**undecided** (13 seeds to
    exclude 0)``."""
    text = f"**{decision.verdict}**" if bold else decision.verdict
    needs = decision.needs()
    return f"{text} ({needs})" if needs else text


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
        pairs = sorted(dict.fromkeys((k.init, k.arm) for k in by_setting), key=lambda pair: (pair[0], arm_sort_key(pair[1])))
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


def target_gains(effects: Iterable[Effect], arm: str, baseline: str) -> list[str]:
    """The minority classes in which ``arm`` beats ``baseline`` by :data:`TARGET_GAIN` recall with the verdict
    "helps" (pooled effects: one per class, arm and baseline)."""
    return [e.klass for e in effects if e.arm == arm and e.baseline == baseline and e.klass in MINORITY_CLASSES
            and e.metric == RECALL and e.decision.kind == HELPS and e.interval.estimate >= TARGET_GAIN]


def meets_target(gains: list[str], balanced_accuracy_difference: float) -> bool:
    """Issue 12's target: the gain in at least :data:`TARGET_CLASSES` minority classes (:func:`target_gains`)
    and a mean paired difference in balanced accuracy of at least 0."""
    return len(gains) >= TARGET_CLASSES and balanced_accuracy_difference >= 0


def pooled_arm_effects(effects: list[Effect], classes: list[str]) -> list[Effect]:
    """The pooled (``all``) arm comparisons in report order: by class, arm, then baseline."""
    order = {c: n for n, c in enumerate(classes)}
    return sorted((e for e in effects if e.scope == "all"),
                  key=lambda e: (order.get(e.klass, len(order)), arm_sort_key(e.arm), arm_sort_key(e.baseline)))


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
    groups: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for name, times in ctx.timings.items():
        groups[name.split("/")[0]].append(times)
    body = [[g, str(len(v)), f"{sum(t[0] for t in v):.0f}", f"{sum(t[1] for t in v):.0f}",
             f"{np.mean([t[0] for t in v]):.1f}"] for g, v in groups.items()]
    body.append(["total", str(len(ctx.timings)), f"{sum(t[0] for t in ctx.timings.values()):.0f}",
                 f"{sum(t[1] for t in ctx.timings.values()):.0f}", ""])
    lines += [*_md_table(["stage", "steps", "wall s", "CPU s", "mean wall s per step"], body), ""]
    if ctx.wall_seconds:
        lines += [f"This invocation took {ctx.wall_seconds:.0f} s of wall-clock time end to end.", ""]
    return lines


@dataclass(frozen=True)
class Comparisons:
    """Every paired comparison a grid's report makes (:func:`report_comparisons`).

    Attributes:
        legacy: the grid has the older arms only (``real``, ``synth``): ``synthetic`` holds its comparison.
        minority: the minority classes tested.
        compared: the classes the arm comparison covers (the minority classes, then nevus).
        synthetic: the older on/off comparison (:func:`synthetic_effects`), recall and AUROC.
        arms: every synthetic arm against its baselines (:func:`arm_effects`), recall and AUROC.
        inits: every initialisation against random, on balanced accuracy (:func:`init_effects`).
    """

    legacy: bool
    minority: list[str]
    compared: list[str]
    synthetic: list[Effect]
    arms: list[Effect]
    inits: list[InitEffect]

    def pooled(self) -> list[Effect | InitEffect]:
        """The comparisons that carry a verdict: pooled over conditions (``all``), and every initialisation effect."""
        return [*(e for e in [*self.synthetic, *self.arms] if e.scope == "all"), *self.inits]


def report_comparisons(cells: dict[CellKey, dict[str, Any]], load: Callable[[str], Predictions],
                       ctx: ReportContext) -> Comparisons:
    """The paired comparisons of a grid's cells, as its report makes them (and ``bench.seed_plan`` plans them).

    Raises:
        DermkitError: two cells of a pair were tested on different images.
    """
    minority = [c for c in ctx.minority_classes if any(c in e["recall"] for e in cells.values())]
    # The older on/off comparison for grids of the arms real and synth only; a grid of more arms gets
    # the arm comparison (which compares synth against real too) instead.
    legacy = set(_arms_of(cells)) <= set(LEGACY_ARMS)
    compared = [*minority, *([MAJORITY_CLASS] if any(MAJORITY_CLASS in e["recall"] for e in cells.values()) and
                            MAJORITY_CLASS not in minority else [])]
    return Comparisons(legacy, minority, compared, synthetic_effects(cells, load, minority, ctx) if legacy else [],
                       [] if legacy else arm_effects(cells, load, compared, ctx), init_effects(cells, load, ctx))


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
