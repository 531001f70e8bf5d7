"""A simple cost model of pipeline steps: estimated time, disk and peak memory, before anything runs.

Used by ``python -m bench.label_efficiency --dry-run``. Every estimate is an order of magnitude, not
a measurement; the assumptions, each a constant below:

* **Work** is counted exactly, per image, from the network itself: forward FLOPs, parameters and
  the size of every layer's output (the activations autograd keeps) come from one forward pass of
  the real backbone or UNet on the ``meta`` device (:class:`torch.utils.flop_counter.FlopCounterMode`;
  nothing is computed or allocated). Training costs 3x the forward FLOPs (forward + backward).
* **Speed** is an effective FLOP rate per device and precision (:data:`EFFECTIVE_FLOPS`). CPU:
  47 GFLOP/s in float32 and 71 GFLOP/s in bf16-mixed, from the compute-only SimCLR ResNet-18 rows of
  ``docs/benchmarks.md`` ("Pretraining throughput", second round: 52.4 and 79.9 images/s = 105 and 160 views/s of
  0.149 GFLOP forward at 64 px, x3, on the 2 idle cores of the 2026-12-01 machine). GPU: assumed,
  not measured (no GPU was lent when this was written): 60 TFLOP/s in bf16 and 20 TFLOP/s in
  fp32/TF32, i.e. ResNet-50 at 224 px training at ~4,900 images/s in bf16 — the order of published
  single-H100 convnet training throughput. ``python -m bench.gpu_check`` measures the real
  figures; replace these constants with them.
* **Data** (worker path, lightly's per-image PIL transforms): 2.2 ms per 64-px view per worker
  core (``docs/benchmarks.md``: 4.4 ms for the two views of one image), scaled with the pixel
  count; ``num_workers=0`` is one core. A training step takes max(compute, data); with
  ``data.augment_on=device`` or ``resident`` the compute alone (the workers only copy uint8 rows, or
  the rows are gathered on the GPU; the augmentation is a few elementwise passes beside the network). Fine-tuning's
  lighter transforms are charged the same (an upper bound); the generator flips on the device (no
  data cost).
* **Not counted**: start-up, image caching, the SSL kNN monitor, checkpoint writing, compilation.
* **Disk**: checkpoints hold weights + optimiser state in float32 (SGD 1 and AdamW 2 extra copies,
  the generator also its EMA copy), twice (``last.ckpt`` and ``last.prev.ckpt``; fine-tuning also
  its best checkpoint); generated PNGs are charged their raw size (an upper bound).
* **Memory** (peak on the device): weights, gradients and optimiser state in float32, plus the
  activations of one step (every layer's output, 2 bytes per element in bf16-mixed, 4 otherwise,
  for every view of the step's batch). Generation keeps no activations: 8 times the largest
  layer output per image (float32, both halves of a guided batch).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from dermkit.config import augments_on_device
from dermkit.validation_epochs import validated_epochs

# Effective training FLOP/s by (device kind, bf16?) -- see the module docstring for the sources.
EFFECTIVE_FLOPS = {("cpu", False): 47e9, ("cpu", True): 71e9, ("gpu", True): 60e12, ("gpu", False): 20e12}
DATA_SECONDS_PER_64PX_VIEW = 2.2e-3
TRAIN_FLOPS_FACTOR = 3.0
OPTIMIZER_COPIES = {"sgd": 1, "lars": 1, "adamw": 2}


@dataclass(frozen=True)
class NetProfile:
    """Per-image figures of one network at one input size."""

    forward_flops: float
    params: int
    activation_elements: int  # sum of every leaf module's output size, for one image
    largest_activation: int  # the largest single output, for one image


def _profile(model: nn.Module, *inputs: torch.Tensor, **kwargs: Any) -> NetProfile:
    elements = [0, 0]

    def count(_module: nn.Module, _args: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor):
            elements[0] += output.numel()
            elements[1] = max(elements[1], output.numel())

    handles = [m.register_forward_hook(count) for m in model.modules() if not list(m.children())]
    with FlopCounterMode(display=False) as flops:
        model(*inputs, **kwargs)
    for handle in handles:
        handle.remove()
    return NetProfile(float(flops.get_total_flops()), sum(p.numel() for p in model.parameters()), *elements)


@functools.lru_cache(maxsize=None)
def backbone_profile(name: str, small_stem: bool, size: int) -> NetProfile:
    """Figures of a dermkit backbone at ``size`` px (built on the meta device: no memory, no compute)."""
    from dermkit.backbones import build_backbone

    with torch.device("meta"):
        model = build_backbone(name, small_stem, size)
        return _profile(model, torch.empty(1, 3, size, size))


@functools.lru_cache(maxsize=None)
def unet_profile(preset: str, classes: int, size: int) -> NetProfile:
    """Figures of the generator's UNet (one network pass, one image)."""
    from diffusers import UNet2DModel

    # The stage's own preset table, from the shared library: bench does not import the synth stage.
    from dermkit.unet_presets import unet_config

    with torch.device("meta"):
        model = UNet2DModel(**unet_config(preset, classes, size))
        label = torch.zeros(1, dtype=torch.long)
        return _profile(model, torch.empty(1, 3, size, size), label, class_labels=label)


