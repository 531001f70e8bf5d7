"""Which epochs a fine-tuning run validates (dermkit.validation_epochs)."""

from __future__ import annotations

import pytest

from dermkit.errors import DermkitError
from dermkit.validation_epochs import validated_epochs


def test_validated_epochs_count_back_from_the_last() -> None:
    assert validated_epochs(6) == [0, 1, 2, 3, 4, 5]
    assert validated_epochs(30, every_n_epochs=3) == list(range(2, 30, 3))  # 1-based 3, 6, ..., 30
    assert validated_epochs(6, every_n_epochs=4) == [1, 5]
    assert validated_epochs(30, start=0.5) == list(range(15, 30))
    assert validated_epochs(60, every_n_epochs=5, start=0.5) == list(range(34, 60, 5))
    assert validated_epochs(6, start=4 / 6) == [4, 5]  # a share given as epoch / max_epochs names that epoch
    assert validated_epochs(3, every_n_epochs=10, start=0.9) == [2]  # the last epoch always
    with pytest.raises(DermkitError, match="val.every_n_epochs"):
        validated_epochs(6, every_n_epochs=0)
    with pytest.raises(DermkitError, match="val.start"):
        validated_epochs(6, start=1.0)
