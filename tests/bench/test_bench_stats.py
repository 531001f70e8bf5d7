"""Intervals over seeds and the paired bootstrap (bench.stats)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.report.stats import (Interval, auroc_kernel, balanced_accuracy_differences, mean_t_interval,
                                paired_auroc_bootstrap, paired_bootstrap, rank_auroc, t_quantile)
from bench.report.verdicts import (DELTAS, GOAL_EXCLUDE_ZERO, GOAL_WITHIN_DELTA, HELPS, HURTS, MAX_SEEDS, NO_EFFECT,
                                   UNDECIDED, decide, plan_goal, seeds_needed, verdict)


@pytest.mark.parametrize(("df", "expected"), [(1, 12.7062), (2, 4.3027), (4, 2.7764), (10, 2.2281), (30, 2.0423)])
def test_t_quantile_matches_tables(df: int, expected: float) -> None:
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-3)
    assert t_quantile(0.025, df) == pytest.approx(-expected, abs=1e-3)


def test_mean_t_interval_by_hand() -> None:
    # values 1, 2, 3: mean 2, sd 1, half-width t(0.975, 2) / sqrt(3) = 4.3027 / 1.7321.
    iv = mean_t_interval([1.0, 2.0, 3.0])
    assert iv.estimate == pytest.approx(2.0)
    assert iv.high - iv.estimate == pytest.approx(4.3027 / math.sqrt(3), abs=1e-3)
    assert iv.estimate - iv.low == pytest.approx(iv.high - iv.estimate)
    assert iv.n == 3


def test_mean_t_interval_single_value_has_no_interval() -> None:
    iv = mean_t_interval([0.7, float("nan")])
    assert iv.estimate == pytest.approx(0.7) and iv.n == 1 and not iv.defined


def _paired(rng: np.random.Generator, seeds: int, images: int, p_off: float, p_on: float) -> np.ndarray:
    """(seeds, images) paired differences of two classifiers with per-image recall p_off and p_on.

    Each image has its own difficulty, shared by both runs and all seeds (that is what pairing
    removes); the run-to-run noise is independent.
    """
    difficulty = rng.normal(0, 1, images)  # (N,)
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    sigmoid = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    off = rng.random((seeds, images)) < sigmoid(logit(p_off) - difficulty)
    on = rng.random((seeds, images)) < sigmoid(logit(p_on) - difficulty)
    return on.astype(float) - off.astype(float)


def test_bootstrap_covers_a_known_difference_and_says_helps() -> None:
    rng = np.random.default_rng(1)
    d = _paired(rng, seeds=5, images=400, p_off=0.5, p_on=0.75)
    iv = paired_bootstrap(d, n_boot=2000, seed=0)
    true_difference = float(d.mean())  # constructed: about 0.2
    assert iv.low < true_difference < iv.high
    assert 0.1 < iv.estimate < 0.3
    assert iv.low > 0 and verdict(iv) == HELPS


def test_bootstrap_of_a_harmful_change_says_hurts() -> None:
    d = _paired(np.random.default_rng(2), seeds=4, images=400, p_off=0.8, p_on=0.55)
    assert verdict(paired_bootstrap(d, n_boot=1000)) == HURTS


def test_bootstrap_of_no_change_covers_zero() -> None:
    d = _paired(np.random.default_rng(3), seeds=3, images=300, p_off=0.6, p_on=0.6)
    iv = paired_bootstrap(d, n_boot=1000)
    assert iv.low < 0 < iv.high and decide(iv).kind == UNDECIDED  # δ = 0: nothing lies within ±0


def test_bootstrap_coverage_is_near_nominal() -> None:
    # 120 constructed experiments with the same true effect; the 95% interval must cover the
    # population difference in most of them (a broken resampling gives far fewer).
    rng = np.random.default_rng(4)
    covered = 0
    for rep in range(120):
        off = rng.random((3, 150)) < 0.55
        on = rng.random((3, 150)) < 0.65
        iv = paired_bootstrap(on.astype(float) - off.astype(float), n_boot=400, seed=rep)
        covered += iv.low < 0.10 < iv.high
    assert covered / 120 >= 0.85


def test_bootstrap_is_reproducible_and_rejects_bad_input() -> None:
    d = _paired(np.random.default_rng(5), seeds=3, images=50, p_off=0.5, p_on=0.6)
    assert paired_bootstrap(d, seed=7) == paired_bootstrap(d, seed=7)
    with pytest.raises(ValueError):
        paired_bootstrap(np.zeros(10))
    with pytest.raises(ValueError):
        paired_bootstrap(np.array([[0.0, np.nan]]))


def _balanced_accuracy(correct: np.ndarray, true: np.ndarray) -> float:
    return float(np.mean([correct[true == c].mean() for c in np.unique(true)]))


def test_balanced_accuracy_differences_average_to_the_difference_in_balanced_accuracy() -> None:
    rng = np.random.default_rng(6)
    true = rng.choice(np.array(["nv", "mel", "df"]), size=300, p=[0.8, 0.17, 0.03])  # (N,) imbalanced
    a, b = rng.random((3, 300)) < 0.7, rng.random((3, 300)) < 0.5  # (S, N)
    d = balanced_accuracy_differences(a, b, true)
    expected = np.mean([_balanced_accuracy(a[s], true) - _balanced_accuracy(b[s], true) for s in range(3)])
    assert d.shape == (3, 300) and d.mean() == pytest.approx(expected)
    # plain accuracy would weight nv by its 80%: not the same number
    assert abs(float((a.astype(float) - b).mean()) - expected) > 1e-3


def test_stratified_bootstrap_keeps_each_stratum_whole() -> None:
    # Every image of a stratum has the same difference: drawing within strata cannot change the
    # mean (zero-width interval), drawing across them can.
    strata = np.repeat([0, 1, 2], [50, 30, 20])
    d = np.where(strata == 2, 1.0, 0.0)[None, :]  # (1, 100)
    stratified = paired_bootstrap(d, n_boot=500, strata=strata)
    assert stratified.low == stratified.high == pytest.approx(0.2)
    plain = paired_bootstrap(d, n_boot=500)
    assert plain.high - plain.low > 0.05
    with pytest.raises(ValueError, match="one label per image"):
        paired_bootstrap(d, strata=strata[:10])


def test_stratified_bootstrap_of_balanced_accuracy_covers_the_true_difference() -> None:
    # 100 constructed experiments: classes of 200, 40 and 20 test images; run A is better than B on df
    # only (0.8 against 0.5), so the true difference in balanced accuracy is 0.3 / 3 = 0.1 while the
    # difference in plain accuracy is 0.3 x 20 / 260 = 0.023.
    rng = np.random.default_rng(7)
    true = np.repeat(np.array(["nv", "mel", "df"]), [200, 40, 20])
    p_a = np.where(true == "df", 0.8, 0.7)  # (N,)
    p_b = np.where(true == "df", 0.5, 0.7)
    covered, estimates, unweighted = 0, [], []
    for rep in range(100):
        a, b = rng.random((3, 260)) < p_a, rng.random((3, 260)) < p_b
        iv = paired_bootstrap(balanced_accuracy_differences(a, b, true), n_boot=400, seed=rep, strata=true)
        covered += iv.low < 0.10 < iv.high
        estimates.append(iv.estimate)
        unweighted.append(float((a.astype(float) - b).mean()))
    assert covered / 100 >= 0.85
    assert np.mean(estimates) == pytest.approx(0.10, abs=0.01)
    assert np.mean(unweighted) == pytest.approx(0.023, abs=0.01)  # without the weights: plain accuracy


def test_verdict_with_seeds_needs_both_intervals_on_one_side() -> None:
    narrow = Interval(0.05, 0.02, 0.08, 450)
    assert verdict(narrow) == HELPS
    assert verdict(narrow, Interval(0.05, -0.04, 0.14, 3, spread=0.036)) == UNDECIDED  # the seeds disagree
    assert verdict(narrow, Interval(0.05, 0.01, 0.09, 3, spread=0.016)) == HELPS
    assert verdict(narrow, Interval(0.05, math.nan, math.nan, 1)) == UNDECIDED  # one seed: no verdict
    assert verdict(Interval(-0.05, -0.08, -0.02, 450), Interval(-0.05, -0.09, -0.01, 3, spread=0.016)) == HURTS


def test_verdict_of_undefined_interval_is_undecided() -> None:
    assert verdict(Interval(0.3, math.nan, math.nan, 1)) == UNDECIDED
    assert decide(Interval(0.3, 0.1, 0.5, 1), Interval(0.3, math.nan, math.nan, 1), 0.05).needs() == \
        "two seeds at least, to see their spread"


# (bootstrap low, high), (t low, high), δ -> verdict: the rule at its edges
@pytest.mark.parametrize(("boot", "seeds", "delta", "expected"), [
    ((0.001, 0.2), (0.01, 0.3), 0.05, HELPS),
    ((0.0, 0.2), (0.01, 0.3), 0.05, UNDECIDED),  # an end at 0 does not exclude 0
    ((0.01, 0.2), (-0.001, 0.3), 0.05, UNDECIDED),  # the seeds do not agree
    ((-0.2, -0.001), (-0.3, -0.01), 0.05, HURTS),
    ((-0.05, 0.05), (-0.05, 0.05), 0.05, NO_EFFECT),  # an end at ±δ lies within ±δ
    ((-0.04, 0.03), (-0.05, 0.0501), 0.05, UNDECIDED),  # just past δ
    ((-0.019, 0.019), (-0.02, 0.02), 0.02, NO_EFFECT),
    ((-0.019, 0.019), (-0.03, 0.02), 0.02, UNDECIDED),
    ((0.01, 0.03), (0.005, 0.04), 0.05, HELPS),  # excludes 0 and lies within ±δ: a real effect, if small
])
def test_decide_at_the_edges(boot: tuple[float, float], seeds: tuple[float, float], delta: float,
                             expected: str) -> None:
    middle = (seeds[0] + seeds[1]) / 2
    half = (seeds[1] - seeds[0]) / 2
    over_seeds = Interval(middle, seeds[0], seeds[1], 3, spread=half * math.sqrt(3) / t_quantile(0.975, 2))
    decision = decide(Interval(middle, *boot, 300), over_seeds, delta)
    assert decision.kind == expected
    assert decision.decided == (expected != UNDECIDED)
    assert (decision.seeds_needed is None) == decision.decided
    if expected == NO_EFFECT:
        assert decision.verdict == f"no effect larger than {delta:g}"


def test_deltas_are_the_issues() -> None:
    assert DELTAS == {"recall": 0.05, "auroc": 0.02, "balanced_accuracy": 0.02}


def test_plan_goal_aims_at_the_nearer_decision() -> None:
    assert plan_goal(0.10, 0.05) == (GOAL_EXCLUDE_ZERO, pytest.approx(0.10))
    assert plan_goal(-0.025, 0.05) == (GOAL_EXCLUDE_ZERO, pytest.approx(0.025))  # δ / 2: both need the same
    assert plan_goal(0.01, 0.05) == (GOAL_WITHIN_DELTA, pytest.approx(0.04))
    assert plan_goal(0.0, 0.02) == (GOAL_WITHIN_DELTA, pytest.approx(0.02))


@pytest.mark.parametrize(("spread", "half_width"), [(0.3, 0.05), (0.1, 0.05), (0.055, 0.127), (0.02, 0.04)])
def test_seeds_needed_is_the_fewest_that_fit(spread: float, half_width: float) -> None:
    n = seeds_needed(spread, half_width)
    assert n is not None and n >= 2
    assert t_quantile(0.975, n - 1) * spread / math.sqrt(n) <= half_width
    if n > 2:  # one seed fewer would not do
        assert t_quantile(0.975, n - 2) * spread / math.sqrt(n - 1) > half_width


def test_seeds_needed_by_hand_and_at_its_limits() -> None:
    # sd 0.3 and ±0.05: about (1.96 x 0.3 / 0.05)^2 = 138 with the normal quantile; t adds 3
    assert seeds_needed(0.3, 0.05) == 141
    # 3 seeds: t(0.975, 2) = 4.303, half-width 4.303 x 0.1 / 1.732 = 0.248; 0.25 needs no more
    assert seeds_needed(0.1, 0.25) == 3
    assert seeds_needed(0.0, 0.01) == 2  # no spread: the fewest a t-interval takes
    assert seeds_needed(math.nan, 0.05) is None  # one seed: no spread to go on
    assert seeds_needed(10.0, 1e-4) == MAX_SEEDS
    with pytest.raises(ValueError):
        seeds_needed(0.1, 0.0)


def test_undecided_says_what_deciding_takes() -> None:
    # per-seed differences 0.02, 0.16, 0.12: mean 0.1, sd 0.072; the bootstrap excludes 0, the t-interval not
    over_seeds = mean_t_interval([0.02, 0.16, 0.12])
    decision = decide(Interval(0.1, 0.03, 0.17, 300), over_seeds, 0.05)
    assert decision.kind == UNDECIDED and decision.goal == GOAL_EXCLUDE_ZERO
    assert decision.seeds_needed == seeds_needed(over_seeds.spread, 0.1)
    assert decision.needs() == f"{decision.seeds_needed} seeds to exclude 0"
    assert not decision.held_by_images
    near_zero = decide(Interval(0.01, -0.1, 0.12, 300), mean_t_interval([-0.05, 0.01, 0.07]), 0.05)
    assert near_zero.goal == GOAL_WITHIN_DELTA and near_zero.needs().endswith("seeds to lie within ±0.05")
    # the seeds agree closely, the bootstrap over test images does not exclude 0: more seeds are not the answer
    held = decide(Interval(0.1, -0.02, 0.2, 300), mean_t_interval([0.09, 0.1, 0.11]), 0.05)
    assert held.kind == UNDECIDED and held.held_by_images and held.seeds_needed <= 3
    assert held.needs() == "the seeds would exclude 0; the test images do not"


# -- AUROC ------------------------------------------------------------------------------------
def test_rank_auroc_and_the_kernel_match_torchmetrics() -> None:
    import torch
    from torchmetrics.functional.classification import binary_auroc

    rng = np.random.default_rng(8)
    positive = rng.random(300) < 0.1  # (N,)
    scores = np.round(rng.random(300) * 0.6 + 0.4 * positive, 2)  # rounded: ties on purpose
    expected = float(binary_auroc(torch.tensor(scores), torch.tensor(positive).long()))
    assert rank_auroc(scores, positive) == pytest.approx(expected, abs=1e-6)
    assert float(auroc_kernel(scores, positive).mean()) == pytest.approx(expected, abs=1e-6)
    assert math.isnan(rank_auroc(scores, np.zeros(300, dtype=bool)))


def _cells_with_scores(rng: np.random.Generator, seeds: int, counts: dict[str, int], shift_a: float,
                       shift_b: float, seed_sd: float = 0.3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores of a class ``c`` by two constructed runs A and B per seed: each test image has its own difficulty,
    shared by both runs and every seed; each run and seed adds its own shift (sd ``seed_sd``) and noise. A's
    positives are ``shift_a`` above the negatives, B's ``shift_b``.

    Returns:
        true (N,), scores_a (S, N), scores_b (S, N).
    """
    true = np.repeat(np.array(list(counts)), list(counts.values()))  # (N,)
    positive = true == "c"
    difficulty = rng.normal(0, 1, true.size)  # (N,)
    scores = []
    for shift in (shift_a, shift_b):
        run = rng.normal(0, seed_sd, (seeds, 1))  # (S, 1) how this seed's run separates the class
        scores.append(difficulty + positive * (shift + run) + rng.normal(0, 1, (seeds, true.size)))
    return true, scores[0], scores[1]


