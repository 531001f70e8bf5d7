"""Random-number state in every checkpoint, so that a resumed run does not replay its first steps.

Each stage seeds every generator at start (``pl.seed_everything(seed)``), and Lightning's checkpoints
do not hold the generators' state. A run resumed from step N would therefore draw again, from step N
on, the very stream it drew from step 0: the same shuffled order, and for the generator the same
noise and timesteps for the same images. A generator resumed once a session (``cpu-synth``) would see
the triples of its first stretch several times over. This callback stores the state of Python's,
NumPy's and torch's generators (CUDA's too) in each checkpoint and restores it on resume, so the
resumed run goes on with draws it has not made. The shuffled order of the interrupted epoch is not
restored (the data loader starts a new one), so a resumed run is not bit for bit an uninterrupted one.

A checkpoint written before this callback existed has no state: the generators are then seeded from
the run's seed and the step it resumes at, a stream of that step's own instead of the seed's again
(deterministic: two resumes from the same checkpoint draw alike). CUDA state is restored only on a
machine with as many GPUs as the one that saved it (a run moved from a GPU to the CPU keeps the CPU
generators' state). Under DDP the first process's state is saved and every process restores it, as
every process starts from the same seed.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

RNG_KEY = "dermkit_rng_states"
# A prime, so that the seeds of (seed, step) pairs of one run do not meet another run's seed soon.
STEP_SEED_STRIDE = 1_000_003


def collect_rng_states() -> dict[str, Any]:
    """The state of Python's, NumPy's, torch's and (when present) every CUDA device's generator.

    Only tensors and plain Python values, so a checkpoint holding them still loads with
    ``torch.load(weights_only=True)`` (as :mod:`dermkit.backbones.card` reads weights files). Lightning's
    private ``_collect_rng_states`` keeps NumPy's state as an array, which such a load refuses.
    """
    name, keys, position, has_gauss, gauss = np.random.get_state()
    return {"python": random.getstate(),
            "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss), float(gauss)],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def restore_rng_states(states: dict[str, Any]) -> None:
    """Set the generators to ``states`` (:func:`collect_rng_states`); CUDA only on as many devices."""
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))
    name, keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    torch.set_rng_state(states["torch"])
    cuda = states.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


class RngStateInCheckpoint(pl.Callback):
    """Saves the generators' state in every checkpoint (``checkpoint["dermkit_rng_states"]``) and
    restores it when a run resumes from one."""

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        checkpoint[RNG_KEY] = collect_rng_states()

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        if RNG_KEY in checkpoint:
            restore_rng_states(checkpoint[RNG_KEY])
        else:  # written before the states were kept
            pl.seed_everything(step_seed(torch.initial_seed(), int(checkpoint.get("global_step", 0))), verbose=False)


def step_seed(seed: int, step: int) -> int:
    """A seed for resuming at ``step`` a run seeded with ``seed`` from a checkpoint without generator states."""
    return (seed + STEP_SEED_STRIDE * (step + 1)) % 2**32
