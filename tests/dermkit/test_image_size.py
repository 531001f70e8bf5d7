"""The image-size rule for saved models: the model's size wins, a differing value is named."""

from __future__ import annotations

import pytest

from dermkit.errors import DermkitError
from dermkit.image_size import model_image_size


def test_zero_or_the_same_value_takes_the_models_size_silently(capsys: pytest.CaptureFixture[str]) -> None:
    assert model_image_size(0, 32, "the card x.json") == 32
    assert model_image_size(32, 32, "the card x.json") == 32
    captured = capsys.readouterr()
    assert captured.out == captured.err == ""


def test_another_value_is_replaced_with_a_note_naming_both(capsys: pytest.CaptureFixture[str]) -> None:
    assert model_image_size(64, 32, "the backbone card runs/x/backbone.json") == 32
    note = "".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert "data.image_size=32fromthebackbonecardruns/x/backbone.jsoninsteadof64" in note


def test_a_model_without_a_size_is_refused() -> None:
    with pytest.raises(DermkitError, match="checkpoint c.ckpt records image size 0"):
        model_image_size(64, 0, "the checkpoint c.ckpt")
