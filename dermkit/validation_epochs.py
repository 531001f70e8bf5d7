"""Which epochs of a fine-tuning run are validated (``finetune.train``'s ``val.every_n_epochs`` and ``val.start``).

Shared by ``finetune.validation_schedule`` (which validates them) and ``bench.val_cadence`` (which replays a
cadence on a run that validated every epoch); neither may import the other.
"""

from __future__ import annotations

from dermkit.errors import DermkitError


def validated_epochs(max_epochs: int, every_n_epochs: int = 1, start: float = 0.0) -> list[int]:
    """The 0-based epochs validated in a run of ``max_epochs``, ascending.

    Every ``every_n_epochs``-th epoch counted back from the last one, from epoch
    ``floor(start * max_epochs)`` on; the last epoch always.

    Raises:
        DermkitError: ``every_n_epochs`` < 1 or ``start`` outside [0, 1).
    """
    if every_n_epochs < 1 or not 0.0 <= start < 1.0:
        raise DermkitError(f"val.every_n_epochs={every_n_epochs} must be >= 1 and val.start={start} lie in [0, 1).")
    last = max_epochs - 1
    first = int(start * max_epochs + 1e-9)  # the epsilon: a share given as epoch / max_epochs names that epoch
    return [epoch for epoch in range(first, max_epochs) if (last - epoch) % every_n_epochs == 0]
