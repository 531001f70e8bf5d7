"""The generator folder that ``synth.train`` writes and ``synth.generate`` / ``synth.evaluate`` read.

Layout (loads offline, with diffusers' own ``from_pretrained``)::

    DIR/unet/                    UNet2DModel.save_pretrained (the EMA weights)
    DIR/scheduler/               DDPMScheduler.save_pretrained (the training noise schedule)
    DIR/dermkit_generator.json   classes, split hash, per-class training counts, image size, ...
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from diffusers import DDPMScheduler, UNet2DModel

from dermkit.checkpoint import check_readable
from dermkit.errors import DermkitError
from dermkit.vocab import canonical_class

INFO_FILE = "dermkit_generator.json"
INFO_FORMAT = "dermkit-generator/1"


@dataclass
class GeneratorInfo:
    """What a generator was trained on (``dermkit_generator.json``).

    Attributes:
        classes: canonical classes; label ``i`` means ``classes[i]``, label ``len(classes)`` is null.
        split_hash: hash of the data split whose training part the generator saw.
        train_counts: training images per class the generator saw.
        image_size: side in pixels of the images it makes.
        preset: the UNet size preset.
        steps_trained: optimiser steps of training.
        data: the data section of the training config (name, root, fraction, ...).
        label_fraction: the nested label fraction of the training split it was trained on (its
            labelled images are ``indices("train", label_fraction)``); None in folders written
            before it was recorded (see :meth:`trained_label_fraction`).
        format: file format tag.
    """

    classes: tuple[str, ...]
    split_hash: str
    train_counts: dict[str, int]
    image_size: int
    preset: str
    steps_trained: int = 0
    data: dict = field(default_factory=dict)
    label_fraction: float | None = None
    format: str = INFO_FORMAT

    def trained_label_fraction(self) -> float | None:
        """The label fraction it was trained on: the record, else the saved ``data.fraction``.

        synth.train has always trained on ``indices("train", data.fraction)`` and saved its data
        section, so the fallback is what older folders trained on. None when neither is there.
        """
        if self.label_fraction is not None:
            return float(self.label_fraction)
        fraction = self.data.get("fraction")
        return None if fraction is None else float(fraction)


def weights_file(model_dir: Path) -> Path:
    """The UNet weights file of a generator folder."""
    return model_dir / "unet" / "diffusion_pytorch_model.safetensors"


def model_hash(model_dir: str | Path) -> str:
    """A short SHA-256 of the UNet weights: which generator made an image."""
    digest = hashlib.sha256()
    with open(weights_file(Path(model_dir)), "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def save_generator(model_dir: str | Path, unet: UNet2DModel, scheduler: DDPMScheduler, info: GeneratorInfo) -> Path:
    """Write a generator folder (see the module docstring); returns it."""
    out = Path(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    unet.save_pretrained(out / "unet", safe_serialization=True)
    scheduler.save_pretrained(out / "scheduler")
    (out / INFO_FILE).write_text(json.dumps(asdict(info), indent=2) + "\n")
    return out


def read_info(model_dir: str | Path) -> GeneratorInfo:
    """Read ``dermkit_generator.json`` of a generator folder.

    Raises:
        DermkitError: the folder or its info file is missing or malformed.
    """
    path = Path(model_dir)
    if not path.is_dir():
        raise DermkitError(f"Generator folder {path} does not exist. Pass --model with a folder written by "
                           "python -m synth.train (it holds dermkit_generator.json).")
    info_path = path / INFO_FILE
    if not info_path.is_file() or not weights_file(path).is_file():
        raise DermkitError(f"{path} is not a finished generator folder ({INFO_FILE} or unet weights missing). "
                           "Train one with python -m synth.train, or let a resumed training run finish.")
    try:
        raw = json.loads(info_path.read_text())
        raw["classes"] = tuple(canonical_class(c) for c in raw["classes"])
        info = GeneratorInfo(**raw)
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise DermkitError(f"{info_path} is malformed ({err}). Re-train the generator.") from None
    if info.format != INFO_FORMAT:
        raise DermkitError(f"{info_path} has format {info.format!r}, expected {INFO_FORMAT!r}.")
    return info


def load_generator(model_dir: str | Path) -> tuple[UNet2DModel, DDPMScheduler, GeneratorInfo]:
    """Load the EMA UNet (eval mode, CPU), the training scheduler and the info of a generator folder.

    Raises:
        DermkitError: see :func:`read_info`.
    """
    info = read_info(model_dir)
    path = Path(model_dir)
    if weights_file(path).is_file():
        check_readable(weights_file(path), "Save the generator again: re-run the synth.train command of that folder "
                                           "(it resumes from checkpoints/last.ckpt and saves the model).")
    unet = UNet2DModel.from_pretrained(path / "unet", local_files_only=True, low_cpu_mem_usage=False).eval()
    scheduler = DDPMScheduler.from_pretrained(path / "scheduler", local_files_only=True)
    if unet.config.num_class_embeds != len(info.classes) + 1:
        raise DermkitError(f"{path}: the UNet has {unet.config.num_class_embeds} class embeddings but "
                           f"{INFO_FILE} lists {len(info.classes)} classes (+1 null expected).")
    return unet, scheduler, info
