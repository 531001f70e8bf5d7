"""Generate synthetic images of chosen classes: ``python -m synth.generate --class melanoma --n 500``.

Images go to ``OUT/<class>/<class>_<index>.png`` and are listed in ``OUT/manifest.csv`` once they are
complete (see :mod:`synth.manifest`). Image ``index`` of a class is drawn from a seed derived from
(``seed``, class, index), so re-running the same command resumes where it stopped and gives the
same images; images already listed are never made twice. The folder's first run fixes the model
and the sampler settings (``--sampler``, ``--steps``, ``--guidance``, ``--seed``): a run with other
ones is refused (use another ``--out``). Several processes may write into one folder at once (e.g.
one class each); the manifest lists every image each of them made.

Example::

    python -m synth.generate --model runs/synth/ham32_small --out runs/synth/ham32_small/samples \\
        --class melanoma --class vasc --balance 1000 --sampler dpm --steps 20 --guidance 3.0
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from diffusers import UNet2DModel
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from dermkit.config import Flag, parse_config
from dermkit.console import console, entry_point, print_table, progress
from dermkit.errors import DermkitError
from dermkit.flags import out_flag
from dermkit.manifest import (MANIFEST_CSV, ManifestRow, generator_header, read_manifest, synthetic_limit, write_header,
                              write_manifest)
from dermkit.progress_file import write_progress
from dermkit.runinfo import write_run_info
from dermkit.vocab import canonical_class, display_name
from synth.generator import GeneratorInfo, load_generator, model_hash
from synth.manifest import (
    check_same_generator,
    check_same_settings,
    image_file,
    image_index,
    image_seed,
    manifest_lock,
    remove_partials,
    update_manifest,
    write_png,
)
from synth.sampling import SAMPLERS, check_sampler, make_sampler, sample, to_uint8


@dataclass
class GenerateConfig:
    """``python -m synth.generate``.

    Keys:
        model: generator folder written by ``python -m synth.train``.
        out_dir: output folder (PNGs per class + manifest.csv); re-running resumes.
        classes: classes to generate (names or aliases, e.g. ``melanoma``, ``mel``, ``vascular``).
        n: images per class in the folder when done (set this, ``balance`` or ``ratio``; with
            ``ratio``, the most per class).
        balance: fill each class up to this many images counting the generator's training images of
            the class: makes ``balance - train_count`` synthetic images (none if already above).
        ratio: ``floor(ratio * train_count)`` images per class, ``train_count`` being the generator's
            training images of the class (at most ``n`` when ``n`` is given): what a fine-tuning run
            with ``synth.max_ratio=ratio`` on the same labelled images can use, and no more (the same
            rule as :mod:`finetune.synthetic`, :func:`dermkit.manifest.synthetic_limit`).
        steps: denoising steps (DPM-Solver++: 20; DDIM needs about 250 to come as near the converged
            images, at 50 it lands 17 levels of 255 off, docs/benchmarks.md; DDPM: the training
            length, 1000).
        guidance: classifier-free guidance weight (1 = conditional only, 0 = unconditional).
        sampler: a name of :data:`synth.sampling.SAMPLERS`: ``dpm`` (DPM-Solver++ 2M), ``ddim`` or ``ddpm``.
        seed: base seed; image i of class c uses a seed derived from (seed, c, i).
        batch_size: images denoised at once.
        device: ``auto`` (GPU if available), ``cpu`` or ``cuda``.
    """

    model: str = ""
    out_dir: str = ""
    classes: list[str] = field(default_factory=list)
    n: Optional[int] = None  # noqa: UP045 - omegaconf needs typing.Optional
    balance: Optional[int] = None  # noqa: UP045
    ratio: Optional[float] = None  # noqa: UP045
    steps: int = 20
    guidance: float = 3.0
    sampler: str = "dpm"
    seed: int = 0
    batch_size: int = 32
    device: str = "auto"


FLAGS = [
    Flag("--model", "model", "generator folder (from python -m synth.train)"),
    out_flag("output folder; re-running the same command resumes", command="synth.generate"),
    Flag("--class", "classes", "class to generate, name or alias; repeat for several", action="append"),
    Flag("--n", "n", "images per class", int),
    Flag("--balance", "balance", "fill each class up to this count, counting its training images", int),
    Flag("--ratio", "ratio", "floor(RATIO x the class's training images) per class, at most --n if given", float),
    Flag("--steps", "steps", "denoising steps (dpm: 20 reach the converged images within about 4 levels of 255)", int),
    Flag("--guidance", "guidance", "classifier-free guidance weight", float),
    Flag("--sampler", "sampler", f"sampling scheduler: {', '.join(SAMPLERS.names())} (default dpm: DPM-Solver++ 2M)",
         check=check_sampler),
    Flag("--seed", "seed", "base seed", int),
    Flag("--batch-size", "batch_size", "images per batch", int),
    Flag("--device", "device", "auto, cpu or cuda"),
]


def chosen_classes(names: list[str], info: GeneratorInfo, model_dir: str) -> list[str]:
    """Canonical, de-duplicated classes, each one the generator was trained on.

    Raises:
        DermkitError: no class given, an unknown name, or a class the generator never saw.
    """
    if not names:
        raise DermkitError(f"Choose classes with --class (repeatable); this generator knows {', '.join(info.classes)}.")
    chosen: list[str] = []
    for name in names:
        klass = canonical_class(name)
        if klass not in info.classes or info.train_counts.get(klass, 0) == 0:
            raise DermkitError(f"The generator {model_dir} never saw class {klass!r} ({display_name(klass)}) in "
                               f"training; it can make: {', '.join(c for c in info.classes if info.train_counts.get(c))}.")
        if klass not in chosen:
            chosen.append(klass)
    return chosen


def targets(classes: list[str], info: GeneratorInfo, n: int | None, balance: int | None,
            ratio: float | None = None) -> dict[str, int]:
    """Synthetic images each class should have in the folder when done.

    Raises:
        DermkitError: none of ``n``, ``balance`` and ``ratio``, ``balance`` with another one, a count
            below 1 or a ratio that is not positive.
    """
    if (n is None and balance is None and ratio is None) or (balance is not None and (n, ratio) != (None, None)):
        raise DermkitError("Pass one of --n (images per class), --balance (target count per class) and --ratio "
                           "(synthetic per training image of the class); --n may go with --ratio as its cap.")
    if n is not None and n < 1:
        raise DermkitError(f"--n must be at least 1, got {n}.")
    if ratio is not None:
        if not ratio > 0:
            raise DermkitError(f"--ratio must be positive, got {ratio}.")
        wanted = {c: synthetic_limit(ratio, info.train_counts.get(c, 0)) for c in classes}
        return {c: min(k, n) if n is not None else k for c, k in wanted.items()}
    if n is not None:
        return {c: n for c in classes}
    assert balance is not None
    if balance < 1:
        raise DermkitError(f"--balance must be at least 1, got {balance}.")
    return {c: max(0, balance - info.train_counts.get(c, 0)) for c in classes}


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise DermkitError(f"device must be auto, cpu or cuda, got {name!r}.")
    if name == "cuda" and not torch.cuda.is_available():
        raise DermkitError("device=cuda but no CUDA GPU is available; use device=auto or cpu.")
    return torch.device(name)


def check_sampling(cfg: GenerateConfig, train_timesteps: int) -> None:
    """Refuse sampler settings the generator cannot run.

    Raises:
        DermkitError: steps outside [1, ``train_timesteps``], a negative guidance weight or a batch
            size below 1.
    """
    if cfg.steps < 1:
        raise DermkitError(f"--steps must be at least 1, got {cfg.steps}.")
    if cfg.steps > train_timesteps:
        raise DermkitError(f"--steps {cfg.steps} exceeds the {train_timesteps} training timesteps of this generator.")
    if cfg.guidance < 0:
        raise DermkitError(f"--guidance must be >= 0, got {cfg.guidance}.")
    if cfg.batch_size < 1:
        raise DermkitError(f"--batch-size must be at least 1, got {cfg.batch_size}.")


def open_folder(out: Path, cfg: GenerateConfig, info: GeneratorInfo, weights_hash: str) -> list[ManifestRow]:
    """Check the output folder against this run, tidy what an interrupted run left, write its header.

    Returns:
        The manifest rows whose PNG exists (the images this run need not make again).

    Raises:
        DermkitError: the folder holds another generator's images or other sampler settings.
    """
    settings = {"model_hash": weights_hash, "sampler": cfg.sampler, "steps": cfg.steps, "guidance": cfg.guidance,
                "seed": cfg.seed}
    with manifest_lock(out):  # another process may be adding rows to this folder right now
        rows = read_manifest(out)
        check_same_generator(out, weights_hash, rows)
        check_same_settings(out, settings, rows)
        removed = remove_partials(out)
        present = [r for r in rows if (out / r.file).is_file()]
        if len(present) < len(rows) or removed:
            console.print(f"[yellow]{len(rows) - len(present)} listed images were missing (they will be remade); "
                          f"{removed} partial files of an interrupted run removed.[/]")
            write_manifest(out, present)
        # label_fraction: finetune refuses these images for a run that may use fewer labelled images.
        write_header(out, generator_header(str(Path(cfg.model).resolve()), weights_hash, info.split_hash,
                                           info.trained_label_fraction(), info.classes, info.image_size, settings))
    return present


def write_batch(out: Path, cfg: GenerateConfig, batch: list[tuple[str, int]], seeds: list[int], images: np.ndarray,
                weights_hash: str, split_hash: str) -> list[ManifestRow]:
    """Write one batch's (B, S, S, 3) uint8 images as PNGs; their manifest rows (not yet listed)."""
    rows = []
    for (klass, index), seed, image in zip(batch, seeds, images):
        write_png(out / image_file(klass, index), image)
        rows.append(ManifestRow(image_file(klass, index), klass, seed, cfg.steps, cfg.guidance, weights_hash,
                                split_hash))
    return rows


