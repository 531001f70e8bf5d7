"""Where the classifier looks: Grad-CAM and Grad-CAM++ overlays, one grid PNG per class.

Grad-CAM (Selvaraju et al. 2017) weights the last convolutional block's feature maps by the mean
gradient of a class's logit and keeps the positive part; Grad-CAM++ (Chattopadhay et al. 2018)
weights each location's gradient, which spreads the map over several instances of the evidence.
Both come from ``pytorch-grad-cam`` (PyPI ``grad-cam``); this module picks the layer, the images and
draws the grids.

The layer (:func:`cam_layer`): a CAM has one cell per location of the layer's maps, upsampled to the
input size. The last stage of a ResNet with the standard stem has 2 x 2 maps at 64 px (7 x 7 at
224 px), which can say little more than "the centre". So the layer is chosen for the model's input
size: the deepest candidate (a ResNet's ``layer1``..``layer4``, each ReLU of ``tiny_cnn``) whose maps
have at least :data:`MIN_CAM_CELLS` x :data:`MIN_CAM_CELLS` cells, found by a forward pass of a blank
image with hooks on the candidates (ResNet-18, standard stem: ``layer2`` (8 x 8) at 64 px, ``layer3``
(14 x 14) at 224 px; small stem at 64 px: ``layer4`` (8 x 8)). When no candidate reaches it (a ViT's
tokens: 4 x 4 at 64 px with 16-px patches), the one with the largest maps, deepest among equals.
``report.cam_layer`` names another layer of the backbone network instead. The report and
``metrics.json`` (``report.cam_layer``) record the layer and its map size.

For each class ``c`` the grid shows, most confident first, up to ``n`` true positives (true ``c``,
predicted ``c``, by p(c)), false negatives (true ``c``, predicted another class, by the confidence
of that prediction) and false positives (predicted ``c``, true another class, by p(c)). Columns:
the image, Grad-CAM and Grad-CAM++ of the predicted class, and Grad-CAM of the true class (what
the model would have needed to see).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dermkit.errors import DermkitError, did_you_mean

GROUPS = ("true positives", "false negatives", "false positives")
CAM_METHODS = ("Grad-CAM", "Grad-CAM++")
# The automatic layer's maps have at least this many cells a side at the model's input size.
MIN_CAM_CELLS = 8
CAM_LAYER_KEY = "report.cam_layer"


Reshape = Callable[[torch.Tensor], torch.Tensor]


def tokens_to_maps(tokens: torch.Tensor) -> torch.Tensor:
    """A ViT's tokens (B, 1 + h*w, D) as maps (B, D, h, w), the class token dropped."""
    patches = tokens[:, 1:, :]  # (B, h*w, D)
    side = int(round(patches.shape[1] ** 0.5))
    return patches.reshape(patches.shape[0], side, side, patches.shape[2]).permute(0, 3, 1, 2)


@dataclass(frozen=True)
class CamLayer:
    """The layer whose activations CAM weights, and what its maps look like at the model's input size.

    Attributes:
        name: its name among ``backbone.net.named_modules()`` (``layer2``, ``8`` for a ``tiny_cnn``
            ReLU, ``encoder.layers.encoder_layer_11.ln_1``): what ``report.cam_layer`` takes.
        module: the layer.
        map_size: (h, w) of its maps at ``input_size``: the CAM's cells before upsampling.
        input_size: the input side S it was measured at.
        chosen_by: ``automatic`` (:func:`cam_layer`'s rule) or ``report.cam_layer``.
        reshape: a ViT's tokens -> maps (:func:`tokens_to_maps`); None for a convolutional layer.
    """

    name: str
    module: nn.Module
    map_size: tuple[int, int]
    input_size: int
    chosen_by: str
    reshape: Reshape | None = None

    def record(self) -> dict[str, Any]:
        """What the report and ``metrics.json`` record (``report.cam_layer``)."""
        return {"name": self.name, "map_size": list(self.map_size), "input_size": self.input_size,
                "chosen_by": self.chosen_by}

    def describe(self) -> str:
        """One line for the report: the layer, its map size and why it was taken."""
        why = (f"the deepest layer with maps of at least {MIN_CAM_CELLS} x {MIN_CAM_CELLS} (or the largest "
               f"maps when none has), chosen automatically; {CAM_LAYER_KEY}=NAME takes another"
               if self.chosen_by == "automatic" else f"named by {CAM_LAYER_KEY}")
        return (f"CAM layer {self.name}: {self.map_size[0]} x {self.map_size[1]} maps at {self.input_size} px input "
                f"({why}).")


