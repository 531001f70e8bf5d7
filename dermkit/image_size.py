"""One rule for the image size of a saved model: the model's size is the one used.

A saved model fixes the side of the images it was made for: a backbone card's ``input_size``
(``ssl.evaluate``, ``finetune.train --init``), a classifier checkpoint's ``image_size``
hyperparameter (``finetune.evaluate``), a generator's ``image_size`` in its folder's
``manifest.json`` (``synth.evaluate``). Every stage takes it over with :func:`model_image_size`:

* ``data.image_size=0``, or the model's own value: the model's size, silently;
* any other value: the model's size, with a one-line note naming both values and the model.

Another value is replaced rather than refused because the commands' schemas default
``data.image_size`` to a working size (64) that a user who names a model has not chosen: a
refusal would stop every such command that leaves the size alone. This was already what
``ssl.evaluate``, ``finetune.train`` and ``finetune.evaluate`` did; ``synth.evaluate`` used a
non-zero value as given, which compared resized synthetic images with real ones at another size.
"""

from __future__ import annotations

from dermkit.console import console
from dermkit.errors import DermkitError


def model_image_size(configured: int, model_size: int, model: str, key: str = "data.image_size") -> int:
    """The image side to use with a saved model: the model's (see the module docstring).

    Args:
        configured: the value of ``key`` in the run's config (0 = take the model's).
        model_size: the side the model records.
        model: what recorded it, for the note (``"the backbone card runs/x/backbone.json"``).
        key: the config key ``configured`` came from.

    Returns:
        ``model_size``.

    Raises:
        DermkitError: the model records no usable size (below 1).
    """
    if model_size < 1:
        raise DermkitError(f"{model} records image size {model_size}; it was not written by a dermkit stage, or is "
                           "damaged. Pass another model.")
    if configured not in (0, model_size):
        console.print(f"[yellow]Using {key}={model_size} from {model} instead of {configured}: a model runs at the "
                      "image size it was made for.[/]", highlight=False)
    return model_size