def make_images(cfg: GenerateConfig, out: Path, unet: UNet2DModel, scheduler: SchedulerMixin, info: GeneratorInfo,
                weights_hash: str, todo: list[tuple[str, int]], rows: list[ManifestRow],
                total: int) -> tuple[list[ManifestRow], Counter[str]]:
    """Sample the images ``todo`` names (class, index) batch by batch, listing each batch once written.

    ``progress.json`` counts the ``total`` images wanted, those made by earlier runs included.

    Returns:
        (the folder's manifest rows after the last batch, images made per class).

    Raises:
        KeyboardInterrupt: after removing this run's partial files; every listed image is complete.
    """
    label_of = {c: i for i, c in enumerate(info.classes)}
    made: Counter[str] = Counter()
    write_progress(out, total - len(todo), total, "images")
    with progress() as bar:
        task = bar.add_task(f"Generating ({cfg.sampler}, {cfg.steps} steps, w={cfg.guidance})", total=len(todo))
        try:
            for first in range(0, len(todo), cfg.batch_size):
                batch = todo[first:first + cfg.batch_size]
                seeds = [image_seed(cfg.seed, c, i) for c, i in batch]
                labels = torch.tensor([label_of[c] for c, _ in batch])
                images = to_uint8(sample(unet, scheduler, labels, seeds, cfg.steps, cfg.guidance))  # (B, S, S, 3)
                batch_rows = write_batch(out, cfg, batch, seeds, images, weights_hash, info.split_hash)
                made.update(r.klass for r in batch_rows)
                # After the PNGs are in place (lists complete files only); merged with other writers' rows.
                rows = update_manifest(out, batch_rows)
                bar.advance(task, len(batch))
                write_progress(out, total - len(todo) + first + len(batch), total, "images")
        except KeyboardInterrupt:
            remove_partials(out)
            console.print(f"[yellow]Interrupted: {sum(made.values())} new images saved and listed in "
                          f"{out / MANIFEST_CSV}. Re-run the same command to resume.[/]")
            raise
    return rows, made