def candidate_layers(backbone: nn.Module) -> list[str]:
    """Names in ``backbone.net`` of the layers :func:`cam_layer` chooses among, shallowest first.

    Raises:
        DermkitError: an architecture without known CAM layers.
    """
    net = backbone.net
    if backbone.name.startswith("resnet"):
        return ["layer1", "layer2", "layer3", "layer4"]
    if backbone.name == "tiny_cnn":
        return [name for name, module in net.named_children() if isinstance(module, nn.ReLU)]
    if backbone.name.startswith("vit"):
        # Every encoder block sees the same token grid: the last one's first LayerNorm.
        return [f"encoder.layers.{list(net.encoder.layers.named_children())[-1][0]}.ln_1"]
    raise DermkitError(f"No CAM layer is known for backbone {backbone.name!r}; --explain supports resnet*, "
                       "tiny_cnn and vit_s16.")


def probe_map_sizes(model: nn.Module, layers: dict[str, nn.Module], image_size: int,
                    tokens: bool) -> dict[str, tuple[int, int]]:
    """(h, w) of each layer's output for one blank (1, 3, S, S) input, read by forward hooks.

    Args:
        model: the classifier; its training mode is restored afterwards.
        layers: ``{name: module}`` to measure.
        image_size: S.
        tokens: a ViT: (B, 1 + h*w, D) outputs are token grids.

    Raises:
        DermkitError: a layer whose output is not a spatial map.
    """
    shapes: dict[str, tuple[int, ...]] = {}

    def hook(name: str) -> Callable[..., None]:
        def record(_module: nn.Module, _inputs: Any, out: Any) -> None:  # None: the output stays unchanged
            # The first call's (a module used twice in a block, e.g. a ResNet block's ReLU, keeps its first).
            shapes.setdefault(name, tuple(getattr(out, "shape", ())))

        return record

    handles = [module.register_forward_hook(hook(name)) for name, module in layers.items()]
    parameter = next(model.parameters())
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size, device=parameter.device, dtype=parameter.dtype))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    sizes = {}
    for name in layers:
        shape = shapes.get(name, ())  # () : not run by a forward pass, or not a tensor
        if len(shape) == 4:  # (B, C, h, w)
            sizes[name] = (int(shape[2]), int(shape[3]))
        elif len(shape) == 3 and tokens:  # (B, 1 + h*w, D)
            side = int(round((shape[1] - 1) ** 0.5))
            sizes[name] = (side, side)
        else:
            shown = f"shape {shape}" if shape else "no tensor"
            raise DermkitError(f"{CAM_LAYER_KEY}={name}: its output ({shown}) is not a spatial map; name a "
                               "convolutional stage (e.g. layer3) or leave it empty to choose automatically.")
    return sizes


def cam_layer(model: nn.Module, image_size: int, name: str = "") -> CamLayer:
    """The CAM layer for inputs of ``image_size``: ``name``, or the rule of the module docstring.

    Args:
        model: a :class:`finetune.module.ClassifierModule` (``model.backbone`` is a registry backbone).
        image_size: the input side S the maps are drawn at.
        name: ``report.cam_layer``: a name among ``model.backbone.net.named_modules()``; empty:
            the deepest candidate (:func:`candidate_layers`) with maps of at least
            :data:`MIN_CAM_CELLS` cells a side, else the one with the largest maps.

    Raises:
        DermkitError: ``name`` is not a layer of the backbone, or has no spatial output.
    """
    backbone = model.backbone
    modules = dict(backbone.net.named_modules())
    candidates = candidate_layers(backbone)
    if name and name not in modules:
        raise DermkitError(f"{CAM_LAYER_KEY}={name!r} is not a layer of the {backbone.name} backbone."
                           f"{did_you_mean(name, [n for n in modules if n])} Candidates: {', '.join(candidates)} "
                           "(or leave it empty to choose automatically).")
    tokens = backbone.name.startswith("vit")
    names = [name] if name else candidates
    sizes = probe_map_sizes(model, {n: modules[n] for n in names}, image_size, tokens)
    if name:
        chosen = name
    else:
        fine = [n for n in names if min(sizes[n]) >= MIN_CAM_CELLS]
        # None reaches it: the largest maps, the deepest among equals (max keeps the first of reversed order).
        chosen = fine[-1] if fine else max(reversed(names), key=lambda n: sizes[n][0] * sizes[n][1])
    return CamLayer(chosen, modules[chosen], sizes[chosen], image_size, CAM_LAYER_KEY if name else "automatic",
                    tokens_to_maps if tokens else None)


