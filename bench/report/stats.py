"""Statistics of the label-efficiency grid: intervals over seeds, the paired bootstraps and the verdicts.

Three questions, three tools:

* How good is a configuration? The mean of a metric over training seeds with a two-sided
  Student-t interval (:func:`mean_t_interval`). Seeds are few (3 to 5), so the t quantile matters:
  with 3 seeds it is 4.30, not 1.96.
* Does an arm change a class's recall? A *paired* comparison: the same initialisation, label
  fraction, seed and test images, once with each arm. Per test image of the class the paired
  difference is ``correct_arm - correct_baseline`` (-1, 0 or 1); its mean is the difference in
  recall. :func:`paired_bootstrap` resamples seeds and test images (both with replacement, a
  two-level bootstrap; Davison & Hinkley 1997, sec. 3.8) and gives a percentile interval, so both
  sources of noise - which seed, which test images - are in the interval. Balanced accuracy is the
  same over differences weighted per class (:func:`balanced_accuracy_differences`), images drawn
  within their class.
* Does it change how well the class is *ranked*, whatever the threshold? The paired difference in
  one-vs-rest AUROC (:func:`auroc_kernel`, :func:`paired_auroc_bootstrap`): the same two-level
  draw, seeds then the class's test images and the other images (each drawn within its class); a
  17-image class is then judged by every one of its images' scores, not by how many cross one
  threshold.

:func:`bench.report.verdicts.decide` turns the intervals into a verdict: **helps** / **hurts** when the interval excludes
0, **no effect larger than δ** when it lies within ±δ (:data:`DELTAS`: 0.05 recall, 0.02 AUROC and
balanced accuracy), otherwise **undecided**, with the seeds the per-seed spread says it needs
(:func:`seeds_needed`).
"""

from __future__ import annotations

import functools
import math
import numpy as np
from dataclasses import dataclass
from threadpoolctl import threadpool_limits


@dataclass(frozen=True)
class Interval:
    """An estimate with a two-sided confidence interval.

    Attributes:
        estimate: the point estimate (a mean).
        low: lower end of the interval (NaN when it cannot be computed, e.g. one value).
        high: upper end of the interval.
        n: number of independent units behind it (seeds, or seeds x images).
        level: confidence level, e.g. 0.95.
        spread: standard deviation (n - 1 in the denominator) of the values behind a t-interval
            (:func:`mean_t_interval`); NaN for a bootstrap interval or a single value.
    """

    estimate: float
    low: float
    high: float
    n: int
    level: float = 0.95
    spread: float = math.nan

    @property
    def defined(self) -> bool:
        """Whether both ends of the interval are finite numbers."""
        return math.isfinite(self.low) and math.isfinite(self.high)


def _t_pdf(x: np.ndarray, df: float) -> np.ndarray:
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    return np.exp(log_norm - (df + 1) / 2 * np.log1p(x * x / df))


def t_quantile(p: float, df: float) -> float:
    """Quantile of Student's t distribution (numerical integration of the density, then bisection).

    Accurate to about 1e-6 for ``0.5 <= p <= 0.9995`` and ``df >= 1``, which covers every interval
    this module computes (NumPy has no t distribution and SciPy is not a dependency).

    Args:
        p: probability in (0, 1).
        df: degrees of freedom (> 0).

    Raises:
        ValueError: ``p`` outside (0, 1) or ``df`` not positive.
    """
    if not 0 < p < 1:
        raise ValueError(f"p must lie in (0, 1), got {p}")
    if df <= 0:
        raise ValueError(f"df must be positive, got {df}")
    if p < 0.5:
        return -t_quantile(1 - p, df)

    def upper_mass(x: float) -> float:  # P(0 <= T <= x), Simpson's rule on an even grid
        grid = np.linspace(0.0, x, 4001)
        f = _t_pdf(grid, df)
        h = grid[1] - grid[0]
        return float(h / 3 * (f[0] + f[-1] + 4 * f[1:-1:2].sum() + 2 * f[2:-1:2].sum()))

    target = p - 0.5
    low, high = 0.0, 1.0
    while upper_mass(high) < target:  # bracket: the quantile of df=1 at 0.9995 is ~637
        low, high = high, high * 2
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if upper_mass(mid) < target else (low, mid)
    return (low + high) / 2