def _auroc_interval(true: np.ndarray, a: np.ndarray, b: np.ndarray, n_boot: int = 1000,
                    seed: int = 0) -> tuple[Interval, Interval]:
    """The bootstrap interval and the t-interval over seeds of the paired AUROC difference A - B of class c."""
    positive = true == "c"
    kernels = np.stack([auroc_kernel(a[s], positive) - auroc_kernel(b[s], positive) for s in range(a.shape[0])])
    interval = paired_auroc_bootstrap(kernels, n_boot, seed=seed, negative_strata=true[~positive])
    per_seed = [rank_auroc(a[s], positive) - rank_auroc(b[s], positive) for s in range(a.shape[0])]
    return interval, mean_t_interval(per_seed)


COUNTS = {"c": 17, "nv": 400, "mel": 60}  # a 17-image class, as df in HAM10000's test split


def test_auroc_bootstrap_finds_a_known_effect() -> None:
    # positives minus negatives: shift + noise of sd 2, so AUROC Phi(2.5 / 2) = 0.894 for A, Phi(1 / 2) = 0.691 for B
    true, a, b = _cells_with_scores(np.random.default_rng(9), 5, COUNTS, shift_a=2.5, shift_b=1.0)
    interval, over_seeds = _auroc_interval(true, a, b)
    # the estimate is the mean of the per-seed AUROC differences, computed exactly
    assert interval.estimate == pytest.approx(over_seeds.estimate, abs=1e-6)
    assert 0.1 < interval.estimate < 0.3 and interval.low < 0.2 < interval.high
    assert interval.low > 0 and decide(interval, over_seeds, DELTAS["auroc"]).kind == HELPS


