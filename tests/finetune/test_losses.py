"""Focal loss, class-balanced loss and class weights."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dermkit.errors import DermkitError
from finetune.class_balanced_loss import ClassBalancedLoss
from finetune.class_weights import class_weights, effective_number_weights, inverse_frequency_weights
from finetune.focal_loss import FocalLoss
from finetune.losses import build_loss


def _batch(seed: int = 0, n: int = 16, c: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, generator=gen) * 3, torch.randint(0, c, (n,), generator=gen)


def test_focal_gamma0_uniform_alpha_equals_cross_entropy() -> None:
    logits, target = _batch()
    assert torch.allclose(FocalLoss(gamma=0.0)(logits, target), F.cross_entropy(logits, target), atol=1e-6)
    uniform = FocalLoss(gamma=0.0, alpha=torch.full((5,), 0.3))
    assert torch.allclose(uniform(logits, target), F.cross_entropy(logits, target), atol=1e-6)


def test_focal_gamma0_with_alpha_equals_weighted_cross_entropy() -> None:
    logits, target = _batch(1)
    alpha = torch.tensor([0.5, 1.0, 2.0, 3.0, 0.1])
    expected = F.cross_entropy(logits, target, weight=alpha)
    assert torch.allclose(FocalLoss(gamma=0.0, alpha=alpha)(logits, target), expected, atol=1e-6)


def test_focal_down_weights_easy_examples() -> None:
    target = torch.tensor([0, 0])
    logits = torch.tensor([[6.0, 0.0, 0.0], [0.5, 0.0, 0.0]])  # easy (p≈1), hard (p≈0.45)
    ce = F.cross_entropy(logits, target, reduction="none")
    focal = FocalLoss(gamma=2.0, reduction="none")(logits, target)
    ratio = focal / ce  # = (1 - p_t)^2
    assert ratio[0] < 1e-4 and ratio[1] > 0.25
    assert ratio[0] < ratio[1]
    p = logits.softmax(1)[:, 0]
    assert torch.allclose(ratio, (1 - p) ** 2, atol=1e-6)


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0, 5.0])
def test_focal_gradients_finite_as_p_goes_to_one(gamma: float) -> None:
    # p_t == 1 in float32, and p_t = 1 - 1e-7 (where (1 - p)^γ has a steep derivative for γ < 1)
    logits = torch.tensor([[80.0, -80.0, 0.0], [1e4, 0.0, 0.0], [16.1, 0.0, 0.0]], requires_grad=True)
    loss = FocalLoss(gamma=gamma)(logits, torch.tensor([0, 0, 0]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    assert logits.grad.abs().max() < 1e-5


def test_focal_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="gamma"):
        FocalLoss(gamma=-1.0)
    with pytest.raises(ValueError, match="reduction"):
        FocalLoss(reduction="avg")


def test_inverse_and_effective_weights() -> None:
    counts = [100, 10, 1]
    inv = inverse_frequency_weights(counts)
    assert torch.allclose(inv.mean(), torch.tensor(1.0))
    assert torch.allclose(inv / inv[0], torch.tensor([1.0, 10.0, 100.0]))
    eff = effective_number_weights(counts, beta=0.9)
    # effective number E_n = (1 - 0.9^n) / 0.1
    e = torch.tensor([(1 - 0.9**n) / 0.1 for n in counts])
    assert torch.allclose(eff / eff[0], e[0] / e, atol=1e-5)
    # β → 0: uniform; large β and few samples: close to inverse frequency
    assert torch.allclose(effective_number_weights(counts, beta=0.0), torch.ones(3))
    near_inv = effective_number_weights(counts, beta=0.99999)
    assert torch.allclose(near_inv / near_inv[0], torch.tensor([1.0, 10.0, 100.0]), rtol=2e-3)


def test_class_weights_errors() -> None:
    with pytest.raises(DermkitError, match="at least one training image"):
        inverse_frequency_weights([5, 0, 3])
    with pytest.raises(DermkitError, match="loss.alpha"):
        class_weights("given", [5, 3], given=[1.0])
    with pytest.raises(DermkitError, match="loss.weighting"):
        class_weights("sqrt", [5, 3])
    with pytest.raises(DermkitError, match="loss.beta"):
        effective_number_weights([5, 3], beta=1.0)
    assert class_weights("none", [5, 3]) is None


def test_class_balanced_loss_weights_rare_classes_up() -> None:
    counts = [1000, 10]
    loss = ClassBalancedLoss(counts, beta=0.999)
    assert loss.weights[1] > 5 * loss.weights[0]
    logits = torch.zeros(2, 2)
    # identical per-sample losses: the weighted mean equals the plain mean whatever the weights
    assert torch.allclose(loss(logits, torch.tensor([0, 1])), F.cross_entropy(logits, torch.tensor([0, 1])))
    logits, target = _batch(2, c=2)
    expected = F.cross_entropy(logits, target, weight=effective_number_weights(counts, 0.999))
    assert torch.allclose(loss(logits, target), expected, atol=1e-6)


def test_build_loss_registry() -> None:
    assert isinstance(build_loss("focal", [3, 4], weighting="inverse"), FocalLoss)
    assert isinstance(build_loss("class_balanced", [3, 4]), ClassBalancedLoss)
    ce = build_loss("ce", [3, 1], weighting="inverse")
    assert torch.allclose(ce.weight, torch.tensor([0.5, 1.5]))
    with pytest.raises(DermkitError, match="focal"):
        build_loss("focall", [3, 4])


def test_label_smoothing_is_cross_entropy_against_a_smoothed_target_and_refused_elsewhere() -> None:
    logits, target = _batch(2, c=3)
    ce = build_loss("ce", [3, 1, 2], weighting="none", label_smoothing=0.1)
    smoothed = 0.9 * F.one_hot(target, 3).float() + 0.1 / 3  # (B, C) target distribution
    expected = -(smoothed * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    assert torch.allclose(ce(logits, target), expected, atol=1e-6)
    assert not torch.allclose(ce(logits, target), F.cross_entropy(logits, target))
    with pytest.raises(DermkitError, match="loss.name=ce only"):
        build_loss("focal", [3, 4], label_smoothing=0.1)
