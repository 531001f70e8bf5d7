"""Every registry (:class:`dermkit.registry.Registry`): refuses a repeated name, lists its names, and
answers a misspelt one with the closest names; every backbone, loss, loss weighting, sampler,
diffusion sampler, SSL optimiser and colour constancy method works on a tiny input.

The readers run on fixtures of their own (``tests/dermkit/test_readers.py``, which fails when a
registered reader has none) and each SSL method trains one step (``tests/ssl/test_methods.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from dermkit.errors import DermkitError
from dermkit.registry import Registry


def _backbones() -> Registry:
    from dermkit.backbones import BACKBONES

    return BACKBONES


def _readers() -> Registry:
    from dermkit.data.readers import READERS, _load_readers

    _load_readers()
    return READERS


def _ssl_methods() -> Registry:
    from ssl.methods import METHODS

    return METHODS


def _losses() -> Registry:
    from finetune.losses import LOSSES

    return LOSSES


def _samplers() -> Registry:
    from finetune.sampler import SAMPLERS

    return SAMPLERS


def _diffusion_samplers() -> Registry:
    from synth.sampling import SAMPLERS

    return SAMPLERS


def _ssl_optimizers() -> Registry:
    from ssl.base_module import OPTIMIZERS

    return OPTIMIZERS


def _weightings() -> Registry:
    from finetune.class_weights import WEIGHTINGS

    return WEIGHTINGS


def _color_constancy() -> Registry:
    from dermkit.data.color import COLOR_CONSTANCY

    return COLOR_CONSTANCY


REGISTRIES: dict[str, Callable[[], Registry]] = {
    "backbones": _backbones, "readers": _readers, "ssl methods": _ssl_methods, "losses": _losses,
    "samplers": _samplers, "diffusion samplers": _diffusion_samplers, "ssl optimisers": _ssl_optimizers,
    "loss weightings": _weightings, "colour constancy": _color_constancy,
}
# Names each registry must keep (configs and presets use them).
SOME_NAMES = {
    "backbones": {"resnet18", "resnet50", "vit_s16", "tiny_cnn"},
    "readers": {"demo", "ham10000", "isic", "imagefolder", "medmnist", "folder"},
    "ssl methods": {"simclr", "dino", "byol"},
    "losses": {"focal", "ce", "class_balanced"},
    "samplers": {"shuffle", "balanced"},
    "diffusion samplers": {"ddim", "dpm", "ddpm"},
    "ssl optimisers": {"sgd", "adamw", "lars"},
    "loss weightings": {"none", "inverse", "effective", "given"},
    "colour constancy": {"none", "shades_of_gray"},
}


def _help_line(registry: str) -> str | None:
    """The help line of the flag that takes the registry's names (None: no flag, only a config key)."""
    if registry == "backbones":
        from dermkit.flags import backbone_flag

        return backbone_flag().help
    if registry == "readers":
        from dermkit.flags import data_flag

        return data_flag().help
    if registry == "ssl methods":
        from ssl.pretrain import FLAGS

        return next(flag.help for flag in FLAGS if flag.option == "--method")
    if registry == "losses":
        from finetune.train import FLAGS

        return next(flag.help for flag in FLAGS if flag.option == "--loss")
    if registry == "diffusion samplers":
        from synth.generate import FLAGS as GENERATE_FLAGS

        return next(flag.help for flag in GENERATE_FLAGS if flag.option == "--sampler")
    return None


@pytest.mark.parametrize("registry", sorted(REGISTRIES))
def test_registry_refuses_a_repeated_name(registry: str) -> None:
    entries = REGISTRIES[registry]()
    name = next(iter(entries))
    entry, before = entries[name], list(entries)
    with pytest.raises(ValueError, match=f"'{name}' is registered twice"):
        entries.add(name, entry)
    with pytest.raises(ValueError, match="registered twice"):
        entries.register(name)(entry)
    with pytest.raises(ValueError, match="registered twice"):
        entries[name] = entry
    assert list(entries) == before and entries[name] is entry


@pytest.mark.parametrize("registry", sorted(REGISTRIES))
def test_registry_lists_its_names_for_help(registry: str) -> None:
    entries = REGISTRIES[registry]()
    names = entries.names()
    assert SOME_NAMES[registry] <= set(names)
    assert sorted(names) == sorted(entries) and len(set(names)) == len(names)
    if entries.sort_names:
        assert names == sorted(names)
    else:
        assert names == list(entries)  # registration order
    help_line = _help_line(registry)
    if help_line is not None:
        assert ", ".join(names) in help_line


