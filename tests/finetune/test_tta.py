"""Test-time augmentation: eight dihedral views, invariant averaged probabilities."""

from __future__ import annotations

import torch

from finetune.tta import dihedral_views, tta_probabilities
from tests.finetune.test_explain import tiny_classifier


def test_the_eight_views_are_distinct_flips_and_rotations() -> None:
    images = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    views = dihedral_views(images)
    assert len(views) == 8 and torch.equal(views[0], images)
    assert len({tuple(v.flatten().tolist()) for v in views}) == 8


def test_tta_probabilities_do_not_depend_on_orientation() -> None:
    model = tiny_classifier(["mel", "nv", "bkl"])
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    turned = torch.rot90(images, 1, dims=(-2, -1)).flip(-1)
    with torch.no_grad():
        plain, plain_turned = model(images).softmax(1), model(turned).softmax(1)
        averaged, averaged_turned = tta_probabilities(model, images), tta_probabilities(model, turned)
    assert not torch.allclose(plain, plain_turned, atol=1e-4)  # the network alone is not invariant
    assert torch.allclose(averaged, averaged_turned, atol=1e-5)
    assert torch.allclose(averaged.sum(1), torch.ones(3), atol=1e-5)


def test_the_module_uses_tta_in_testing_only_when_asked() -> None:
    model = tiny_classifier(["mel", "nv"])
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    batch = (images, torch.tensor([0, 1]), torch.tensor([0, 1]))
    with torch.no_grad():
        model.test_step(batch, 0)
        model.on_test_epoch_end()
        plain = model.test_predictions[1]
        model.test_time_augmentation = True
        model.test_step(batch, 0)
        model.on_test_epoch_end()
        averaged = model.test_predictions[1]
        assert torch.allclose(plain, model(images).softmax(1), atol=1e-5)
        assert torch.allclose(averaged, tta_probabilities(model, images), atol=1e-5)
    assert not torch.allclose(plain, averaged, atol=1e-4)