def test_auroc_bootstrap_finds_no_effect_where_there_is_none() -> None:
    # 40 constructed experiments without an effect: the interval excludes 0 rarely (it covers 0 in most), and a
    # verdict of helps or hurts from both intervals is rarer still
    rng = np.random.default_rng(10)
    excluded, decided = 0, 0
    for rep in range(40):
        true, a, b = _cells_with_scores(rng, 3, COUNTS, shift_a=1.5, shift_b=1.5)
        interval, over_seeds = _auroc_interval(true, a, b, n_boot=400, seed=rep)
        excluded += not interval.low < 0 < interval.high
        decided += decide(interval, over_seeds, DELTAS["auroc"]).kind in (HELPS, HURTS)
    assert excluded <= 6 and decided <= 3


def test_auroc_bootstrap_interval_covers_the_spread_of_repeated_experiments() -> None:
    # the same constructed experiment 60 times (new test images, new seeds): the interval must be as wide as the
    # spread of the estimates says, and not much wider. Drawing seeds and images both counts the noise of each
    # seed on each image twice, so where that noise dominates (here) the interval is about 1.3 times too wide.
    rng = np.random.default_rng(11)
    estimates, widths = [], []
    for rep in range(60):
        true, a, b = _cells_with_scores(rng, 3, COUNTS, shift_a=2.0, shift_b=1.5, seed_sd=0.1)
        interval, _ = _auroc_interval(true, a, b, n_boot=300, seed=rep)
        estimates.append(interval.estimate)
        widths.append(interval.high - interval.low)
    ratio = np.mean(widths) / (2 * 1.96 * np.std(estimates))
    assert 0.9 <= ratio <= 1.5


def test_auroc_bootstrap_is_reproducible_and_rejects_bad_input() -> None:
    true, a, b = _cells_with_scores(np.random.default_rng(12), 2, COUNTS, 1.0, 1.0)
    positive = true == "c"
    kernels = np.stack([auroc_kernel(a[s], positive) - auroc_kernel(b[s], positive) for s in range(2)])
    assert paired_auroc_bootstrap(kernels, 200, seed=3) == paired_auroc_bootstrap(kernels, 200, seed=3)
    assert paired_auroc_bootstrap(kernels, 200, seed=3) != paired_auroc_bootstrap(kernels, 200, seed=4)
    with pytest.raises(ValueError, match="seeds, positives, negatives"):
        paired_auroc_bootstrap(kernels[0])
    with pytest.raises(ValueError, match="one label per negative image"):
        paired_auroc_bootstrap(kernels, negative_strata=true[:5])
