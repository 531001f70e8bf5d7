"""Judge synthetic images against the real training images: ``python -m synth.evaluate``.

Per synthetic class, in the feature space of a dermkit backbone (a file from ``ssl.pretrain``, or a
named random-init network, which the report says):

* Fréchet distance and KID to the real training images of the same class, and to every other
  class (does the conditioning work? the own class should be the closest);
* the same ranking for held-out real images: as many validation images of the class as there are
  synthetic ones, compared with the training classes in the same way. It calibrates the test: a
  perfect generator does as well as these, and a feature space in which even real images of a
  class do not rank their own class first cannot show that a generator's conditioning works;
* k-NN precision and recall against the real images of the class;
* the mean colour (RGB in [0, 1]) of the synthetic and the real images of the class, and the
  spread of the per-image mean colour: a generator that has not learnt the low frequencies shows it here;
* a memorisation audit: the nearest training image of each synthetic image in feature space and
  in pixel space; near-copies (pixel RMSE below ``copy_rmse``) are listed with the class of that
  training image, and their rate reported, in all and of the synthetic image's own class (in the
  ``cpu-synth`` runs a near-copy of another class's image was a faint lesion on similar skin; one of
  its own class is the memorisation the audit looks for first);
* a grid PNG per class: real images, synthetic images, and the nearest training image of each.

Example::

    python -m synth.evaluate --synthetic runs/synth/ham32_small/samples --data ham10000 \\
        --weights runs/ssl/simclr/backbone.safetensors
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.utils import make_grid, save_image

from dermkit.backbones import BackboneCard, ImageArrayBatches, build_backbone, embed, load_backbone
from dermkit.config import DataConfig, Flag, parse_config
from dermkit.console import console, entry_point, print_table
from dermkit.data.cache import cache_images
from dermkit.data.prepare import PreparedData, prepare_data
from dermkit.errors import DermkitError
from dermkit.flags import backbone_flag, data_flag, out_flag, root_flag, small_stem_flag, weights_flag
from dermkit.image_size import model_image_size
from dermkit.manifest import MANIFEST_CSV, MANIFEST_JSON, check_manifest_split, read_manifest, require_header
from dermkit.out_folder import check_out_folder, replacing
from dermkit.runinfo import write_run_info
from synth.metrics import frechet_distance, kernel_distance, nearest, precision_recall


@dataclass
class SyntheticEvaluateConfig:
    """``python -m synth.evaluate``: synthetic images against the real ones.

    Keys:
        synthetic: an output folder of ``synth.generate`` (manifest.csv + PNGs).
        data: :class:`dermkit.config.DataConfig` of the real data the generator was trained on
            (its split hash must match the manifest's). ``data.image_size`` is the synthetic
            images' size (0, the default, takes it; another value is replaced, with a note).
        weights: a backbone file (``backbone.safetensors`` with its JSON card) giving the feature
            space; empty: a random-init ``backbone`` (stated as such in the report).
        backbone: architecture (registry name) of the random-init backbone used when ``weights``
            is empty.
        small_stem: give the random-init backbone the small-image stem (more detail at <= 64 px,
            but ~16x the compute of the standard stem for ResNets).
        out_dir: report folder (default ``<synthetic>/eval``).
        knn_k: k of the k-NN precision / recall.
        copy_rmse: pixel RMSE (in [0, 1] units) below which a synthetic image counts as a near-copy
            of its nearest training image.
        kid_subsets: random subsets KID is averaged over.
        grid_images: images per row of the per-class grids.
        seed: seed of the random backbone, KID subsets and the real images shown in the grids.
        held_out_reference: also rank held-out real images (the ``data`` validation split, never
            seen by the generator) against the training classes; skipped where there is none.
    """

    synthetic: str = ""
    data: DataConfig = field(default_factory=lambda: DataConfig(image_size=0))
    weights: str = ""
    backbone: str = "resnet18"
    small_stem: bool = True
    out_dir: str = ""
    knn_k: int = 3
    copy_rmse: float = 0.04
    kid_subsets: int = 50
    grid_images: int = 8
    seed: int = 0
    held_out_reference: bool = True


KIND = "synth.evaluate"  # run.json's kind (dermkit.out_folder)
FLAGS = [
    Flag("--synthetic", "synthetic", "folder written by python -m synth.generate"),
    data_flag(" (the data the generator was trained on)"),
    root_flag(),
    weights_flag("backbone.safetensors giving the feature space (default: a random-init --backbone)"),
    backbone_flag("backbone", " (of the random-init feature space, without --weights)", weights_option="--weights"),
    small_stem_flag("small_stem", note=" of the random-init backbone"),
    out_flag("report folder (its previous report is replaced)", command=KIND, replaces=True),
]


class FeatureSpace:
    """A frozen backbone applied to uint8 images, with the name the report gives it.

    Args:
        backbone_path: backbone file with its card, or empty for a random-init network.
        random_name: registry name used when ``backbone_path`` is empty.
        small_stem: the small-image stem for the random-init network.
        image_size: side of the images to embed (used for a random-init network's input size).
        seed: initialisation seed of a random-init network.
    """

    def __init__(self, backbone_path: str, random_name: str, small_stem: bool, image_size: int, seed: int) -> None:
        if backbone_path:
            self.net, self.card = load_backbone(backbone_path)
            self.name = (f"{self.card.architecture} from {backbone_path} ({self.card.method}, "
                         f"{self.card.epochs} epochs, {self.card.input_size} px)")
        else:
            torch.manual_seed(seed)
            self.net = build_backbone(random_name, small_stem=small_stem, image_size=image_size)
            self.card = BackboneCard(architecture=random_name, input_size=image_size, small_stem=small_stem)
            self.name = (f"random-init {random_name} (seed {seed}, {'small' if small_stem else 'standard'} stem; "
                         "not trained)")
        self.net.eval()

    def embed(self, images: np.ndarray, label: str, batch_size: int = 128) -> torch.Tensor:
        """(N, S, S, 3) uint8 -> (N, D) float32 features, resized to the card's input size and normalised."""
        batches = ImageArrayBatches(images, self.card.mean, self.card.std, self.card.input_size, batch_size)
        return embed(self.net, batches, description=f"Features: {label}")[0]


def load_synthetic(folder: Path, size: int, cache_dir: str) -> tuple[list[dict[str, str]], np.ndarray]:
    """The manifest rows of a synthetic folder and their pixels (N, size, size, 3) uint8.

    Raises:
        DermkitError: not a synth.generate folder, or an empty one.
    """
    rows = read_manifest(folder)
    if not rows:
        raise DermkitError(f"{folder} has no manifest.csv rows: pass --synthetic with a folder written by "
                           "python -m synth.generate.")
    result = cache_images([folder / r.file for r in rows], size, cache_dir, description="Reading synthetic images")
    return [r.as_csv() for r in rows], result.open()


def pixel_vectors(images: np.ndarray) -> torch.Tensor:
    """(N, S, S, 3) uint8 -> (N, S*S*3) float in [0, 1]."""
    return torch.from_numpy(np.array(images)).reshape(len(images), -1).float() / 255.0


def mean_colour(images: np.ndarray) -> dict[str, list[float]]:
    """Mean RGB of (N, S, S, 3) uint8 images, and the spread over images of each image's mean colour."""
    per_image = images.reshape(len(images), -1, 3).mean(axis=1) / 255.0  # (N, 3) in [0, 1]
    return {"mean_rgb": per_image.mean(axis=0).round(4).tolist(),
            "std_of_image_means": per_image.std(axis=0).round(4).tolist()}


def _check_inputs(cfg: SyntheticEvaluateConfig) -> tuple[Path, dict[str, Any], PreparedData]:
    """The synthetic folder, its manifest header and the real data, checked against each other.

    Sets ``cfg.data.image_size`` to the synthetic images' size (:func:`dermkit.image_size.model_image_size`).

    Raises:
        DermkitError: no synthetic folder, a folder without a complete manifest header, or a data
            config whose split is not the one the generator was trained on.
    """
    if not cfg.synthetic:
        raise DermkitError("Pass --synthetic with a folder written by python -m synth.generate.")
    folder = Path(cfg.synthetic)
    header = require_header(folder, ("model_hash", "split_hash", "image_size"), "--synthetic")
    data_cfg = cfg.data
    data_cfg.image_size = model_image_size(data_cfg.image_size, int(header["image_size"]),
                                           f"the generator of {folder} ({MANIFEST_JSON})")
    prepared: PreparedData = prepare_data(data_cfg)
    # Rows and header both record the split; checked before any image is read or written.
    check_manifest_split(folder / MANIFEST_CSV, (r.split_hash for r in read_manifest(folder)), prepared.split_hash)
    return folder, header, prepared


def _synthetic_classes(rows: list[dict[str, str]], prepared: PreparedData, folder: Path, data_name: str) -> np.ndarray:
    """(M,) class name of each synthetic image.

    Raises:
        DermkitError: a class the real data does not have.
    """
    synth_classes = np.array([r["class"] for r in rows])
    unknown = sorted(set(synth_classes) - set(prepared.classes))
    if unknown:
        raise DermkitError(f"{folder} holds classes {unknown} that data {data_name!r} does not have "
                           f"({', '.join(prepared.classes)}); pass the dataset the generator was trained on.")
    return synth_classes


@dataclass
class _Embedded:
    """The real training images and the synthetic ones in feature and pixel space, with neighbours.

    Attributes:
        train_images: (N, S, S, 3) uint8 training images.
        train_feats: (N, D) their features.
        synth_feats: (M, D) features of the synthetic images.
        real_by_class: class -> indices into the training arrays.
        image_ids: (N,) training image ids.
        image_classes: (N,) their class names.
        feat_dist, feat_nn: (M,) feature distance to, and index of, each synthetic image's nearest
            training image in feature space.
        pix_rmse, pix_nn: (M,) pixel RMSE (in [0, 1] units) to, and index of, the nearest training
            image in pixel space.
    """

    train_images: np.ndarray
    train_feats: torch.Tensor
    synth_feats: torch.Tensor
    real_by_class: dict[str, torch.Tensor]
    image_ids: np.ndarray
    image_classes: np.ndarray
    feat_dist: torch.Tensor
    feat_nn: torch.Tensor
    pix_rmse: torch.Tensor
    pix_nn: torch.Tensor


def _embed(space: FeatureSpace, prepared: PreparedData, synth_images: np.ndarray) -> _Embedded:
    """Embed the training split and the synthetic images; find each synthetic image's neighbours."""
    train_idx = prepared.indices("train")
    train_images = prepared.images[train_idx]  # (N, S, S, 3)
    train_labels = prepared.labels[train_idx]  # (N,)
    train_feats = space.embed(train_images, "real training images")  # (N, D)
    synth_feats = space.embed(synth_images, "synthetic images")  # (M, D)
    train_pixels, synth_pixels = pixel_vectors(train_images), pixel_vectors(synth_images)
    feat_dist, feat_nn = nearest(synth_feats, train_feats)  # (M,), (M,)
    pix_dist, pix_nn = nearest(synth_pixels, train_pixels)
    return _Embedded(
        train_images=train_images, train_feats=train_feats, synth_feats=synth_feats,
        real_by_class={c: torch.from_numpy(np.flatnonzero(train_labels == i)) for i, c in enumerate(prepared.classes)},
        image_ids=np.array(prepared.image_ids)[train_idx], image_classes=np.array(prepared.classes)[train_labels],
        feat_dist=feat_dist, feat_nn=feat_nn,
        pix_rmse=pix_dist / np.sqrt(train_pixels.shape[1]), pix_nn=pix_nn)  # RMSE in [0, 1] units


def _class_report(cfg: SyntheticEvaluateConfig, klass: str, s_idx: np.ndarray, emb: _Embedded,
                  synth_images: np.ndarray) -> dict[str, Any]:
    """Distances, ranks, precision / recall, copies and colour of the synthetic images ``s_idx`` of ``klass``."""
    fake = emb.synth_feats[s_idx]
    to_class = distances_to_classes(fake, emb.train_feats, emb.real_by_class, cfg.kid_subsets, cfg.seed)
    own = emb.train_feats[emb.real_by_class[klass]]
    kid_mean, kid_std = kernel_distance(own, fake, cfg.kid_subsets, seed=cfg.seed)
    precision, recall = precision_recall(own, fake, cfg.knn_k)
    flagged = _near_copy_indices(cfg, s_idx, emb)
    by_kid = sorted(to_class, key=lambda c: to_class[c]["kid"])
    by_fd = sorted(to_class, key=lambda c: to_class[c]["fd"])
    return {
        "synthetic": int(len(s_idx)), "real_train": int(len(own)),
        "fd": to_class[klass]["fd"], "kid": kid_mean, "kid_std": kid_std,
        "precision": precision, "recall": recall,
        "closest_real_class_kid": by_kid[0], "own_rank_kid": by_kid.index(klass) + 1,
        "closest_real_class_fd": by_fd[0], "own_rank_fd": by_fd.index(klass) + 1,
        "to_class": to_class,
        "nn_feature_distance_median": float(emb.feat_dist[s_idx].median()),
        "nn_pixel_rmse_median": float(emb.pix_rmse[s_idx].median()),
        "nn_pixel_rmse_min": float(emb.pix_rmse[s_idx].min()),
        "near_copies": int(len(flagged)), "copy_rate": float(len(flagged) / len(s_idx)),
        "colour": {"synthetic": mean_colour(synth_images[s_idx]),
                   "real_train": mean_colour(emb.train_images[emb.real_by_class[klass].numpy()])},
    }


def _near_copy_indices(cfg: SyntheticEvaluateConfig, s_idx: np.ndarray, emb: _Embedded) -> np.ndarray:
    """The entries of ``s_idx`` whose nearest training image is closer than ``copy_rmse`` in pixel RMSE."""
    return s_idx[(emb.pix_rmse[s_idx] < cfg.copy_rmse).numpy()]


def _held_out_report(cfg: SyntheticEvaluateConfig, klass: str, held_out: torch.Tensor, n: int, emb: _Embedded,
                     rng: np.random.Generator) -> dict[str, Any]:
    """Rank ``n`` held-out real images of ``klass`` (a random draw of the (n_c, D) ``held_out``) like synthetic ones."""
    sample = held_out[rng.permutation(len(held_out))[:n]]  # as many as there are synthetic
    ref = distances_to_classes(sample, emb.train_feats, emb.real_by_class, cfg.kid_subsets, cfg.seed)
    ref_by_kid = sorted(ref, key=lambda c: ref[c]["kid"])
    return {"n": int(len(sample)), "kid": ref[klass]["kid"], "fd": ref[klass]["fd"],
            "own_rank_kid": ref_by_kid.index(klass) + 1, "closest_real_class_kid": ref_by_kid[0],
            "own_rank_fd": sorted(ref, key=lambda c: ref[c]["fd"]).index(klass) + 1, "to_class": ref}


def _write_report(out: Path, report: dict[str, Any], copies: list[dict[str, Any]]) -> None:
    """``metrics.json`` (the report) and ``near_copies.csv`` (one row per flagged synthetic image)."""
    (out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    with open(out / "near_copies.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["file", "nearest_train_image", "nearest_train_class", "pixel_rmse",
                                                "nearest_train_image_features"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(copies)


def _print_summary(space_name: str, folder: Path, out: Path, report: dict[str, Any]) -> None:
    """The feature space and a table of the per-class results, on the console."""
    console.print(f"Feature space: {space_name}")
    print_table(f"synth.evaluate: {folder} vs real training images (report: {out})",
                ["class", "n", "FD", "KID", "nearest (KID)", "rank", "held-out real: rank", "prec", "recall",
                 "copies"],
                [[c, m["synthetic"], m["fd"], m["kid"], m["closest_real_class_kid"], m["own_rank_kid"],
                  m["held_out_real"]["own_rank_kid"] if "held_out_real" in m else "-",
                  m["precision"], m["recall"], m["copy_rate"]] for c, m in report["classes"].items()])


def evaluate(cfg: SyntheticEvaluateConfig) -> dict[str, Any]:
    """Compute the report (see the module docstring), write it to the report folder and return it."""
    if cfg.synthetic and not cfg.out_dir:  # the default folder, checked before any work (--out is, at parsing)
        check_out_folder(Path(cfg.synthetic) / "eval", KIND, "The default output folder", replaces=True)
    folder, header, prepared = _check_inputs(cfg)
    data_cfg = cfg.data
    rows, synth_images = load_synthetic(folder, data_cfg.image_size, data_cfg.cache_dir)
    out = Path(cfg.out_dir) if cfg.out_dir else folder / "eval"
    synth_classes = _synthetic_classes(rows, prepared, folder, data_cfg.name)
    with replacing(out, KIND) as staging:  # the previous report in the folder is replaced whole
        write_run_info(staging, cfg, cfg.seed, {"split_hash": prepared.split_hash, "model_hash": header["model_hash"]},
                       kind=KIND)
        report = _evaluate_classes(cfg, folder, header, prepared, rows, synth_images, synth_classes, staging)
    _print_summary(report["feature_space"], folder, out, report)
    return report


def _evaluate_classes(cfg: SyntheticEvaluateConfig, folder: Path, header: dict[str, Any], prepared: PreparedData,
                      rows: list[dict[str, str]], synth_images: np.ndarray, synth_classes: np.ndarray,
                      out: Path) -> dict[str, Any]:
    """The report of every synthetic class, its grids (``out/grids``), ``metrics.json`` and ``near_copies.csv``."""
    data_cfg = cfg.data
    space = FeatureSpace(cfg.weights, cfg.backbone, cfg.small_stem, data_cfg.image_size, cfg.seed)
    emb = _embed(space, prepared, synth_images)
    report: dict[str, Any] = {"feature_space": space.name, "synthetic": str(folder), "model_hash": header["model_hash"],
                              "split_hash": prepared.split_hash, "image_size": data_cfg.image_size,
                              "copy_rmse": cfg.copy_rmse, "classes": {}}
    copies: list[dict[str, Any]] = []
    grid_dir = out / "grids"
    grid_dir.mkdir(parents=True, exist_ok=True)
    held_out_feats = embed_held_out(cfg, prepared, space, set(synth_classes))
    # One generator for the held-out draws and the grids' real images, used in this order per class.
    rng = np.random.default_rng(cfg.seed)
    for klass in sorted(set(synth_classes), key=list(prepared.classes).index):
        s_idx = np.flatnonzero(synth_classes == klass)
        if len(s_idx) < 2:
            console.print(f"[yellow]{klass}: only {len(s_idx)} synthetic image; distances need at least 2.[/]")
            continue
        report["classes"][klass] = _class_report(cfg, klass, s_idx, emb, synth_images)
        held_out = held_out_feats.get(klass)
        if held_out is not None and len(held_out) >= 2:
            report["classes"][klass]["held_out_real"] = _held_out_report(cfg, klass, held_out, len(s_idx), emb, rng)
        class_copies = [{"file": rows[i]["file"], "nearest_train_image": emb.image_ids[int(emb.pix_nn[i])],
                         "nearest_train_class": emb.image_classes[int(emb.pix_nn[i])],
                         "pixel_rmse": round(float(emb.pix_rmse[i]), 5),
                         "nearest_train_image_features": emb.image_ids[int(emb.feat_nn[i])]}
                        for i in _near_copy_indices(cfg, s_idx, emb)]
        report["classes"][klass]["near_copies_own_class"] = sum(c["nearest_train_class"] == klass for c in class_copies)
        copies += class_copies
        show = s_idx[:cfg.grid_images]
        real_idx = emb.real_by_class[klass].numpy()
        real_show = rng.choice(real_idx, size=min(len(show), len(real_idx)), replace=False)
        save_class_grid(grid_dir / f"{klass}.png", emb.train_images[real_show], synth_images[show],
                        emb.train_images[emb.pix_nn[show].numpy()])
    report["near_copies_total"] = len(copies)
    report["copy_rate"] = len(copies) / max(1, len(rows))
    _write_report(out, report, copies)
    return report


def distances_to_classes(features: torch.Tensor, train_feats: torch.Tensor, real_by_class: dict[str, torch.Tensor],
                         kid_subsets: int, seed: int) -> dict[str, dict[str, float]]:
    """FD and KID of (M, D) ``features`` to the (N_c, D) training features of every class with >= 2 images."""
    return {klass: {"fd": frechet_distance(train_feats[idx], features),
                    "kid": kernel_distance(train_feats[idx], features, kid_subsets, seed=seed)[0]}
            for klass, idx in real_by_class.items() if len(idx) >= 2}


def embed_held_out(cfg: SyntheticEvaluateConfig, prepared: PreparedData, space: FeatureSpace,
                   classes: set[str]) -> dict[str, torch.Tensor]:
    """(n_c, D) features of the validation images of each of ``classes`` (empty if switched off or none)."""
    val_idx = prepared.indices("val")
    if not cfg.held_out_reference or len(val_idx) == 0:
        return {}
    val_labels = prepared.labels[val_idx]
    wanted = [i for i, c in enumerate(prepared.classes) if c in classes]
    rows = val_idx[np.isin(val_labels, wanted)]
    feats = space.embed(prepared.images[rows], "held-out real images (validation split)")  # (n, D)
    labels = prepared.labels[rows]
    return {prepared.classes[i]: feats[torch.from_numpy(labels == i)] for i in wanted}


def save_class_grid(path: Path, real: np.ndarray, synthetic: np.ndarray, nearest_train: np.ndarray,
                    display_size: int = 64) -> Path:
    """Write a 3-row grid: real images of the class / synthetic images / nearest training image of each.

    Args:
        real: (R, S, S, 3) uint8.
        synthetic: (K, S, S, 3) uint8.
        nearest_train: (K, S, S, 3) uint8, row i is the pixel-space neighbour of ``synthetic[i]``.
        display_size: side each image is upscaled to (nearest neighbour) so small images are visible.
    """
    def tiles(images: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.array(images)).permute(0, 3, 1, 2).float() / 255.0  # (B, 3, S, S)
        return F.interpolate(x, size=display_size, mode="nearest")

    ncol = max(len(real), len(synthetic))
    pad = [torch.ones(ncol - len(t), 3, display_size, display_size) for t in (real, synthetic, nearest_train)]
    rows = [torch.cat([tiles(a), p]) for a, p in zip((real, synthetic, nearest_train), pad)]
    save_image(make_grid(torch.cat(rows), nrow=ncol, padding=2, pad_value=1.0), path)
    return path


@entry_point
def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(SyntheticEvaluateConfig, "python -m synth.evaluate", __doc__.splitlines()[0], argv, FLAGS)
    evaluate(cfg)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
