"""Set-to-set measures between real and synthetic images, on features computed once.

* Fréchet distance and KID (kernel inception distance, Bińkowski et al. 2018) are torchmetrics'
  ``FrechetInceptionDistance`` / ``KernelInceptionDistance`` with a custom feature extractor. The
  features are computed once per image by the caller (a dermkit backbone, see
  :mod:`synth.evaluate`) and handed to the metric through :class:`PrecomputedFeatures`, so each
  image passes the backbone once however many class pairs are compared.
* Precision and recall of Kynkäänniemi et al. (2019), "Improved Precision and Recall Metric for
  Assessing Generative Models": k-NN balls around each real (synthetic) feature approximate the
  real (synthetic) manifold; precision is the share of synthetic samples inside the real
  manifold, recall the share of real samples inside the synthetic one.
* Nearest neighbours for the memorisation audit.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance


class PrecomputedFeatures(nn.Module):
    """The identity, declared as a ``num_features``-wide feature extractor for torchmetrics."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features  # (B, D)


def frechet_distance(real: torch.Tensor, fake: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (N, D) and (M, D), N, M >= 2."""
    metric = FrechetInceptionDistance(feature=PrecomputedFeatures(real.shape[1]))
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    return float(metric.compute())


def kernel_distance(real: torch.Tensor, fake: torch.Tensor, subsets: int = 50, max_subset: int = 1000,
                    seed: int = 0) -> tuple[float, float]:
    """KID (unbiased polynomial-kernel MMD²) between (N, D) and (M, D) features: (mean, std) over subsets.

    The subset size is ``min(N, M, max_subset)``; N, M >= 2.
    """
    size = min(real.shape[0], fake.shape[0], max_subset)
    with warnings.catch_warnings():  # "saves all features in a buffer": intended, they are small
        warnings.simplefilter("ignore", UserWarning)
        metric = KernelInceptionDistance(feature=PrecomputedFeatures(real.shape[1]), subsets=subsets,
                                         subset_size=size)
    metric.update(real.float(), real=True)
    metric.update(fake.float(), real=False)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # the subsets are drawn with torch.randperm
    try:
        mean, std = metric.compute()
    finally:
        torch.random.set_rng_state(state)
    return float(mean), float(std)


def knn_radii(features: torch.Tensor, k: int) -> torch.Tensor:
    """(N,) distance of each row of (N, D) ``features`` to its k-th nearest other row."""
    dist = torch.cdist(features, features)  # (N, N)
    k = min(k, features.shape[0] - 1)
    return dist.kthvalue(k + 1, dim=1).values  # the 1st smallest is the point itself (0)


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """k-NN precision and recall of (M, D) ``fake`` against (N, D) ``real`` features (N, M >= 2)."""
    real, fake = real.float(), fake.float()
    real_r, fake_r = knn_radii(real, k), knn_radii(fake, k)  # (N,), (M,)
    cross = torch.cdist(fake, real)  # (M, N)
    precision = (cross <= real_r[None, :]).any(dim=1).float().mean()
    recall = (cross.T <= fake_r[None, :]).any(dim=1).float().mean()
    return float(precision), float(recall)


def nearest(queries: torch.Tensor, references: torch.Tensor, chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest reference row of each query row (Euclidean), in chunks to bound memory.

    Args:
        queries: (M, D).
        references: (N, D).

    Returns:
        (M,) distances and (M,) int64 indices into ``references``.
    """
    dists, index = [], []
    for start in range(0, queries.shape[0], chunk):
        d = torch.cdist(queries[start:start + chunk].float(), references.float())  # (m, N)
        value, idx = d.min(dim=1)
        dists.append(value)
        index.append(idx)
    return torch.cat(dists), torch.cat(index)