@pytest.mark.parametrize("registry", sorted(REGISTRIES))
def test_registry_answers_a_misspelt_name_with_the_closest(registry: str) -> None:
    entries = REGISTRIES[registry]()
    name = next(iter(entries))
    with pytest.raises(DermkitError) as error:
        entries.lookup(f"{name}x", key="some.key")
    message = str(error.value)
    assert f"some.key='{name}x'" in message and f"Did you mean: {name}" in message
    assert message.endswith(f"Known: {', '.join(entries.names())}.")
    assert entries.lookup(name) is entries[name]
    assert entries.get(f"{name}x") is None  # the Mapping interface keeps its meaning


def _backbone_names() -> list[str]:
    return list(_backbones())


@pytest.mark.parametrize("name", _backbone_names())
def test_every_backbone_maps_images_to_features(name: str) -> None:
    torch.manual_seed(0)
    backbone = _backbones().lookup(name)(False, 32).eval()
    with torch.no_grad():
        features = backbone(torch.rand(2, 3, 32, 32))
    assert features.shape == (2, backbone.feature_dim) and torch.isfinite(features).all()


@pytest.mark.parametrize("name", list(_losses()))
def test_every_loss_returns_a_scalar_with_gradients(name: str) -> None:
    from finetune.losses import build_loss

    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 4, generator=generator, requires_grad=True)  # (B, C)
    target = torch.randint(0, 4, (8,), generator=generator)  # (B,)
    loss = build_loss(name, [5, 3, 2, 1], weighting="none")(logits, target)
    assert loss.shape == () and torch.isfinite(loss)
    loss.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def _expected_class_weights(counts: list[int], beta: float, given: list[float]) -> dict[str, torch.Tensor | None]:
    """What each weighting's name promises for ``counts``, from its formula."""
    n = torch.tensor(counts, dtype=torch.float64)
    inverse, effective = 1 / n, (1 - beta) / (1 - beta**n)
    return {"none": None, "inverse": (inverse * len(n) / inverse.sum()).float(),
            "effective": (effective * len(n) / effective.sum()).float(), "given": torch.tensor(given)}


@pytest.mark.parametrize("name", list(_weightings()))
def test_every_loss_weighting_gives_the_weights_its_name_says(name: str) -> None:
    from finetune.class_weights import class_weights

    counts, beta, given = [8, 2, 1], 0.9, [0.5, 1.0, 2.0]
    weights = class_weights(name, counts, beta=beta, given=given)
    expected = _expected_class_weights(counts, beta, given)[name]
    if expected is None:
        assert weights is None
    else:
        assert weights is not None and weights.dtype == torch.float32 and torch.allclose(weights, expected)


def _channel_p_norms(image: np.ndarray, p: int = 6) -> np.ndarray:
    """(3,) per-channel Minkowski p-norm means of an (H, W, 3) image (Shades of Gray's illuminant)."""
    return np.power(np.mean(np.power(image.astype(np.float64), p), axis=(0, 1)), 1 / p)


@pytest.mark.parametrize("name", list(_color_constancy()))
def test_every_colour_constancy_method_does_what_its_name_says(name: str) -> None:
    rng = np.random.default_rng(0)
    gray = rng.uniform(60, 200, size=(16, 16, 1))
    cast = np.clip(gray * np.array([1.0, 0.75, 0.45]), 0, 255).astype(np.uint8)  # (16, 16, 3) under a warm light
    corrected = _color_constancy().lookup(name)(cast)
    assert corrected.shape == cast.shape and corrected.dtype == np.uint8
    norms = _channel_p_norms(corrected)
    promise = {"none": lambda: corrected is cast,  # nothing changed, not even copied
               "shades_of_gray": lambda: norms.max() / norms.min() < 1.02}  # the illuminant made gray
    assert promise[name]()


@pytest.mark.parametrize("name", list(_samplers()))
def test_every_sampler_draws_reproducible_indices(name: str) -> None:
    labels = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 1, 2])  # (N,)
    factory = _samplers().lookup(name)

    def draw(num_samples: int | None) -> list[int]:
        return list(factory(labels, num_samples, torch.Generator().manual_seed(3)))

    epoch = draw(None)
    assert len(epoch) == len(labels) and all(0 <= i < len(labels) for i in epoch)
    assert draw(None) == epoch  # the seeded generator fixes the order
    assert len(draw(25)) == 25


def test_the_shuffle_sampler_draws_what_a_shuffling_loader_draws() -> None:
    # finetune.train passes SAMPLERS["shuffle"] where it once passed shuffle=True: same order, epoch after epoch.
    from finetune.sampler import SAMPLERS

    items = list(range(23))
    shuffling = DataLoader(items, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(7))
    generator = torch.Generator().manual_seed(7)
    sampled = DataLoader(items, batch_size=4, sampler=SAMPLERS["shuffle"](torch.zeros(23), None, generator),
                         generator=generator)
    for _ in range(3):
        assert [b.tolist() for b in shuffling] == [b.tolist() for b in sampled]