def mean_t_interval(values: np.ndarray | list[float], level: float = 0.95) -> Interval:
    """Mean with a two-sided Student-t interval (independent values, e.g. one per seed).

    NaN values are ignored. With fewer than two values the interval is undefined (NaN ends).

    Args:
        values: (n,) one value per independent run.
        level: confidence level.
    """
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0, level)
    mean = float(x.mean())
    if n < 2:
        return Interval(mean, math.nan, math.nan, n, level)
    spread = float(x.std(ddof=1))
    half = t_quantile(0.5 + level / 2, n - 1) * spread / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n, level, spread)


def _draw_counts(rng: np.random.Generator, n_boot: int, size: int, strata: np.ndarray | None = None) -> np.ndarray:
    """How often each of ``size`` units is drawn in each of ``n_boot`` draws with replacement: (B, size) counts.

    Multinomial counts are the same draws as indices with replacement, as weights. With ``strata``
    (one label per unit) units are drawn within their stratum, so each stratum keeps its size (its
    counts sum to it); strata are drawn in sorted order, so the counts are reproducible from the seed.
    """
    if strata is None:
        return rng.multinomial(size, np.full(size, 1 / size), size=n_boot)  # (B, size)
    counts = np.zeros((n_boot, size), dtype=np.int64)  # (B, size)
    for stratum in np.unique(strata):
        columns = np.flatnonzero(strata == stratum)
        counts[:, columns] = rng.multinomial(columns.size, np.full(columns.size, 1 / columns.size), size=n_boot)
    return counts


def _percentile_interval(estimate: float, replicates: np.ndarray, level: float, n: int) -> Interval:
    """The percentile interval of bootstrap ``replicates`` (B,) around ``estimate``."""
    alpha = (1 - level) / 2
    low, high = np.quantile(replicates, [alpha, 1 - alpha])
    return Interval(estimate, float(low), float(high), n, level)


