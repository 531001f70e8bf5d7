"""The backbone file that stages exchange: ``NAME.safetensors`` plus its JSON card ``NAME.json``.

The card says how to rebuild the network and feed it: architecture, stem, input size,
normalisation, and where the weights came from (method, epochs, data, split hash).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from dermkit.backbones.registry import Backbone, build_backbone
from dermkit.checkpoint import check_readable
from dermkit.errors import DermkitError

CARD_FORMAT = "dermkit-backbone/1"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class BackboneCard:
    """What a backbone file is and how to feed it (stored as JSON beside the weights)."""

    architecture: str
    input_size: int
    small_stem: bool = False
    feature_dim: int = 0
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    method: str = "random"
    epochs: int = 0
    data: dict[str, Any] = field(default_factory=dict)
    split_hash: str = ""
    format: str = CARD_FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"


def card_path(weights: str | Path) -> Path:
    return Path(weights).with_suffix(".json")


def save_backbone(path: str | Path, backbone: Backbone, card: BackboneCard) -> Path:
    """Write the backbone's weights (safetensors) and its card (same name, ``.json``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    card.feature_dim = backbone.feature_dim
    state = {k: v.detach().cpu().contiguous() for k, v in backbone.state_dict().items()}
    save_file(state, str(path), metadata={"format": CARD_FORMAT})
    card_path(path).write_text(card.to_json())
    return path


def read_card(path: str | Path) -> BackboneCard:
    """Read the card beside a backbone file."""
    cpath = card_path(path)
    if not cpath.is_file():
        raise DermkitError(f"Backbone card {cpath} is missing. A backbone file needs its JSON card beside it "
                           "(written by python -m ssl.pretrain).")
    try:
        raw = json.loads(cpath.read_text())
    except json.JSONDecodeError as err:
        raise DermkitError(f"Backbone card {cpath} is not valid JSON: {err}") from None
    if raw.get("format") != CARD_FORMAT:
        raise DermkitError(f"Backbone card {cpath} has format {raw.get('format')!r}, expected {CARD_FORMAT!r}.")
    fields = BackboneCard.__dataclass_fields__
    unknown = set(raw) - set(fields)
    if unknown:
        raise DermkitError(f"Backbone card {cpath} has unknown keys {sorted(unknown)}.")
    raw["mean"], raw["std"] = tuple(raw.get("mean", IMAGENET_MEAN)), tuple(raw.get("std", IMAGENET_STD))
    return BackboneCard(**raw)


def load_backbone(path: str | Path) -> tuple[Backbone, BackboneCard]:
    """Rebuild a backbone from its file and card; the weights must match exactly."""
    path = Path(path)
    if not path.is_file():
        raise DermkitError(f"Backbone file {path} does not exist. Pass the backbone.safetensors written by "
                           "python -m ssl.pretrain.")
    card = read_card(path)
    check_readable(path, "Write it again: re-run the ssl.pretrain command of its run folder (it resumes from "
                         "checkpoints/last.ckpt and saves the backbone), or pass another backbone file.")
    backbone = build_backbone(card.architecture, small_stem=card.small_stem, image_size=card.input_size)
    state = load_file(str(path))
    try:
        backbone.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise DermkitError(f"Backbone file {path} does not fit its card ({card.architecture}): {err}") from None
    return backbone, card


_PREFIXES = ("module.", "backbone.", "model.", "encoder.", "net.")


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        return load_file(str(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise DermkitError(f"Cannot read weights file {path}: {err}") from None
    for key in ("state_dict", "model", "teacher", "student"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict):
        raise DermkitError(f"Weights file {path} holds no state dict (found {type(obj).__name__}).")
    return obj


def load_init_weights(backbone: Backbone, path: str | Path) -> tuple[list[str], list[str]]:
    """Load a local weights file (e.g. torchvision ImageNet weights) into a backbone.

    Keys are matched to ``backbone.net`` after stripping common wrapper prefixes (``module.``,
    ``backbone.``, ...); classifier heads (``fc.*``, ``heads.*``) are ignored. Tensors whose shape
    does not fit (e.g. the first convolution with the small stem) are left at their random values
    and reported as missing.

    Returns:
        (missing, unexpected): backbone keys not loaded, and file keys not used.

    Raises:
        DermkitError: the file is missing or unreadable, or not one tensor fits.
    """
    path = Path(path)
    if not path.is_file():
        raise DermkitError(f"Weights file {path} does not exist (model.init must be a local file path; "
                           "nothing is downloaded).")
    raw = _read_state_dict(path)
    state: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
        state[key] = value
    own = backbone.net.state_dict()
    usable = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    if not usable:
        raise DermkitError(f"No tensor in {path} fits backbone {backbone.name}: is it the right architecture?")
    result = backbone.net.load_state_dict(usable, strict=False)
    unexpected = sorted(k for k in state if k not in usable)
    return sorted(result.missing_keys), unexpected