GRAD_CAM_MODULE = "pytorch_grad_cam"


def require_grad_cam(explain: int, flag: str) -> None:
    """Fail before a long run, not after it, when ``explain`` asks for CAM grids without their package.

    Args:
        explain: images per class and group to draw (0: none, nothing is needed).
        flag: how the user sets it (``report.explain``, ``--explain``), for the message.

    Raises:
        DermkitError: ``explain`` > 0 and ``pytorch_grad_cam`` (package ``grad-cam``) is not importable.
    """
    if explain > 0 and importlib.util.find_spec(GRAD_CAM_MODULE) is None:
        raise DermkitError(f"{flag}={explain} draws Grad-CAM maps with the grad-cam package, which is not installed "
                           f"here: `pip install grad-cam` (a dependency of dermkit), or pass {flag}=0 to skip them.")


def class_activation_maps(model: nn.Module, images: torch.Tensor, classes: Sequence[int],
                          method: str = "Grad-CAM", layer: CamLayer | None = None) -> np.ndarray:
    """CAM of one class per image, at the input's size.

    Args:
        model: the classifier (logits (B, C) of normalised images (B, 3, S, S)); run on the CPU.
        images: (B, 3, S, S) normalised images.
        classes: (B,) the class whose evidence to map, per image.
        method: one of :data:`CAM_METHODS`.
        layer: the layer to weight; None: :func:`cam_layer` at the images' size.

    Returns:
        (B, S, S) float32 maps scaled to [0, 1] per image (all zeros where no location speaks for
        the class).
    """
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus  # at use: the grad-cam package only draws reports
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam_class = {"Grad-CAM": GradCAM, "Grad-CAM++": GradCAMPlusPlus}[method]
    layer = layer or cam_layer(model, int(images.shape[-1]))
    was_training = model.training
    with cam_class(model=model, target_layers=[layer.module], reshape_transform=layer.reshape) as cam:
        maps = cam(input_tensor=images.float(), targets=[ClassifierOutputTarget(int(c)) for c in classes])
    model.train(was_training)
    return np.asarray(maps, dtype=np.float32)