def generate(cfg: GenerateConfig) -> list[ManifestRow]:
    """Make the missing images of ``cfg`` and return the manifest rows of the whole folder."""
    if not cfg.model:
        raise DermkitError("Pass --model with a generator folder (from python -m synth.train).")
    if not cfg.out_dir:
        raise DermkitError("Pass --out with the folder to write images to.")
    unet, train_scheduler, info = load_generator(cfg.model)
    classes = chosen_classes(list(cfg.classes), info, cfg.model)
    wanted = targets(classes, info, cfg.n, cfg.balance, cfg.ratio)
    check_sampling(cfg, train_scheduler.config.num_train_timesteps)
    scheduler = make_sampler(cfg.sampler, train_scheduler)
    device = resolve_device(cfg.device)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights_hash = model_hash(cfg.model)
    rows = open_folder(out, cfg, info, weights_hash)
    write_run_info(out, cfg, cfg.seed, {"model_hash": weights_hash, "split_hash": info.split_hash},
                   kind="synth.generate")

    done = {(r.klass, image_index(r.file)) for r in rows}
    todo = [(c, i) for c in classes for i in range(wanted[c]) if (c, i) not in done]
    unet.to(device)
    start = time.perf_counter()
    rows, made = make_images(cfg, out, unet, scheduler, info, weights_hash, todo, rows, sum(wanted.values()))
    seconds = time.perf_counter() - start
    in_folder = {c: sum(r.klass == c for r in rows) for c in classes}
    print_table(f"synth.generate -> {out} ({sum(made.values())} images in {seconds:.1f} s)",
                ["class", "training images", "synthetic in folder", "made now"],
                [[c, info.train_counts.get(c, 0), in_folder[c], made[c]] for c in classes])
    return rows


@entry_point
def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(GenerateConfig, "python -m synth.generate", __doc__.splitlines()[0], argv, FLAGS)
    try:
        generate(cfg)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
