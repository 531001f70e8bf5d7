"""The sampling loop against an oracle denoiser whose data distribution is one image per class."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from diffusers import DDPMScheduler
from torch import nn

from dermkit.errors import DermkitError
from synth.sampling import make_sampler, sample


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


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize(("sampler", "steps"), [("ddim", 20), ("ddpm", 100)])
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
