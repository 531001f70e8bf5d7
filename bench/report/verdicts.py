"""Verdicts on a paired comparison: **helps** / **hurts** when its intervals exclude 0 on the same side,
**no effect larger than δ** when they lie within ±δ (:data:`DELTAS`), otherwise **undecided**, with the
seeds the per-seed spread says it needs (:func:`seeds_needed`). The intervals are :mod:`bench.report.stats`'.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bench.report.stats import Interval, t_quantile


HELPS = "helps"
HURTS = "hurts"
NO_EFFECT = "no effect larger than δ"
UNDECIDED = "undecided"
# The smallest difference that matters, per metric: an interval within ±δ says "no effect larger than δ".
# Fixed here, not per run, so that a seed plan and the report it is checked against use the same δ.
DELTA_RECALL = 0.05
DELTA_AUROC = 0.02
DELTA_BALANCED_ACCURACY = 0.02
DELTAS: dict[str, float] = {"recall": DELTA_RECALL, "auroc": DELTA_AUROC, "balanced_accuracy": DELTA_BALANCED_ACCURACY}
# What the seeds still to run have to achieve (Decision.goal).
GOAL_EXCLUDE_ZERO = "exclude 0"
GOAL_WITHIN_DELTA = "lie within ±δ"
MAX_SEEDS = 100_000  # seeds_needed's ceiling: "at least this many"


@dataclass(frozen=True)
class Decision:
    """The verdict on one paired comparison, and what deciding it would take.

    Attributes:
        kind: :data:`HELPS`, :data:`HURTS`, :data:`NO_EFFECT` or :data:`UNDECIDED`.
        delta: δ of the metric (:data:`DELTAS`).
        seeds: seeds behind the per-seed differences (0: no t-interval was given).
        seeds_needed: undecided only: the seeds the spread of the per-seed differences says the
            t-interval needs to reach ``goal`` (:func:`seeds_needed`); None when decided, or with
            fewer than two seeds (no spread to go on).
        goal: what those seeds achieve: :data:`GOAL_EXCLUDE_ZERO` or :data:`GOAL_WITHIN_DELTA`.
        half_width: the t-interval's half-width that reaches ``goal`` (NaN when decided).
    """

    kind: str
    delta: float
    seeds: int = 0
    seeds_needed: int | None = None
    goal: str = ""
    half_width: float = math.nan

    @property
    def verdict(self) -> str:
        """The verdict in words, δ as a number: ``no effect larger than 0.05``."""
        return f"no effect larger than {self.delta:g}" if self.kind == NO_EFFECT else self.kind

    @property
    def decided(self) -> bool:
        """Whether the verdict is one of helps, hurts or no effect larger than δ."""
        return self.kind != UNDECIDED

    @property
    def held_by_images(self) -> bool:
        """Undecided although the t-interval's arithmetic says the seeds there are suffice: the bootstrap
        interval, which also draws the test images, is what stays too wide (more seeds narrow it only in part)."""
        return not self.decided and self.seeds_needed is not None and self.seeds_needed <= self.seeds

    def needs(self) -> str:
        """What deciding takes, in words (empty when decided): ``13 seeds to exclude 0``."""
        if self.decided:
            return ""
        if self.seeds_needed is None:
            return "two seeds at least, to see their spread"
        goal = self.goal.replace("δ", f"{self.delta:g}")
        if self.held_by_images:
            return f"the seeds would {goal}; the test images do not"
        more = "at least " if self.seeds_needed >= MAX_SEEDS else ""
        return f"{more}{self.seeds_needed} seeds to {goal}"


def plan_goal(mean: float, delta: float) -> tuple[str, float]:
    """What is nearer for an undecided comparison with this observed mean: excluding 0 or lying within ±δ.

    An interval centred on ``mean`` excludes 0 once its half-width is below ``|mean|``, and lies
    within ±δ once it is at most ``δ - |mean|``; the larger of the two is reached with fewer seeds.
    So a mean at least δ / 2 from 0 aims to exclude 0, a mean nearer 0 to lie within ±δ.

    Returns:
        The goal (:data:`GOAL_EXCLUDE_ZERO` or :data:`GOAL_WITHIN_DELTA`) and the half-width it needs.
    """
    distance = abs(mean)
    if distance >= delta / 2:
        return GOAL_EXCLUDE_ZERO, distance
    return GOAL_WITHIN_DELTA, delta - distance


def seeds_needed(spread: float, half_width: float, level: float = 0.95) -> int | None:
    """The fewest seeds n (at least 2) whose t-interval half-width ``t_{(1+level)/2, n-1} * spread / sqrt(n)``
    is at most ``half_width``, the spread of the per-seed differences staying as observed.

    Returns:
        n, at most :data:`MAX_SEEDS` (reaching it means "at least that many"); None when ``spread``
        is undefined (fewer than two seeds).

    Raises:
        ValueError: ``half_width`` not positive, or ``spread`` negative.
    """
    if not math.isfinite(spread):
        return None
    if half_width <= 0 or spread < 0:
        raise ValueError(f"half_width must be positive and spread not negative, got {half_width} and {spread}")
    quantile = 0.5 + level / 2

    def fits(n: int) -> bool:
        return t_quantile(quantile, n - 1) * spread / math.sqrt(n) <= half_width

    if fits(2):
        return 2
    low, high = 2, 4  # fits(low) is false; double high until it fits (the half-width falls with n)
    while not fits(high):
        if high >= MAX_SEEDS:
            return MAX_SEEDS
        low, high = high, min(high * 2, MAX_SEEDS)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if fits(middle) else (middle, high)
    return high


def decide(interval: Interval, over_seeds: Interval | None = None, delta: float = 0.0,
           level: float = 0.95) -> Decision:
    """The verdict: **helps** / **hurts** when the interval excludes 0, **no effect larger than δ** when it
    lies within ±δ, otherwise **undecided** with the seeds deciding would need.

    With ``over_seeds`` (the t-interval of the per-seed differences) the rule applies to the hull of
    both intervals: both must exclude 0 on the same side, or both lie within ±δ. A percentile
    bootstrap that draws from 3 seeds sees too little of the seed-to-seed spread: in a simulation
    with 3 seeds, HAM10000's test class counts, a seed-level shift of the logit (sd 0.3) and no
    true effect, its 95% interval excluded 0 in 14% of 300 runs, the t-interval over seeds in 7%
    (how far the bootstrap falls short grows with the seed spread). An undefined t-interval (a
    single seed) decides nothing. An interval that excludes 0 is **helps** / **hurts** even when it
    lies within ±δ: the effect is real, if small. Edges: excluding 0 is strict (an end at 0 does
    not), lying within ±δ is not (an end at ±δ does).

    Undecided, the seeds needed come from the per-seed spread (:func:`seeds_needed`), aiming at the
    nearer goal (:func:`plan_goal`) for the observed mean of the per-seed differences.
    """
    seeds = over_seeds.n if over_seeds is not None else 0
    hull = [interval] if over_seeds is None else [interval, over_seeds]
    if all(i.defined for i in hull):
        low, high = min(i.low for i in hull), max(i.high for i in hull)
        if low > 0:
            return Decision(HELPS, delta, seeds)
        if high < 0:
            return Decision(HURTS, delta, seeds)
        if -delta <= low and high <= delta:
            return Decision(NO_EFFECT, delta, seeds)
    if over_seeds is None or not over_seeds.defined:
        return Decision(UNDECIDED, delta, seeds)
    goal, half_width = plan_goal(over_seeds.estimate, delta)
    if half_width <= 0:  # δ = 0 and a mean of exactly 0: no finite number of seeds decides
        return Decision(UNDECIDED, delta, seeds, MAX_SEEDS, goal, half_width)
    return Decision(UNDECIDED, delta, seeds, seeds_needed(over_seeds.spread, half_width, level), goal, half_width)


def verdict(interval: Interval, over_seeds: Interval | None = None, delta: float = 0.0) -> str:
    """:func:`decide`'s verdict in words."""
    return decide(interval, over_seeds, delta).verdict
