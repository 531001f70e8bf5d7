"""The sampling loop: DDIM, DPM-Solver++ or DDPM with classifier-free guidance, separate from network and scheduler.

diffusers' ``DDPMPipeline`` passes no class labels, so the loop is written here (as in the
diffusers pipelines: set timesteps, predict noise, ``scheduler.step``). Guidance follows Ho &
Salimans (2022): ``eps = eps_null + w * (eps_class - eps_null)`` (the same mix for v-prediction); ``w = 1`` is plain conditional
sampling (no second pass), ``w = 0`` unconditional sampling.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, UNet2DModel
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from dermkit.errors import DermkitError
from dermkit.registry import Registry
from synth.model import null_class

# The training scheduler (its config: betas, timesteps, prediction type) -> a sampling scheduler on
# the same noise schedule. A new sampler: one factory below, decorated with ``@SAMPLERS.register("name")``,
# and a ``<name>_steps`` key in :class:`synth.speed.SpeedConfig` (synth.speed times every sampler).
SamplerFactory = Callable[[SchedulerMixin], SchedulerMixin]
# Registration order is the order synth.speed times and reports the samplers in.
SAMPLERS: Registry[SamplerFactory] = Registry("sampler")


@SAMPLERS.register("ddim")
def ddim_sampler(train_scheduler: SchedulerMixin) -> DDIMScheduler:
    """Deterministic DDIM (eta = 0, first-order: Song et al. 2021).

    diffusers' "leading" timesteps: 50 steps start at t = 980, not at the pure noise of t = 999.
    """
    return DDIMScheduler.from_config(train_scheduler.config)


@SAMPLERS.register("dpm")
def dpm_solver_sampler(train_scheduler: SchedulerMixin) -> DPMSolverMultistepScheduler:
    """Deterministic DPM-Solver++ 2M (second-order multistep, Lu et al. 2022), steps even in log-SNR.

    20 steps come about as near the converged ODE solution as DDIM's 250: 1.2 and 1.4 levels of 255
    from DDIM 1,000 on 2 images (docs/benchmarks.md).
    """
    # Steps evenly spaced in log-SNR (lambda), as Lu et al. advise: spaced evenly in t, the
    # cosine schedule's first step spans lambda -9.9 to -2.6, and 20 steps landed 42 levels
    # (of 255) from the converged images of a HAM10000 generator; evenly in lambda, 1.2
    # (docs/benchmarks.md, "Sampler accuracy").
    return DPMSolverMultistepScheduler.from_config(train_scheduler.config, algorithm_type="dpmsolver++",
                                                   solver_order=2, lower_order_final=True, use_lu_lambdas=True)


@SAMPLERS.register("ddpm")
def ddpm_sampler(train_scheduler: SchedulerMixin) -> DDPMScheduler:
    """Ancestral DDPM sampling (fresh noise every step; usually the training length, 1000 steps)."""
    return DDPMScheduler.from_config(train_scheduler.config)


def make_sampler(name: str, train_scheduler: SchedulerMixin) -> SchedulerMixin:
    """A sampling scheduler sharing the noise schedule (betas) of the training scheduler.

    Args:
        name: a name of :data:`SAMPLERS`: ``ddim``, ``dpm`` (DPM-Solver++ 2M) or ``ddpm``.
        train_scheduler: the ``DDPMScheduler`` the network was trained with.

    Raises:
        DermkitError: unknown sampler name (naming the config key ``sampler`` and the closest names).
    """
    return SAMPLERS.lookup(name, key="sampler")(train_scheduler)


def check_sampler(name: str) -> None:
    """Refuse an unknown sampler name when the config is read (the check of ``--sampler``).

    Raises:
        DermkitError: ``name`` is not in :data:`SAMPLERS`.
    """
    SAMPLERS.lookup(name, key="sampler")


def seed_generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """One CPU generator per image, seeded, so an image does not depend on its batch-mates."""
    return [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]


@torch.no_grad()
def sample(
    unet: UNet2DModel,
    scheduler: SchedulerMixin,
    class_labels: torch.Tensor,
    seeds: Sequence[int],
    num_steps: int = 50,
    guidance: float = 3.0,
    on_step: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Generate one image per label.

    Args:
        unet: class-conditional noise predictor; its last class embedding is the null class.
        scheduler: a sampling scheduler from :func:`make_sampler` (its state is reset here).
        class_labels: (B,) int64 class indices in ``[0, null_class)``.
        seeds: B seeds; image ``i`` is a function of ``seeds[i]`` and its label only.
        num_steps: denoising steps (DDIM: e.g. 50; DPM-Solver++: e.g. 20; DDPM: usually the training length, 1000).
        guidance: classifier-free guidance weight ``w`` (1 = conditional only).
        on_step: called with the step number after every denoising step (progress bars).

    Returns:
        (B, 3, S, S) float32 images in [0, 1] on the CPU.

    Raises:
        DermkitError: a label out of range, a seed count that does not match, or ``num_steps`` < 1.
    """
    null = null_class(unet)
    labels = class_labels.long()
    if labels.ndim != 1 or len(seeds) != labels.shape[0]:
        raise DermkitError(f"sample() needs one seed per label: {len(seeds)} seeds for labels of shape "
                           f"{tuple(labels.shape)}.")
    if labels.numel() and (labels.min() < 0 or labels.max() >= null):
        raise DermkitError(f"Class labels must lie in [0, {null}) for this generator, got {labels.tolist()}.")
    if num_steps < 1:
        raise DermkitError(f"Sampling needs at least one step, got {num_steps}.")
    device = next(unet.parameters()).device
    dtype = next(unet.parameters()).dtype
    size = int(unet.config.sample_size)
    generators = seed_generators(seeds)
    # (B, 3, S, S): each image's starting noise comes from its own generator.
    x = torch.stack([torch.randn(3, size, size, generator=g) for g in generators]).to(device, dtype)
    labels = labels.to(device)
    use_null = guidance != 1.0
    both_labels = torch.cat([labels, torch.full_like(labels, null)]) if use_null else labels  # (2B,) or (B,)
    scheduler.set_timesteps(num_steps, device=device)
    x = x * scheduler.init_noise_sigma
    for i, t in enumerate(scheduler.timesteps):
        model_in = torch.cat([x, x]) if use_null else x  # (2B, 3, S, S) or (B, 3, S, S)
        model_in = scheduler.scale_model_input(model_in, t)
        # Noise or v, as the scheduler's prediction_type says; both are linear in x0 given x_t,
        # so the guidance mix is the same for either.
        pred = unet(model_in, t, class_labels=both_labels).sample
        if use_null:
            pred_class, pred_null = pred.chunk(2)
            pred = pred_null + guidance * (pred_class - pred_null)
        # DDPM adds fresh noise each step: per-image generators keep images batch-independent.
        x = scheduler.step(pred, t, x, generator=generators if len(generators) > 1 else generators[0]).prev_sample
        if on_step is not None:
            on_step(i + 1)
    return ((x.float().clamp(-1, 1) + 1) / 2).cpu()


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, 3, S, S) floats in [0, 1] -> (B, S, S, 3) uint8 arrays for PNG files."""
    return (images.permute(0, 2, 3, 1).numpy() * 255).round().clip(0, 255).astype(np.uint8)
