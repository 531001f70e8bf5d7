"""The training samplers (config key ``sampler``), one registry: ``shuffle`` and ``balanced``.

``balanced`` draws every class equally often, with replacement. Under DDP, Lightning replaces the
``shuffle`` sampler by a ``DistributedSampler`` and wraps the ``balanced`` one in a
``DistributedSamplerWrapper``, so each process draws its own share.

A new sampler: one factory ``(labels, num_samples, generator) -> Sampler`` below, decorated with
``@SAMPLERS.register("name")``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import RandomSampler, Sampler, WeightedRandomSampler

from dermkit.registry import Registry

# (labels (N,), draws per epoch or None for N, seeded generator or None) -> sampler of indices into the N items.
SamplerFactory = Callable[[torch.Tensor, "int | None", "torch.Generator | None"], Sampler[int]]
SAMPLERS: Registry[SamplerFactory] = Registry("sampler")


@SAMPLERS.register("shuffle")
def shuffle_sampler(labels: torch.Tensor, num_samples: int | None = None,
                    generator: torch.Generator | None = None) -> RandomSampler:
    """Plain shuffling: the sampler a ``DataLoader(shuffle=True, generator=generator)`` builds itself.

    Args:
        labels: (N,) class index of each training item (only N is used).
        num_samples: draws per epoch; defaults to N (each item once).
        generator: random generator (seeded for reproducible epochs).
    """
    return RandomSampler(range(len(labels)), num_samples=num_samples, generator=generator)


@SAMPLERS.register("balanced")
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
