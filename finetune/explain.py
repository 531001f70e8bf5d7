"""Where the classifier looks: Grad-CAM and Grad-CAM++ overlays, one grid PNG per class.

Grad-CAM (Selvaraju et al. 2017) weights the last convolutional block's feature maps by the mean
gradient of a class's logit and keeps the positive part; Grad-CAM++ (Chattopadhay et al. 2018)
weights each location's gradient, which spreads the map over several instances of the evidence.
Both come from ``pytorch-grad-cam`` (PyPI ``grad-cam``); this module picks the layer, the images and
draws the grids. The maps are upsampled to the input size, so at 64 px with a standard ResNet stem
(a 2 x 2 last block) they are coarse: use the small stem or a larger input for finer maps.

For each class ``c`` the grid shows, most confident first, up to ``n`` true positives (true ``c``,
predicted ``c``, by p(c)), false negatives (true ``c``, predicted another class, by the confidence
of that prediction) and false positives (predicted ``c``, true another class, by p(c)). Columns:
the image, Grad-CAM and Grad-CAM++ of the predicted class, and Grad-CAM of the true class (what
the model would have needed to see).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dermkit.errors import DermkitError

GROUPS = ("true positives", "false negatives", "false positives")
CAM_METHODS = ("Grad-CAM", "Grad-CAM++")


def target_layer(model: nn.Module) -> tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor] | None]:
    """The layer whose activations CAM weights, and the reshape a transformer's tokens need.

    Args:
        model: a :class:`finetune.module.ClassifierModule` (``model.backbone`` is a registry backbone).

    Returns:
        ``(layer, reshape_transform)``: the last residual block of a ResNet, the last ReLU of
        ``tiny_cnn``, or the last encoder block's first LayerNorm of a ViT with a transform from
        (B, 1 + h*w, D) tokens to (B, D, h, w) maps.

    Raises:
        DermkitError: an architecture without a known CAM layer.
    """
    backbone = model.backbone
    net = backbone.net
    if backbone.name.startswith("resnet"):
        return net.layer4[-1], None
    if backbone.name == "tiny_cnn":
        return net[-2], None
    if backbone.name.startswith("vit"):

        def tokens_to_maps(tokens: torch.Tensor) -> torch.Tensor:
            patches = tokens[:, 1:, :]  # (B, h*w, D): drop the class token
            side = int(round(patches.shape[1] ** 0.5))
            return patches.reshape(patches.shape[0], side, side, patches.shape[2]).permute(0, 3, 1, 2)

        return net.encoder.layers[-1].ln_1, tokens_to_maps
    raise DermkitError(f"No CAM layer is known for backbone {backbone.name!r}; --explain supports resnet*, "
                       "tiny_cnn and vit_s16.")


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
                          method: str = "Grad-CAM") -> np.ndarray:
    """CAM of one class per image, at the input's size.

    Args:
        model: the classifier (logits (B, C) of normalised images (B, 3, S, S)); run on the CPU.
        images: (B, 3, S, S) normalised images.
        classes: (B,) the class whose evidence to map, per image.
        method: one of :data:`CAM_METHODS`.

    Returns:
        (B, S, S) float32 maps scaled to [0, 1] per image (all zeros where no location speaks for
        the class).
    """
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus  # at use: the grad-cam package only draws reports
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam_class = {"Grad-CAM": GradCAM, "Grad-CAM++": GradCAMPlusPlus}[method]
    layer, reshape = target_layer(model)
    was_training = model.training
    with cam_class(model=model, target_layers=[layer], reshape_transform=reshape) as cam:
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


def write_class_grid(path: Path, model: nn.Module, images: np.ndarray | RowImages, probs: np.ndarray, targets: np.ndarray,
                     classes: Sequence[str], class_index: int, n: int, mean: Sequence[float], std: Sequence[float],
                     image_ids: Sequence[str]) -> dict[str, int]:
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
        maps = {method: class_activation_maps(model, batch, predicted, method) for method in CAM_METHODS}
        true_map = class_activation_maps(model, batch, np.where(true >= 0, true, predicted), "Grad-CAM")
        for row, (group, i) in enumerate(order):
            pred, truth = int(predicted[row]), int(true[row])
            truth_name = classes[truth] if truth >= 0 else "unknown class"
            axes[row, 0].imshow(images[i])
            axes[row, 0].set_title(f"{group[:-1]}\n{image_ids[i]}: true {truth_name}", fontsize=6)
            for col, method in enumerate(CAM_METHODS, start=1):
                axes[row, col].imshow(overlay(images[i], maps[method][row]))
                axes[row, col].set_title(f"{method}: {classes[pred]}\np={probs[i, pred]:.2f}", fontsize=6)
            if truth >= 0 and truth != pred:
                axes[row, 3].imshow(overlay(images[i], true_map[row]))
                axes[row, 3].set_title(f"Grad-CAM: {truth_name}\np={probs[i, truth]:.2f}", fontsize=6)
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
                       image_ids: Sequence[str]) -> dict[str, dict[str, object]]:
    """One grid per class, ``folder/cam_<class>.png``; returns ``{class: {"file", groups...}}``.

    ``model`` is moved to the CPU in float32 (CAM needs gradients, which a bf16 GPU test run lacks).
    """
    if n < 1:
        raise DermkitError(f"--explain {n}: pass the number of images per class and group to explain (1 or more).")
    model = model.cpu().float()
    out: dict[str, dict[str, object]] = {}
    for c, name in enumerate(classes):
        path = folder / f"cam_{name}.png"
        counts = write_class_grid(path, model, images, probs, targets, classes, c, n, mean, std, image_ids)
        out[name] = {"file": path.name, **counts}
    return out