def overlay(image: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """A CAM drawn over its image: (S, S, 3) uint8 image and (S, S) map in [0, 1] -> (S, S, 3) uint8."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    return show_cam_on_image(image.astype(np.float32) / 255.0, cam, use_rgb=True)


def pick_examples(probs: np.ndarray, targets: np.ndarray, class_index: int, n: int) -> dict[str, list[int]]:
    """Positions of up to ``n`` true positives, false negatives and false positives of a class.

    Args:
        probs: (N, C) probabilities.
        targets: (N,) true class index; -1 for an image of a class the model does not know (it can
            only be a false positive).
        class_index: the class c.
        n: images per group.

    Returns:
        ``{group: [position, ...]}`` for each of :data:`GROUPS`, most confident first.
    """
    preds = probs.argmax(axis=1)
    is_true, is_pred = targets == class_index, preds == class_index
    wanted = {
        "true positives": (is_true & is_pred, probs[:, class_index]),
        "false negatives": (is_true & ~is_pred, probs.max(axis=1)),  # the wrong prediction's confidence
        "false positives": (~is_true & is_pred, probs[:, class_index]),
    }
    picked = {}
    for group, (mask, confidence) in wanted.items():
        positions = np.flatnonzero(mask)
        order = np.argsort(-confidence[positions], kind="stable")
        picked[group] = positions[order][:n].tolist()
    return picked


class RowImages:
    """Images of selected cache rows, read on demand from the memory-mapped cache (no copy of it).

    ``view[i]`` is (S, S, 3) uint8 of ``rows[i]``; ``view[[i, j]]`` is (2, S, S, 3).
    """

    def __init__(self, cache: np.ndarray, rows: np.ndarray) -> None:
        self.cache = cache
        self.rows = np.asarray(rows, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int | Sequence[int]) -> np.ndarray:
        return np.asarray(self.cache[self.rows[i]], dtype=np.uint8)


def normalise(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(B, S, S, 3) uint8 -> (B, 3, S, S) float, normalised as :func:`finetune.transforms.eval_transform` does."""
    pixels = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    return (pixels - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def _draw_row(axes: Any, image: np.ndarray, group: str, image_id: str, probs: np.ndarray, pred: int, truth: int,
              classes: Sequence[str], maps: dict[str, np.ndarray], true_map: np.ndarray) -> None:
    """One grid row: the image, a CAM per method for the predicted class and, for a mistake, Grad-CAM for the
    true class. ``probs`` (C,) and the maps (S, S) are this image's."""
    truth_name = classes[truth] if truth >= 0 else "unknown class"
    axes[0].imshow(image)
    axes[0].set_title(f"{group[:-1]}\n{image_id}: true {truth_name}", fontsize=6)
    for col, method in enumerate(CAM_METHODS, start=1):
        axes[col].imshow(overlay(image, maps[method]))
        axes[col].set_title(f"{method}: {classes[pred]}\np={probs[pred]:.2f}", fontsize=6)
    if truth >= 0 and truth != pred:
        axes[3].imshow(overlay(image, true_map))
        axes[3].set_title(f"Grad-CAM: {truth_name}\np={probs[truth]:.2f}", fontsize=6)


def write_class_grid(path: Path, model: nn.Module, images: np.ndarray | RowImages, probs: np.ndarray, targets: np.ndarray,
                     classes: Sequence[str], class_index: int, n: int, mean: Sequence[float], std: Sequence[float],
                     image_ids: Sequence[str], layer: CamLayer | None = None) -> dict[str, int]:
    """Draw one class's grid of CAM overlays (see the module docstring) into ``path``.

    Args:
        path: the PNG to write.
        model: the classifier.
        images: (N, S, S, 3) uint8 images (an array or :class:`RowImages`), row i = row i of ``probs``.
        probs: (N, C) probabilities.
        targets: (N,) true class indices (-1: a class the model does not know).
        classes: the model's class names.
        class_index: the class of this grid.
        n: images per group.
        mean: normalisation mean of the model's inputs.
        std: normalisation standard deviation.
        image_ids: (N,) image id of each row, written beside it.
        layer: the CAM layer; None: :func:`cam_layer` at the images' size.

    Returns:
        ``{group: images drawn}``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    picked = pick_examples(probs, targets, class_index, n)
    order = [(group, i) for group in GROUPS for i in picked[group]]
    rows = max(len(order), 1)
    fig, axes = plt.subplots(rows, 4, figsize=(7.2, 1.9 * rows + 0.4), squeeze=False)  # (rows, 4) axes
    for ax in axes.flat:
        ax.axis("off")
    if order:
        positions = [i for _, i in order]
        batch = normalise(images[positions], mean, std)  # (B, 3, S, S)
        predicted = probs[positions].argmax(axis=1)  # (B,)
        true = targets[positions]
        layer = layer or cam_layer(model, int(batch.shape[-1]))
        maps = {method: class_activation_maps(model, batch, predicted, method, layer) for method in CAM_METHODS}
        true_map = class_activation_maps(model, batch, np.where(true >= 0, true, predicted), "Grad-CAM", layer)
        for row, (group, i) in enumerate(order):
            maps_of_row = {method: maps[method][row] for method in CAM_METHODS}
            _draw_row(axes[row], images[i], group, image_ids[i], probs[i], int(predicted[row]), int(true[row]),
                      classes, maps_of_row, true_map[row])
    else:
        axes[0, 0].text(0, 0.5, f"No images of or predicted as {classes[class_index]}.", fontsize=8)
    fig.suptitle(f"{classes[class_index]}: " + ", ".join(f"{len(picked[g])} {g}" for g in GROUPS), fontsize=8)
    height = 1.9 * rows + 0.4
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / height))  # leave the suptitle its own band
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return {group: len(picked[group]) for group in GROUPS}


def write_explanations(folder: Path, model: nn.Module, images: np.ndarray | RowImages, probs: np.ndarray, targets: np.ndarray,
                       classes: Sequence[str], n: int, mean: Sequence[float], std: Sequence[float],
                       image_ids: Sequence[str], layer: CamLayer | None = None) -> dict[str, dict[str, object]]:
    """One grid per class, ``folder/cam_<class>.png``; returns ``{class: {"file", groups...}}``.

    ``model`` is moved to the CPU in float32 (CAM needs gradients, which a bf16 GPU test run lacks).
    ``layer``: the CAM layer (:func:`cam_layer` of that model); None: chosen at the images' size.
    """
    if n < 1:
        raise DermkitError(f"--explain {n}: pass the number of images per class and group to explain (1 or more).")
    model = model.cpu().float()  # in place: a ``layer`` found on the model before still belongs to it
    out: dict[str, dict[str, object]] = {}
    for c, name in enumerate(classes):
        path = folder / f"cam_{name}.png"
        counts = write_class_grid(path, model, images, probs, targets, classes, c, n, mean, std, image_ids, layer)
        out[name] = {"file": path.name, **counts}
    return out
