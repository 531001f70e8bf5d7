"""Per-class weights (the focal loss's alpha) from class frequencies: the registry of ``loss.weighting``.

``none`` (no weights), ``given`` (``loss.alpha`` as it is) and two schemes from the counts, both
normalised so the weights average 1 over the classes (the loss keeps the scale of unweighted
cross-entropy, and the learning rate need not change with the weighting):

- ``inverse``: ``w_c ∝ 1 / n_c``.
- ``effective``: ``w_c ∝ (1 - β) / (1 - β^{n_c})``, the inverse of the effective number of samples
  of Cui et al., "Class-Balanced Loss Based on Effective Number of Samples", CVPR 2019. β → 0 gives
  uniform weights, β → 1 the inverse frequency.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from dermkit.errors import DermkitError
from dermkit.registry import Registry

# (counts (C,), beta of the effective number, loss.alpha's given weights) -> (C,) weights or None.
# A new scheme: one function at the end of this file, decorated with ``@WEIGHTINGS.register("name")``.
Weighting = Callable[[Sequence[int] | torch.Tensor, float, Sequence[float]], "torch.Tensor | None"]
WEIGHTINGS: Registry[Weighting] = Registry("loss weighting")


def _counts_tensor(counts: Sequence[int] | torch.Tensor) -> torch.Tensor:
    counts_t = torch.as_tensor(counts, dtype=torch.float64)
    if counts_t.ndim != 1 or counts_t.numel() == 0:
        raise DermkitError(f"Class counts must be a non-empty list, got {counts!r}.")
    if (counts_t <= 0).any():
        raise DermkitError(f"Every class needs at least one training image to be weighted, got counts {counts_t.long().tolist()}. "
                           "Use a larger data.fraction or loss.weighting=none.")
    return counts_t


def _normalise(weights: torch.Tensor) -> torch.Tensor:
    return (weights * weights.numel() / weights.sum()).float()


def inverse_frequency_weights(counts: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """(C,) weights proportional to 1 / n_c, with mean 1.

    Args:
        counts: (C,) training images per class.
    """
    return _normalise(1.0 / _counts_tensor(counts))


def effective_number_weights(counts: Sequence[int] | torch.Tensor, beta: float = 0.999) -> torch.Tensor:
    """(C,) weights proportional to (1 - β) / (1 - β^{n_c}) (Cui et al. 2019), with mean 1.

    Args:
        counts: (C,) training images per class.
        beta: β in [0, 1); the paper uses 0.9 ... 0.9999, larger for larger datasets.
    """
    if not 0.0 <= beta < 1.0:
        raise DermkitError(f"loss.beta must lie in [0, 1), got {beta}.")
    effective_number = (1.0 - torch.pow(beta, _counts_tensor(counts))) / (1.0 - beta)
    return _normalise(1.0 / effective_number)


def class_weights(weighting: str, counts: Sequence[int] | torch.Tensor, beta: float = 0.999,
                  given: Sequence[float] = ()) -> torch.Tensor | None:
    """Per-class weights by scheme name.

    Args:
        weighting: a name of :data:`WEIGHTINGS`: ``none`` (None is returned), ``inverse``,
            ``effective`` or ``given``.
        counts: (C,) training images per class.
        beta: β of the effective-number scheme.
        given: (C,) explicit weights, for ``weighting=given``.

    Returns:
        (C,) float weights, or None for ``none``.

    Raises:
        DermkitError: an unknown scheme (naming ``loss.weighting``), or weights that do not fit the classes.
    """
    return WEIGHTINGS.lookup(weighting, key="loss.weighting")(counts, beta, given)


@WEIGHTINGS.register("none")
def no_weights(counts: Sequence[int] | torch.Tensor, beta: float, given: Sequence[float]) -> None:
    """No per-class weights: every class counts alike."""
    return None


@WEIGHTINGS.register("inverse")
def inverse_weighting(counts: Sequence[int] | torch.Tensor, beta: float, given: Sequence[float]) -> torch.Tensor:
    """(C,) :func:`inverse_frequency_weights` of ``counts``."""
    return inverse_frequency_weights(counts)


@WEIGHTINGS.register("effective")
def effective_weighting(counts: Sequence[int] | torch.Tensor, beta: float, given: Sequence[float]) -> torch.Tensor:
    """(C,) :func:`effective_number_weights` of ``counts`` with ``beta``."""
    return effective_number_weights(counts, beta)


@WEIGHTINGS.register("given")
def given_weights(counts: Sequence[int] | torch.Tensor, beta: float, given: Sequence[float]) -> torch.Tensor:
    """(C,) the weights ``loss.alpha`` lists, as they are.

    Raises:
        DermkitError: not one weight per class.
    """
    if len(given) != len(counts):
        raise DermkitError(f"loss.alpha lists {len(given)} weights but the data has {len(counts)} classes; "
                           "give one weight per class, in the order of the run's classes.")
    return torch.as_tensor(list(given), dtype=torch.float32)