def _bootstrap_input(values: np.ndarray, dtype: type, name: str, axes: tuple[str, ...], n_boot: int) -> np.ndarray:
    """``values`` as an array of ``dtype`` after the checks both bootstraps share: one axis per name in ``axes``,
    not empty, finite; ``n_boot`` at least 1 (a ``ValueError`` naming ``name`` otherwise)."""
    array = np.asarray(values, dtype=dtype)
    if array.ndim != len(axes) or array.size == 0:
        raise ValueError(f"{name} must be a non-empty ({', '.join(axes)}) array, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    return array


def paired_bootstrap(differences: np.ndarray, n_boot: int = 2000, level: float = 0.95,
                     seed: int = 0, strata: np.ndarray | None = None) -> Interval:
    """Percentile bootstrap interval of a mean paired difference, resampling seeds and images.

    Each bootstrap replicate draws the seeds (rows) with replacement and, independently, the test
    images (columns) with replacement, and takes the mean of the selected cells. Drawing an image
    draws its difference under every seed at once, which keeps the pairing by image; drawing a seed
    keeps the pairing by seed.

    Args:
        differences: (S, N) paired differences, one row per seed and one column per test image
            (for recall: ``correct_with - correct_without`` of each image of the class, averaged
            over the conditions compared under that seed).
        n_boot: bootstrap replicates.
        level: confidence level.
        seed: seed of the resampling (the interval is reproducible).
        strata: (N,) optional stratum (e.g. true class) of each image: images are then drawn with
            replacement within their stratum, so every stratum keeps its size (what a balanced
            accuracy, a mean over classes, needs; see :func:`balanced_accuracy_differences`).

    Returns:
        The mean difference with its percentile interval; ``n`` is ``S * N``.

    Raises:
        ValueError: ``differences`` is not a 2-D array, is empty, or holds NaN; ``strata`` is not
            one label per image.
    """
    d = _bootstrap_input(differences, float, "differences", ("seeds", "images"), n_boot)
    n_seeds, n_images = d.shape
    if strata is not None:
        strata = np.asarray(strata)
        if strata.shape != (n_images,):
            raise ValueError(f"strata must hold one label per image ({n_images}), got shape {strata.shape}")
    rng = np.random.default_rng(seed)
    seed_counts = _draw_counts(rng, n_boot, n_seeds)  # (B, S)
    image_counts = _draw_counts(rng, n_boot, n_images, strata)  # (B, N)
    # mean over the drawn cells = seed_counts @ d @ image_counts / (S * N)
    replicates = np.einsum("bs,sn,bn->b", seed_counts, d, image_counts) / (n_seeds * n_images)  # (B,)
    return _percentile_interval(float(d.mean()), replicates, level, n_seeds * n_images)


def balanced_accuracy_differences(correct_a: np.ndarray, correct_b: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Per-image paired differences whose mean is the difference in balanced accuracy.

    Balanced accuracy is the mean over classes of recall, so image ``n`` of class ``c`` counts
    ``1 / (C * N_c)``; scaling ``correct_a - correct_b`` by ``N / (C * N_c)`` makes the plain mean
    over images (and seeds) the difference in balanced accuracy. Give the result to
    :func:`paired_bootstrap` with ``strata=true``, which keeps every ``N_c`` fixed.

    Args:
        correct_a: (S, N) bool, whether run A of each seed classified each test image correctly.
        correct_b: (S, N) bool, the same for run B (same seeds, same images in the same order).
        true: (N,) true class of each test image (the classes present make ``C``).

    Returns:
        (S, N) float differences.
    """
    true = np.asarray(true)
    classes, index, per_class = np.unique(true, return_inverse=True, return_counts=True)
    weight = true.size / (classes.size * per_class[index])  # (N,)
    return (np.asarray(correct_a, dtype=float) - np.asarray(correct_b, dtype=float)) * weight


def auroc_kernel(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """The Mann-Whitney kernel of a one-vs-rest AUROC: its mean is the AUROC.

    Entry ``(i, j)`` is 1 where positive image ``i`` scores above negative image ``j``, 0.5 on a tie
    and 0 below (ties counted half, as ``torchmetrics``' exact AUROC does). Resampling images
    reweights its rows and columns (:func:`paired_auroc_bootstrap`), so it is computed once per cell.

    Args:
        scores: (N,) the predicted probability of the class for every test image.
        positive: (N,) bool, the image is of the class.

    Returns:
        (P, Q) kernel, P positive and Q negative images in their order in ``scores``.
    """
    positive = np.asarray(positive, dtype=bool)
    pos = np.asarray(scores, dtype=float)[positive][:, None]  # (P, 1)
    neg = np.asarray(scores, dtype=float)[~positive][None, :]  # (1, Q)
    return (pos > neg).astype(np.float32) + np.float32(0.5) * (pos == neg)  # (P, Q)


def rank_auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """One-vs-rest AUROC from mid-ranks (exact, ties counted half; NaN without positives or negatives).

    Args:
        scores: (N,) the predicted probability of the class.
        positive: (N,) bool, the image is of the class.
    """
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    _, inverse, counts = np.unique(np.asarray(scores, dtype=float), return_inverse=True, return_counts=True)
    midrank = np.cumsum(counts) - (counts - 1) / 2  # (U,) mean rank of each distinct score, 1-based
    rank_sum = float(midrank[inverse][positive].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def paired_auroc_bootstrap(kernels: np.ndarray, n_boot: int = 2000, level: float = 0.95, seed: int = 0,
                           negative_strata: np.ndarray | None = None, chunk: int = 500) -> Interval:
    """Percentile interval of a mean paired AUROC difference: a two-level bootstrap, seeds then test images.

    Each replicate draws the seeds with replacement, then the class's test images (the positives)
    and the other test images (the negatives, within their class when ``negative_strata`` is
    given), and computes every drawn seed's AUROC difference on the drawn images. Every seed was
    tested on the same images, so one image draw serves all the seeds of a replicate, which keeps
    the pairing by image as :func:`paired_bootstrap` does (drawing images afresh per seed would let
    the seeds average away the part of the difference that belongs to the images). With image
    counts ``u`` (P,) and ``v`` (Q,) a seed's AUROC difference is ``u @ K_s @ v / (P Q)``; the
    replicates are computed ``chunk`` at a time as matrix products (no loop over replicates).

    Args:
        kernels: (S, P, Q) per seed the kernel difference :func:`auroc_kernel` of the arm minus that
            of the baseline (averaged over the conditions compared under that seed).
        n_boot: bootstrap replicates.
        level: confidence level.
        seed: seed of the resampling (the interval is reproducible).
        negative_strata: (Q,) optional true class of each negative image.
        chunk: replicates per matrix product (memory: chunk x Q floats).

    Returns:
        The mean AUROC difference with its percentile interval; ``n`` is ``S * (P + Q)``.

    Raises:
        ValueError: ``kernels`` is not a non-empty (S, P, Q) array without NaN, or the strata do
            not hold one label per negative image.
    """
    k = _bootstrap_input(kernels, np.float32, "kernels", ("seeds", "positives", "negatives"), n_boot)
    n_seeds, n_pos, n_neg = k.shape
    if negative_strata is not None and np.shape(negative_strata) != (n_neg,):
        raise ValueError(f"negative_strata must hold one label per negative image ({n_neg}), got shape "
                         f"{np.shape(negative_strata)}")
    strata_key = None if negative_strata is None else tuple(np.asarray(negative_strata).tolist())
    draws = _auroc_draws(n_boot, seed, n_seeds, n_pos, n_neg, strata_key)
    per_seed = np.empty((n_boot, n_seeds))  # (B, S) each seed's AUROC difference on each replicate's images
    # One BLAS thread: these products are small, and on a busy machine BLAS threads waiting for a core cost
    # more CPU time than they save (measured: 4x the CPU seconds with 2 threads on the shared 2-core machine).
    with threadpool_limits(limits=1, user_api="blas"):
        for first in range(0, n_boot, chunk):
            rows = slice(first, first + chunk)
            positives = draws.positives[rows].astype(np.float32)  # (b, P)
            negatives = draws.negatives[rows].astype(np.float32)  # (b, Q)
            for s in range(n_seeds):
                # float32 is exact for one condition's kernel below 4096 test images: entries are multiples
                # of 0.5 and |u K v| <= P Q < 2^22
                per_seed[rows, s] = np.einsum("bq,bq->b", positives @ k[s], negatives)  # (b,)
    seed_counts = draws.seeds  # (B, S)
    replicates = (seed_counts * per_seed).sum(axis=1) / (n_seeds * n_pos * n_neg)  # (B,)
    estimate = float(k.astype(np.float64).mean())
    return _percentile_interval(estimate, replicates, level, n_seeds * (n_pos + n_neg))


@dataclass(frozen=True)
class AurocDraws:
    """The draws of one AUROC bootstrap: counts per replicate (B rows) of each seed and image.

    Attributes:
        seeds: (B, S) seed counts.
        positives: (B, P) counts of the class's test images.
        negatives: (B, Q) counts of the other test images.
    """

    seeds: np.ndarray
    positives: np.ndarray
    negatives: np.ndarray


@functools.lru_cache(maxsize=6)
def _auroc_draws(n_boot: int, seed: int, n_seeds: int, n_pos: int, n_neg: int,
                 negative_strata: tuple[str, ...] | None) -> AurocDraws:
    """The draws of :func:`paired_auroc_bootstrap`, made once per class: they depend on the resampling seed and the
    sizes only, not on the comparison, so a report comparing many arms on one class draws once (drawing is most
    of the cost). Counts are at most the number of images, so int16 holds them (half the memory of a cache entry).
    """
    rng = np.random.default_rng(seed)
    strata = None if negative_strata is None else np.asarray(negative_strata)
    draws = AurocDraws(_draw_counts(rng, n_boot, n_seeds), _draw_counts(rng, n_boot, n_pos).astype(np.int16),
                       _draw_counts(rng, n_boot, n_neg, strata).astype(np.int16))
    for counts in (draws.seeds, draws.positives, draws.negatives):
        counts.flags.writeable = False  # shared between calls
    return draws
