"""The numbers of a grid's report: its cells as named records, the mean over seeds of each setting, and the
paired comparisons (synthetic images against real ones, each arm against its baselines, each
initialisation against random) with their bootstrap intervals and verdicts (:mod:`bench.report.stats`).
"""

from __future__ import annotations

import math
import numpy as np
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from dermkit.errors import DermkitError
from dermkit.vocab import MINORITY_CLASSES
from bench.grid.config import ARM_REAL, ARM_SYNTH, LEGACY_ARMS, arm_baselines, arm_sort_key, parse_arm
from bench.report.comparison_plan import ComparisonKey, SeedPlan
from bench.report.results import Predictions
from bench.report.stats import (Interval, auroc_kernel, balanced_accuracy_differences, mean_t_interval,
                                paired_auroc_bootstrap, paired_bootstrap)
from bench.report.verdicts import DELTAS, HELPS, Decision, decide


RECALL, AUROC, BALANCED_ACCURACY = "recall", "auroc", "balanced_accuracy"  # the metrics compared (keys of DELTAS)
MAJORITY_CLASS = "nv"  # nevus: where a minority-class gain would be paid for


class StepTime(NamedTuple):
    """A finished step's time over all its attempts (``done.json``)."""

    seconds: float  # wall clock
    cpu_seconds: float  # user + system of the stage process


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


BASELINE_INIT = "random"
METRIC_NAMES = {RECALL: "recall", AUROC: "AUROC", BALANCED_ACCURACY: "balanced accuracy"}
# Issue 12's benchmark target for a synthetic arm against oversampling: this gain in recall, with the
# verdict "helps", in at least TARGET_CLASSES of the minority classes, and balanced accuracy not lower.
TARGET_GAIN = 0.05
TARGET_CLASSES = 2


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
    timings: dict[str, StepTime] = field(default_factory=dict)
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
        """:func:`bench.report.verdicts.decide` on both intervals with the metric's δ."""
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
        """:func:`bench.report.verdicts.decide` on both intervals with balanced accuracy's δ."""
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
