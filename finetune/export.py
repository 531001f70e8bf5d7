"""``python -m finetune.export``: a fine-tuned classifier as a file that runs without dermkit or PyTorch.

::

    python -m finetune.export --checkpoint runs/finetune/ham/checkpoints/best-epoch07.ckpt --format onnx \\
        --out runs/finetune/ham/export_onnx
    python docs/examples/onnx_predict.py runs/finetune/ham/export_onnx lesion1.jpg lesion2.jpg

Outputs in ``out_dir`` (default ``<run>/export_onnx``):

- ``model.onnx``: input ``images``, float32 (N, 3, S, S), RGB images prepared as the card says (the
  network's own normalisation, not inside the graph); output ``probabilities``, float32 (N, C),
  the softmax over the classes (inside the graph); N is a dynamic axis, S is fixed. The card is also
  in the file's metadata (``dermkit_card``).
- ``model.json``, the card (:func:`model_card`): classes, input size, mean and standard deviation,
  colour constancy, the preprocessing in words (exactly what dermkit does before the network:
  :func:`preprocessing_steps`), the checkpoint's SHA-256, the exporter, and the check below.
- ``config.yaml`` and ``run.json``.

Exporter: ``torch.onnx.export`` with ``dynamo=False``, the TorchScript-based exporter, at opset
``opset`` (17 by default, which onnxruntime has run since 1.14). Since torch 2.9 the default is the
``torch.export``-based exporter, which needs the ``onnxscript`` package; the TorchScript one needs only
torch and exports every backbone of the registry (ResNets, ``tiny_cnn``, the ViT; its deprecation and
tracer warnings are silenced: the input size is fixed in the graph on purpose, and the check below
is the test that matters).

Check: the written file is run by onnxruntime on a batch of random inputs of another batch size
than the traced one; the largest difference to PyTorch's probabilities must be below
:data:`TOLERANCE` (the card records it), else the export fails.

The packages (``onnx``, ``onnxruntime``) are the optional ``export`` extra: ``pip install -e '.[export]'``.
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dermkit.checkpoint import file_digest
from dermkit.config import Flag, parse_config
from dermkit.console import console, entry_point
from dermkit.data.color import SHADES_OF_GRAY_P
from dermkit.errors import DermkitError
from dermkit.flags import out_flag
from dermkit.out_folder import check_out_folder, replacing
from dermkit.runinfo import write_run_info
from dermkit.vocab import display_name
from finetune.evaluate import load_classifier
from finetune.filter_synthetic import read_classifier_record, run_dir_of
from finetune.module import ClassifierModule

KIND = "finetune.export"  # run.json's kind (dermkit.out_folder)
FORMATS = ("onnx",)
INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"
MODEL_FILE = "model.onnx"
CARD_FILE = "model.json"
CARD_METADATA_KEY = "dermkit_card"
# Largest difference in probability allowed between onnxruntime and PyTorch on the same inputs.
TOLERANCE = 1e-4
EXPORT_PACKAGES = ("onnx", "onnxruntime")
INSTALL_HINT = "pip install -e '.[export]'"
CHECK_BATCH = 3  # not the traced batch of 2: the check also shows that the batch axis is dynamic
RESIZE = "Pillow Image.resize with BILINEAR and reducing_gap=2.0"


@dataclass
class ExportConfig:
    """``python -m finetune.export``.

    Keys:
        checkpoint: a ``.ckpt`` written by ``finetune.train`` (``checkpoints/best-*.ckpt``).
        format: ``onnx`` (the one format so far).
        opset: ONNX operator set version of the exported graph.
        out_dir: output folder; empty: ``<run folder>/export_<format>``.
    """

    checkpoint: str = ""
    format: str = "onnx"
    opset: int = 17
    out_dir: str = ""


def check_format(value: str) -> None:
    """Refuse an export format other than those of :data:`FORMATS`."""
    if value not in FORMATS:
        raise DermkitError(f"--format {value} is not supported; choose one of {', '.join(FORMATS)}.")


FLAGS = [
    Flag("--checkpoint", "checkpoint", "classifier checkpoint (.ckpt) from finetune.train"),
    Flag("--format", "format", f"file format: {', '.join(FORMATS)}", check=check_format),
    out_flag("output folder: model.onnx, model.json (the card), config.yaml, run.json; a re-run replaces it whole",
             command="finetune.export", replaces=True),
]


def require_export_packages() -> None:
    """Fail before any work when the ``export`` extra is not installed.

    Raises:
        DermkitError: ``onnx`` or ``onnxruntime`` is not importable (one line, naming the extra).
    """
    missing = [name for name in EXPORT_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise DermkitError(f"--format onnx needs {' and '.join(missing)}, not installed here: {INSTALL_HINT} "
                           f"(dermkit's export extra: {', '.join(EXPORT_PACKAGES)}).")


class ProbabilityModel(nn.Module):
    """The classifier with its softmax: normalised images (N, 3, S, S) -> class probabilities (N, C)."""

    def __init__(self, classifier: ClassifierModule) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(images).softmax(dim=1)  # (N, C)


def preprocessing_steps(image_size: int, color_constancy: str, mean: list[float], std: list[float]) -> list[str]:
    """In words, what dermkit does to an image file before the network (:mod:`dermkit.data.images`,
    :mod:`dermkit.data.cache`, :mod:`dermkit.data.color`, :func:`finetune.transforms.eval_transform`)."""
    size = image_size
    color = ("none: the pixels are kept as they are" if color_constancy == "none" else
             f"Shades of Gray (p={SHADES_OF_GRAY_P}) on the {size} x {size} uint8 image, in float64: per channel "
             f"c, e_c = (mean over the pixels of x^{SHADES_OF_GRAY_P})^(1/{SHADES_OF_GRAY_P}); each channel is "
             "multiplied by |e| / (sqrt(3) e_c) (gain 1 where e_c = 0; an all-black image is kept), then "
             "uint8(clip(x * gain + 0.5, 0, 255))")
    return [
        "Decode the file to 8-bit RGB with Pillow (transparent images composited on white; 16-bit grey scaled "
        "by its range to 8 bits).",
        f"Resize so that the short side is {size} px: new size (max({size}, round(W * s)), max({size}, "
        f"round(H * s))) with s = {size} / min(W, H), by {RESIZE}; then crop the centre {size} x {size} "
        f"(left = (new W - {size}) // 2, top = (new H - {size}) // 2).",
        f"Colour constancy: {color}.",
        "Convert to float32 and divide by 255.",
        f"Per RGB channel, subtract mean {mean} and divide by std {std}.",
        f"Transpose (H, W, 3) to (3, H, W) and stack the images into a float32 batch (N, 3, {size}, {size}), "
        f"the input '{INPUT_NAME}'.",
    ]


def export_onnx(model: ProbabilityModel, path: Path, image_size: int, opset: int) -> None:
    """Write ``model`` as ONNX: input (N, 3, S, S) named :data:`INPUT_NAME`, output (N, C) :data:`OUTPUT_NAME`."""
    example = torch.zeros(2, 3, image_size, image_size)  # (2, 3, S, S): N stays a named dynamic axis
    with warnings.catch_warnings():
        # The legacy exporter's deprecation notice, and tracer warnings about the ViT's size checks (the
        # input size is fixed in the graph on purpose); check_onnx tests the result.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(model, (example,), str(path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                          opset_version=opset, dynamo=False)


def check_onnx(model: ProbabilityModel, path: Path, image_size: int, seed: int = 0) -> float:
    """Largest |p_onnxruntime - p_torch| on :data:`CHECK_BATCH` random inputs (N(0, 1), as normalised images are).

    Raises:
        DermkitError: the difference is :data:`TOLERANCE` or more.
    """
    import onnxruntime

    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(CHECK_BATCH, 3, image_size, image_size, generator=generator)  # (N, 3, S, S)
    with torch.no_grad():
        expected = model(images).numpy()  # (N, C)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run([OUTPUT_NAME], {INPUT_NAME: images.numpy()})[0]  # (N, C)
    difference = float(np.abs(got - expected).max())
    if not difference < TOLERANCE:
        raise DermkitError(f"{path} gives probabilities up to {difference:.2e} away from PyTorch's (tolerance "
                           f"{TOLERANCE:g}): the export is wrong. Try another opset= (now the config's), or report it.")
    return difference


def training_record(checkpoint: Path) -> dict[str, Any] | None:
    """The split hash and label fraction of the run that trained ``checkpoint``, when its ``run.json`` is there."""
    try:
        record = read_classifier_record(checkpoint)
    except DermkitError:
        return None  # a checkpoint moved out of its run folder: the card says so (null)
    return {"run_dir": str(run_dir_of(checkpoint.resolve())), "split_hash": record.split_hash,
            "label_fraction": record.label_fraction}


def model_card(module: ClassifierModule, checkpoint: Path, cfg: ExportConfig, difference: float) -> dict[str, Any]:
    """The JSON card written beside the model (see the module docstring)."""
    hp = module.hparams
    size, classes = int(hp.image_size), list(hp.classes)
    mean, std = [float(v) for v in hp.mean], [float(v) for v in hp.std]
    return {
        "format": cfg.format, "model_file": MODEL_FILE,
        "input": {"name": INPUT_NAME, "dtype": "float32", "shape": ["batch", 3, size, size],
                  "layout": "NCHW, RGB, prepared as 'preprocessing' says"},
        "output": {"name": OUTPUT_NAME, "dtype": "float32", "shape": ["batch", len(classes)],
                   "meaning": "class probabilities (softmax inside the graph), column i = classes[i]"},
        "classes": classes, "class_names": {c: display_name(c) for c in classes},
        "image_size": size, "mean": mean, "std": std,
        # A checkpoint written before colour constancy existed loads with the argument's default, "none".
        "color_constancy": str(hp.color_constancy),
        "resize": {"short_side": size, "crop": "centre", "method": RESIZE},
        "preprocessing": preprocessing_steps(size, str(hp.color_constancy), mean, std),
        "architecture": hp.architecture, "small_stem": bool(hp.small_stem),
        "checkpoint": {"path": str(checkpoint.resolve()), "sha256": file_digest(checkpoint)},
        "training_run": training_record(checkpoint),
        "exporter": {"function": "torch.onnx.export", "dynamo": False, "opset": cfg.opset,
                     "torch": torch.__version__, "onnx": metadata.version("onnx")},
        "check": {"runtime": f"onnxruntime {metadata.version('onnxruntime')} (CPU)", "inputs": CHECK_BATCH,
                  "max_abs_probability_difference": difference, "tolerance": TOLERANCE},
    }


def add_card_metadata(path: Path, card: dict[str, Any]) -> None:
    """Store the card in the ONNX file's metadata (``dermkit_card``) and check the file with onnx's checker."""
    import onnx

    model = onnx.load(str(path))
    model.doc_string = (f"dermkit classifier ({card['architecture']}, {card['image_size']} px): "
                        f"{', '.join(card['classes'])}")
    entry = model.metadata_props.add()
    entry.key, entry.value = CARD_METADATA_KEY, json.dumps(card)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


@entry_point
def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(ExportConfig, "python -m finetune.export",
                       "Export a fine-tuned classifier (ONNX) with a card that says how to prepare its images.",
                       argv, FLAGS)
    require_export_packages()
    module = load_classifier(cfg.checkpoint)
    checkpoint = Path(cfg.checkpoint).expanduser()
    out_dir = Path(cfg.out_dir) if cfg.out_dir else run_dir_of(checkpoint) / f"export_{cfg.format}"
    check_out_folder(out_dir, KIND, "--out (out_dir)" if cfg.out_dir else "The default output folder", replaces=True)
    size = int(module.hparams.image_size)
    model = ProbabilityModel(module.float()).eval()
    # Staged, then swapped in whole: no unchecked model.onnx and no earlier export's card is left behind.
    with replacing(out_dir, KIND) as staging:
        written = staging / MODEL_FILE
        export_onnx(model, written, size, cfg.opset)
        difference = check_onnx(model, written, size)
        card = model_card(module, checkpoint, cfg, difference)
        add_card_metadata(written, card)
        (staging / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
        write_run_info(staging, cfg, 0, {"checkpoint": str(checkpoint),
                                         "checkpoint_sha256": card["checkpoint"]["sha256"]}, kind=KIND)
    console.print(f"Wrote {out_dir / MODEL_FILE} ({card['architecture']}, {size} px, classes "
                  f"{', '.join(card['classes'])}; onnxruntime within {difference:.1e} of PyTorch) and its card "
                  f"{out_dir / CARD_FILE}.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
