"""Intervals over seeds and the paired bootstrap (bench.stats)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.stats import (HELPS, HURTS, NO_EFFECT, Interval, balanced_accuracy_differences, mean_t_interval,
                         paired_bootstrap, t_quantile, verdict)


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
    assert iv.low < 0 < iv.high and verdict(iv) == NO_EFFECT


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
    assert verdict(narrow, Interval(0.05, -0.04, 0.14, 3)) == NO_EFFECT  # the seeds disagree
    assert verdict(narrow, Interval(0.05, 0.01, 0.09, 3)) == HELPS
    assert verdict(narrow, Interval(0.05, math.nan, math.nan, 1)) == NO_EFFECT  # one seed: no verdict
    assert verdict(Interval(-0.05, -0.08, -0.02, 450), Interval(-0.05, -0.09, -0.01, 3)) == HURTS


def test_verdict_of_undefined_interval_is_no_effect() -> None:
    assert verdict(Interval(0.3, math.nan, math.nan, 1)) == NO_EFFECT