@dataclass
class Estimate:
    """What one step is expected to cost."""

    seconds: float
    disk_bytes: float
    memory_bytes: float
    note: str = ""


def _device(trainer: dict[str, Any]) -> tuple[str, bool]:
    accelerator = str(trainer.get("accelerator", "auto"))
    gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    precision = str(trainer.get("precision", "auto"))
    bf16 = precision.startswith("bf16") or (precision == "auto" and gpu)
    return ("gpu" if gpu else "cpu"), bf16


def _devices(trainer: dict[str, Any]) -> int:
    devices = str(trainer.get("devices", "auto"))
    return int(devices) if devices.isdigit() else 1


def _optimizer_steps(trainer: dict[str, Any], images: int, batch: int) -> int:
    steps_per_epoch = max(images // max(batch * _devices(trainer), 1), 1)
    limit = float(trainer.get("limit_train_batches", 1.0))
    if limit != 1.0:
        steps_per_epoch = int(limit) if limit > 1 else max(int(steps_per_epoch * limit), 1)
    by_epochs = steps_per_epoch * max(int(trainer.get("max_epochs", 1)), 0)
    max_steps = int(trainer.get("max_steps", -1))
    return min(max_steps, by_epochs) if max_steps > 0 and by_epochs > 0 else (max_steps if max_steps > 0 else by_epochs)


def _step_seconds(flops: float, views: float, size: int, workers: int, device: tuple[str, bool], devices: int,
                  augment_on: str = "workers") -> float:
    compute = flops / (EFFECTIVE_FLOPS[device] * devices)
    if augments_on_device(augment_on):  # uint8 rows copied (device) or gathered on the GPU (resident), augmented there
        return compute
    data = views * DATA_SECONDS_PER_64PX_VIEW * (size / 64) ** 2 / max(workers, 1)
    return max(compute, data)


def _memory(params: int, optimizer_copies: int, activations: float, bf16: bool) -> float:
    return params * 4 * (2 + optimizer_copies) + activations * (2 if bf16 else 4)


def pretrain_cost(cfg: dict[str, Any], train_images: int) -> Estimate:
    """``ssl.pretrain``: SimCLR (2 views), BYOL (2 views, target forward on both) or DINO (2 global +
    local views, teacher forward on the globals)."""
    data, trainer = cfg["data"], cfg["trainer"]
    size, batch = int(data["image_size"]), int(data["batch_size"])
    net = backbone_profile(cfg["model"]["backbone"], bool(cfg["model"]["small_stem"]), size)
    if cfg["method"] == "dino":
        dino = cfg["dino"]
        local = int(dino["local_crop_size"]) or max(8, int(round(size * 3 / 7 / 8)) * 8)
        n_local = int(dino["n_local_views"])
        area = 2 + n_local * (local / size) ** 2  # views in units of one global view
        flops_per_image = net.forward_flops * (TRAIN_FLOPS_FACTOR * area + 2)  # + teacher forward
        views, copies, param_sets = 2 + n_local, 2, 2  # AdamW; student + teacher
    elif cfg["method"] == "byol":
        area = 2.0
        flops_per_image = net.forward_flops * (TRAIN_FLOPS_FACTOR * area + area)  # + momentum target forward
        views, copies, param_sets = 2, 1, 2  # SGD; online + target network
    else:
        area = 2.0
        flops_per_image = net.forward_flops * TRAIN_FLOPS_FACTOR * area
        views, copies, param_sets = 2, 1, 1  # SGD
    name = str(cfg["optim"]["name"])
    copies = OPTIMIZER_COPIES.get(name, copies)
    device, devices = _device(trainer), _devices(trainer)
    steps = _optimizer_steps(trainer, train_images, batch)
    per_step = _step_seconds(flops_per_image * batch * devices, views * batch * devices, size,
                             int(data["num_workers"]) * devices, device, devices, data.get("augment_on", "workers"))
    disk = net.params * 4 * (1 + copies) * param_sets * 2 + net.params * 4
    memory = _memory(net.params * param_sets, copies, net.activation_elements * area * batch, device[1])
    return Estimate(steps * per_step, disk, memory, f"{steps} steps of {batch * devices}")


def finetune_cost(cfg: dict[str, Any], train_images: int, val_images: int, test_images: int,
                  synthetic_images: int = 0) -> Estimate:
    """``finetune.train``: training epochs plus a validation pass per validated epoch and one test pass.

    A frozen backbone (``optim.freeze_backbone``) costs its forward pass only (no backward through it).

    Args:
        cfg: the resolved config.
        train_images: images of the whole training split (``data.fraction`` of them are used).
        val_images: validation images (one pass per validated epoch: ``val.every_n_epochs``, ``val.start``).
        test_images: test images (one pass).
        synthetic_images: generated images added to every epoch (:func:`synthetic_share`).
    """
    data, trainer = cfg["data"], cfg["trainer"]
    size, batch = int(data["image_size"]), int(data["batch_size"])
    net = backbone_profile(cfg["model"]["backbone"], bool(cfg["model"]["small_stem"]), size)
    images = int(round(train_images * float(data["fraction"]))) + synthetic_images
    device, devices = _device(trainer), _devices(trainer)
    steps = _optimizer_steps(trainer, images, batch)
    epochs = max(int(trainer.get("max_epochs", 1)), 1)
    schedule = cfg.get("val") or {}
    validations = len(validated_epochs(epochs, int(schedule.get("every_n_epochs", 1)),
                                       float(schedule.get("start", 0.0))))
    factor = 1.0 if (cfg.get("optim") or {}).get("freeze_backbone") else TRAIN_FLOPS_FACTOR
    per_step = _step_seconds(net.forward_flops * factor * batch * devices, batch * devices, size,
                             int(data["num_workers"]) * devices, device, devices, data.get("augment_on", "workers"))
    evaluation = net.forward_flops * (val_images * validations + test_images) / (EFFECTIVE_FLOPS[device] * devices)
    disk = net.params * 4 * 3 * 3  # best + last + last.prev, AdamW state
    memory = _memory(net.params, 2, net.activation_elements * batch, device[1])
    return Estimate(steps * per_step + evaluation, disk, memory, f"{steps} steps of {batch * devices}")


def real_per_class(train_images: int, fraction: float, classes: list[str],
                   class_counts: dict[str, int]) -> dict[str, float]:
    """Real training images of each class at ``fraction``, estimated from the class's share of
    ``class_counts`` (HAM10000's documented counts)."""
    total = sum(class_counts.values())
    return {c: train_images * fraction * class_counts.get(c, 0) / total for c in classes}


def generated_per_class(real: dict[str, float], n: int | None, ratio: float | None) -> dict[str, float]:
    """Images ``synth.generate`` makes per class of ``real`` (the generator's training images per
    class): ``--n``, or ``--ratio`` times the class's images, at most ``--n`` when both are given."""
    if ratio:
        return {c: min(ratio * k, n) if n else ratio * k for c, k in real.items()}
    return {c: float(n or 0) for c in real}


def synthetic_share(real: dict[str, float], generated: dict[str, float], max_ratio: float) -> int:
    """Generated images a ``finetune.train`` run adds: per class ``min(generated, max_ratio x real
    images)`` (an upper bound for a filtered manifest, which keeps fewer)."""
    return int(sum(min(generated.get(c, 0.0), max_ratio * n) for c, n in real.items()))


def synth_train_cost(cfg: dict[str, Any], train_images: int, classes: int) -> Estimate:
    """``synth.train``: one UNet pass (noise prediction) per image and step, AdamW, EMA copy."""
    data, trainer = cfg["data"], cfg["trainer"]
    size, batch = int(data["image_size"]), int(data["batch_size"])
    net = unet_profile(cfg["model"]["preset"], classes, size)
    images = int(round(train_images * float(data["fraction"])))
    device, devices = _device(trainer), _devices(trainer)
    steps = _optimizer_steps(trainer, images, batch)
    seconds = steps * net.forward_flops * TRAIN_FLOPS_FACTOR * batch * devices / (EFFECTIVE_FLOPS[device] * devices)
    disk = net.params * 4 * (1 + 1 + 2) * 2 + net.params * 4  # weights, EMA, AdamW; twice; saved UNet
    memory = _memory(net.params, 3, net.activation_elements * batch, device[1])
    return Estimate(seconds, disk, memory, f"{steps} steps of {batch * devices}")


def synth_generate_cost(cfg: dict[str, Any], images: int, size: int, preset: str, n_classes: int) -> Estimate:
    """``synth.generate`` of ``images`` images: ``steps`` UNet passes each, two with classifier-free guidance."""
    net = unet_profile(preset, n_classes, size)
    passes = int(cfg["steps"]) * (1 if float(cfg["guidance"]) == 1.0 else 2)
    device = ("cpu", False) if str(cfg["device"]) == "cpu" else ("gpu", True)
    seconds = images * passes * net.forward_flops / EFFECTIVE_FLOPS[device]
    # Inference keeps no activations: a few of the largest layer's outputs (input, output, skip
    # features) are live at once; 8 of them, for the guided and unguided halves of a batch.
    memory = net.params * 4 + 8 * net.largest_activation * int(cfg["batch_size"]) * 2 * 4
    return Estimate(seconds, images * size * size * 3, memory, f"{images} images x {passes} passes")


def filter_cost(cfg: dict[str, Any], classifier: dict[str, Any], images: int) -> Estimate:
    """``finetune.filter_synthetic``: one forward pass of the classifier per generated image.

    Args:
        cfg: the filter's resolved config (its ``trainer`` section picks the device).
        classifier: the resolved config of the ``finetune.train`` cell whose checkpoint scores.
        images: generated images scored.
    """
    model, size = classifier["model"], int(classifier["data"]["image_size"])
    net = backbone_profile(model["backbone"], bool(model["small_stem"]), size)
    device = _device(cfg["trainer"])
    seconds = images * net.forward_flops / EFFECTIVE_FLOPS[device]
    batch = int(cfg["batch_size"])
    memory = net.params * 4 + net.largest_activation * batch * 4 * 2
    # Kept images are hard links; the disk holds the image cache at the classifier's size and scores.csv.
    return Estimate(seconds, images * size * size * 3, memory, f"{images} images x 1 forward pass")


def predict_cost(cfg: dict[str, Any], classifier: dict[str, Any], images: int) -> Estimate:
    """``finetune.predict``: one forward pass of the classifier per image, nine with ``tta`` (plain, then the 8 views).

    Args:
        cfg: the step's resolved config (``trainer`` picks the device, ``tta``).
        classifier: the resolved config of the ``finetune.train`` cell whose checkpoint predicts.
        images: images in the folder.
    """
    model, size = classifier["model"], int(classifier["data"]["image_size"])
    net = backbone_profile(model["backbone"], bool(model["small_stem"]), size)
    passes = 1 + (8 if cfg["tta"] else 0)
    seconds = images * passes * net.forward_flops / EFFECTIVE_FLOPS[_device(cfg["trainer"])]
    memory = net.params * 4 + net.largest_activation * int(cfg["data"]["batch_size"]) * 8 * 4 * 2
    return Estimate(seconds, images * size * size * 3, memory, f"{images} images x {passes} forward passes")


def synth_evaluate_cost(architecture: str, small_stem: bool, size: int, synthetic: int, train_images: int,
                        classes: int, grid_images: int) -> Estimate:
    """``synth.evaluate`` (on the CPU, where it embeds): one backbone forward pass per training, synthetic
    and held-out image (as many held-out as synthetic); the pixel-space nearest neighbours are not
    counted (small beside them at 64 px).

    Args:
        architecture: the feature space's backbone (its card's, or the random-init one).
        small_stem: whether it has the small-image stem.
        size: the side it embeds at.
        synthetic: synthetic images judged.
        train_images: real training images they are compared with.
        classes: synthetic classes (one grid PNG each).
        grid_images: images per row of a grid (``grid_images``: rows of real, synthetic and nearest
            training images, each tile shown at 64 px).
    """
    net = backbone_profile(architecture, small_stem, size)
    images = train_images + 2 * synthetic
    seconds = images * net.forward_flops / EFFECTIVE_FLOPS[("cpu", False)]
    # The training and synthetic images at the evaluated size are held in memory with their features.
    memory = net.params * 4 + net.largest_activation * 128 * 4 * 2 + (train_images + synthetic) * size * size * 3
    # At most: each grid as raw RGB (a PNG is smaller) and one near_copies.csv row (~100 bytes) per image.
    disk = classes * 3 * grid_images * 64 * 64 * 3 + synthetic * 100
    return Estimate(seconds, disk, memory, f"{images} images x 1 forward pass")


def human_bytes(value: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def human_seconds(value: float) -> str:
    if value < 60:
        return f"{value:.0f} s"
    if value < 3600:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"
