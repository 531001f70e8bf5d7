"""Class-balanced sampling: every class drawn equally often, with replacement.

Under DDP, Lightning wraps the sampler in a ``DistributedSamplerWrapper`` so each process draws
its own share.
"""

from __future__ import annotations

import torch
from torch.utils.data import WeightedRandomSampler


def class_balanced_sampler(labels: torch.Tensor, num_samples: int | None = None,
                           generator: torch.Generator | None = None) -> WeightedRandomSampler:
    """A sampler whose draws are uniform over classes (and uniform within a class).

    Args:
        labels: (N,) class index of each training item (real and synthetic alike).
        num_samples: draws per epoch; defaults to N, so an epoch keeps its usual length.
        generator: random generator (seeded for reproducible epochs).
    """
    labels = torch.as_tensor(labels).long()
    counts = torch.bincount(labels)  # (C,)
    weights = 1.0 / counts[labels].double()  # (N,) each class's weights sum to 1
    return WeightedRandomSampler(weights, num_samples or len(labels), replacement=True, generator=generator)
