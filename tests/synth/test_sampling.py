"""The sampling loop against an oracle denoiser whose data distribution is one image per class."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from diffusers import DDPMScheduler
from torch import nn

from dermkit.errors import DermkitError
from synth.sampling import SAMPLERS, make_sampler, sample


class OracleUNet(nn.Module):
    """Predicts the exact noise (or v, as the scheduler's ``prediction_type`` says) for data that is the
    constant image ``levels[c]`` for class ``c``."""

    def __init__(self, scheduler: DDPMScheduler, levels: list[float], size: int = 8) -> None:
        super().__init__()
        self.alphas = scheduler.alphas_cumprod
        self.predicts_v = scheduler.config.prediction_type == "v_prediction"
        self.levels = torch.tensor(levels + [0.0])  # last entry: the null class
        self.anchor = nn.Parameter(torch.zeros(1))  # sample() reads device and dtype from a parameter
        self.config = SimpleNamespace(num_class_embeds=len(levels) + 1, sample_size=size)

    def forward(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor) -> SimpleNamespace:
        a = self.alphas[t.long()].view(-1, 1, 1, 1) if t.ndim else self.alphas[int(t)]
        x0 = self.levels[class_labels].view(-1, 1, 1, 1)
        eps = (x - a.sqrt() * x0) / (1 - a).sqrt()  # (B, 3, S, S)
        return SimpleNamespace(sample=a.sqrt() * eps - (1 - a).sqrt() * x0 if self.predicts_v else eps)


class GaussianOracleUNet(nn.Module):
    """The exact v-prediction for data whose pixels are independent N(mean, std^2): x0's posterior mean
    given x_t is linear in x_t."""

    def __init__(self, scheduler: DDPMScheduler, mean: float, std: float, size: int = 8) -> None:
        super().__init__()
        self.alphas = scheduler.alphas_cumprod
        self.mean, self.var = mean, std**2
        self.anchor = nn.Parameter(torch.zeros(1))
        self.config = SimpleNamespace(num_class_embeds=2, sample_size=size)

    def forward(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor) -> SimpleNamespace:
        a = self.alphas[t.long()].view(-1, 1, 1, 1) if t.ndim else self.alphas[int(t)]
        # x_t = sqrt(a) x0 + sqrt(1 - a) eps: E[x0 | x_t] by Gaussian conditioning.
        x0 = self.mean + a.sqrt() * self.var / (a * self.var + 1 - a) * (x - a.sqrt() * self.mean)
        eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
        return SimpleNamespace(sample=a.sqrt() * eps - (1 - a).sqrt() * x0)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize(("sampler", "steps"), [("ddim", 20), ("dpm", 10), ("ddpm", 100)])
def test_loop_recovers_each_class_image(sampler: str, steps: int, prediction_type: str) -> None:
    scheduler = DDPMScheduler(num_train_timesteps=100, beta_schedule="squaredcos_cap_v2",
                              prediction_type=prediction_type)
    oracle = OracleUNet(scheduler, [-0.6, 0.2, 0.8])
    images = sample(oracle, make_sampler(sampler, scheduler), torch.tensor([0, 1, 2]), [0, 1, 2], steps, guidance=1.0)
    expected = (torch.tensor([-0.6, 0.2, 0.8]) + 1) / 2  # [0, 1] scale
    assert torch.allclose(images.mean(dim=(1, 2, 3)), expected, atol=0.02)
    assert images.std(dim=(1, 2, 3)).max() < 0.02


def test_guidance_pushes_away_from_the_unconditional_image() -> None:
    scheduler = DDPMScheduler(num_train_timesteps=100, beta_schedule="squaredcos_cap_v2")
    oracle = OracleUNet(scheduler, [0.5])  # null-class image is 0.0
    plain = sample(oracle, make_sampler("ddim", scheduler), torch.tensor([0]), [0], 20, guidance=1.0)
    guided = sample(oracle, make_sampler("ddim", scheduler), torch.tensor([0]), [0], 20, guidance=2.0)
    assert guided.mean() > plain.mean()


def test_samplers_share_the_training_schedule_and_prediction_type() -> None:
    scheduler = DDPMScheduler(num_train_timesteps=100, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction")
    for name in SAMPLERS:
        sampler = make_sampler(name, scheduler)
        assert sampler.config.prediction_type == "v_prediction"
        assert torch.allclose(sampler.alphas_cumprod, scheduler.alphas_cumprod)


@pytest.mark.parametrize("steps", [20, 50])
def test_dpm_solver_is_closer_to_the_exact_ode_than_ddim_at_equal_steps(steps: int) -> None:
    # For a Gaussian data distribution the denoiser is linear in x_t and known exactly; the
    # probability-flow ODE then has one answer for a given starting noise, which a fine DDIM run
    # (1,000 steps) reaches. The second-order solver gets 3-5x nearer to it at 20 and 50 steps.
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
                              prediction_type="v_prediction")
    oracle = GaussianOracleUNet(scheduler, mean=0.3, std=0.4)
    labels, seeds = torch.zeros(4, dtype=torch.long), [0, 1, 2, 3]
    exact = sample(oracle, make_sampler("ddim", scheduler), labels, seeds, 1000, guidance=1.0)
    ddim = sample(oracle, make_sampler("ddim", scheduler), labels, seeds, steps, guidance=1.0)
    dpm = sample(oracle, make_sampler("dpm", scheduler), labels, seeds, steps, guidance=1.0)
    ddim_error = (ddim - exact).abs().mean().item()
    dpm_error = (dpm - exact).abs().mean().item()
    assert dpm_error < 0.5 * ddim_error, (dpm_error, ddim_error)


def test_dpm_steps_are_even_in_log_snr() -> None:
    # Even in t, the cosine schedule's first of 20 steps would span lambda -9.9 to -2.6: the real
    # generator's images then came out 42 levels (of 255) from the converged ones.
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
                              prediction_type="v_prediction")
    sampler = make_sampler("dpm", scheduler)
    sampler.set_timesteps(20)
    lambdas = -torch.log(sampler.sigmas[:-1].double())  # the last sigma is 0: the clean image
    steps = lambdas.diff()
    assert len(steps) == 19 and torch.allclose(steps, steps.mean().expand_as(steps), rtol=1e-3)


def test_unknown_sampler_is_an_error_that_lists_them() -> None:
    with pytest.raises(DermkitError, match=r"sampler='dmp'\. Did you mean: dpm.*Known: ddim, dpm, ddpm\.$"):
        make_sampler("dmp", DDPMScheduler(num_train_timesteps=100))


def test_label_out_of_range_is_an_error() -> None:
    scheduler = DDPMScheduler(num_train_timesteps=100)
    with pytest.raises(DermkitError, match=r"\[0, 1\)"):
        sample(OracleUNet(scheduler, [0.5]), make_sampler("ddim", scheduler), torch.tensor([1]), [0], 5)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_one_step_from_pure_noise_reads_the_prediction_type(prediction_type: str) -> None:
    # The constant-image test above converges even when the output is misread (near t = 0, v and the
    # noise almost agree); a single DDIM step from t = T - 1 uses only the image estimate, so it does not.
    def scheduler(kind: str) -> DDPMScheduler:
        return DDPMScheduler(num_train_timesteps=100, beta_schedule="squaredcos_cap_v2", prediction_type=kind,
                             timestep_spacing="trailing")

    oracle = OracleUNet(scheduler(prediction_type), [-0.6, 0.2, 0.8])
    expected = (torch.tensor([-0.6, 0.2, 0.8]) + 1) / 2
    images = sample(oracle, make_sampler("ddim", scheduler(prediction_type)), torch.tensor([0, 1, 2]), [0, 1, 2], 1,
                    guidance=1.0)
    assert torch.allclose(images.mean(dim=(1, 2, 3)), expected, atol=0.02)
    other = "epsilon" if prediction_type == "v_prediction" else "v_prediction"
    misread = sample(oracle, make_sampler("ddim", scheduler(other)), torch.tensor([0, 1, 2]), [0, 1, 2], 1,
                     guidance=1.0)
    assert not torch.allclose(misread.mean(dim=(1, 2, 3)), expected, atol=0.02)