class _ZeroUNet(nn.Module):
    """A stand-in class-conditional UNet predicting 0 everywhere (3 classes and the null class, 8 px)."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))  # sample() reads device and dtype from a parameter
        self.config = SimpleNamespace(num_class_embeds=4, sample_size=8)

    def forward(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(sample=torch.zeros_like(x))  # (B, 3, 8, 8)


def _diffusion_sampler_kinds() -> dict[str, tuple[type, dict[str, object]]]:
    """What each diffusion sampler's name promises: its diffusers scheduler class and settings."""
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    return {"ddim": (DDIMScheduler, {}),
            "dpm": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2,
                                                  "use_lu_lambdas": True}),
            "ddpm": (DDPMScheduler, {})}


def test_diffusion_samplers_keep_their_order() -> None:
    # synth.speed times and reports them in registration order.
    assert list(_diffusion_samplers())[:3] == ["ddim", "dpm", "ddpm"]


@pytest.mark.parametrize("name", list(_diffusion_samplers()))
def test_every_diffusion_sampler_builds_its_scheduler_and_steps_as_asked(name: str) -> None:
    from diffusers import DDPMScheduler

    from synth.sampling import make_sampler, sample
    from synth.speed import SpeedConfig

    train = DDPMScheduler(num_train_timesteps=100, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction")
    scheduler = make_sampler(name, train)
    scheduler_class, settings = _diffusion_sampler_kinds()[name]
    assert type(scheduler) is scheduler_class
    assert {key: scheduler.config.get(key) for key in settings} == settings
    # The training schedule and prediction type carry over.
    assert scheduler.config.prediction_type == "v_prediction"
    assert torch.allclose(scheduler.alphas_cumprod, train.alphas_cumprod)
    steps: list[int] = []
    images = sample(_ZeroUNet(), scheduler, torch.tensor([0, 2]), [0, 1], num_steps=7, guidance=2.0,
                    on_step=steps.append)
    assert steps == list(range(1, 8)) and len(scheduler.timesteps) == 7
    assert images.shape == (2, 3, 8, 8) and torch.isfinite(images).all()
    assert f"{name}_steps" in {f.name for f in dataclasses.fields(SpeedConfig)}  # synth.speed times every sampler


def _ssl_optimizer_kinds() -> dict[str, tuple[type, float | None]]:
    """What each SSL optimiser's name promises: its class and the momentum it keeps (None: none)."""
    from lightly.utils.lars import LARS

    return {"sgd": (torch.optim.SGD, 0.8), "adamw": (torch.optim.AdamW, None), "lars": (LARS, 0.8)}


@pytest.mark.parametrize("name", list(_ssl_optimizers()))
def test_every_ssl_optimizer_keeps_its_groups_and_steps_downhill(name: str) -> None:
    weight, bias = nn.Parameter(torch.ones(4, 3)), nn.Parameter(torch.ones(4))
    groups = [{"params": [weight], "weight_decay": 0.01}, {"params": [bias], "weight_decay": 0.0}]
    optimizer = _ssl_optimizers().lookup(name)(groups, 0.05, 0.8)
    optimizer_class, momentum = _ssl_optimizer_kinds()[name]
    assert type(optimizer) is optimizer_class
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.01, 0.0]
    assert all(g["lr"] == 0.05 and g.get("momentum") == momentum for g in optimizer.param_groups)
    loss_before = (weight**2).sum() + (bias**2).sum()
    loss_before.backward()
    optimizer.step()
    assert (weight**2).sum() + (bias**2).sum() < loss_before


def test_an_unknown_ssl_optimizer_names_auto_and_the_registered_ones() -> None:
    from ssl.base_module import PretrainOptimConfig, SSLModule

    with pytest.raises(DermkitError, match=r"optim.name='lasr'\. Did you mean: lars.*Choose auto, sgd, adamw, lars\.$"):
        SSLModule(nn.Identity(), PretrainOptimConfig(name="lasr"), 8, "sgd", 0.1, 0.0)  # type: ignore[arg-type]


def test_registry_keeps_registration_order_and_can_sort_its_names() -> None:
    plain, sorted_names = Registry[int]("thing"), Registry[int]("thing", sort_names=True)
    for registry in (plain, sorted_names):
        registry.add("b", 1)
        registry.register("a")(2)
    assert list(plain) == list(sorted_names) == ["b", "a"]
    assert plain.names() == ["b", "a"] and sorted_names.names() == ["a", "b"]
    with pytest.raises(DermkitError, match=r"^Unknown thing 'zz'\. Known: a, b\.$"):
        sorted_names.lookup("zz")
