"""``python -m bench.label_efficiency --preset NAME --dry-run``: check every step's config, estimate its cost.

Before a long run starts, each distinct stage command of the pipeline is resolved by that stage's
own schema (one ``python -m <stage> --check-configs /dev/stdin`` process per stage module, see
:func:`dermkit.config.check_configs`): a misspelt key, a bad value or an impossible trainer setting
in any of the 90 cells of ``gpu-full`` fails now, not hours in. Then every step's command is printed
with its estimated time, disk and peak memory (:mod:`bench.grid.cost`, which states its assumptions).

Nothing is written and no image is read: the image count comes from the dataset's metadata CSV
when it is present, else from the documented HAM10000 counts (:data:`dermkit.data.demo.HAM10000_COUNTS`).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dermkit.backbones.card import read_card
from dermkit.config import REPO_ROOT, default_ham10000_root
from dermkit.console import console, print_table
from dermkit.data.demo import DEFAULT_N_IMAGES, HAM10000_COUNTS
from dermkit.errors import DermkitError
from dermkit.vocab import CANONICAL_CLASSES
from bench.grid.config import BenchConfig
from bench.grid.cost import (Estimate, filter_cost, finetune_cost, generated_per_class, human_bytes, human_seconds,
                        predict_cost, pretrain_cost, real_per_class, synth_evaluate_cost, synth_generate_cost,
                        synth_train_cost, synthetic_share)
from bench.grid.external import image_files
from bench.grid.keys import Step

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


def image_count(cfg: BenchConfig) -> tuple[int, str]:
    """(number of images, where the number comes from) without reading or caching any image."""
    name, root = str(cfg.data.name), str(cfg.data.root)
    if name == "demo":
        return DEFAULT_N_IMAGES, "the demo dataset's size"
    if name == "ham10000":
        metadata = Path(root or default_ham10000_root()).expanduser() / "HAM10000_metadata.csv"
        if metadata.is_file():
            with metadata.open() as handle:
                return sum(1 for line in handle if line.strip()) - 1, f"{metadata}"
        return sum(HAM10000_COUNTS.values()), f"documented HAM10000 counts ({metadata} not found)"
    folder = Path(root).expanduser()
    if root and folder.is_dir():
        count = sum(1 for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        return count, f"image files under {folder}"
    raise DermkitError(f"data.name={name}: cannot count the images without data.root; set data.root to the "
                       "dataset folder for the dry run's estimates.")


def check_stage_configs(steps: list[Step]) -> dict[str, dict[str, Any]]:
    """Resolve every step's arguments with its stage's schema; returns ``{step name: resolved config}``.

    Raises:
        DermkitError: any step's config is refused (every refused step is listed with its error).
    """
    by_module: dict[str, list[Step]] = defaultdict(list)
    for step in steps:
        by_module[step.module].append(step)
    resolved: dict[str, dict[str, Any]] = {}
    errors: list[str] = []

    def check(module: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", module, "--check-configs", "/dev/stdin"], cwd=REPO_ROOT,
                              input=json.dumps([s.args for s in by_module[module]]), capture_output=True, text=True)

    # One process per stage, all at once: each spends most of its time importing torch and Lightning.
    with ThreadPoolExecutor(max_workers=len(by_module) or 1) as pool:
        checked = dict(zip(by_module, pool.map(check, by_module)))
    for module, group in by_module.items():
        done = checked[module]
        lines = done.stdout.strip().splitlines()
        try:
            results = json.loads(lines[-1]) if lines else None
        except ValueError:
            results = None
        if not isinstance(results, list) or len(results) != len(group):
            raise DermkitError(f"python -m {module} --check-configs failed (exit {done.returncode}): "
                               f"{(done.stderr.strip().splitlines() or ['no output'])[-1]}")
        for step, result in zip(group, results):
            if result["error"]:
                errors.append(f"{step.name}: {result['error']}")
            else:
                resolved[step.name] = result["config"]
        console.print(f"[green]checked[/] {len(group)} config(s) of python -m {module}")
    if errors:
        for line in errors:
            console.print(f"[red]refused[/] {line}", highlight=False)
        raise DermkitError(f"{len(errors)} step config(s) refused by their stage (listed above); fix the preset's "
                           "overrides before running it.")
    return resolved


def generated_images(generate: Step, configs: dict[str, dict[str, Any]], train_images: int) -> dict[str, float]:
    """Images a ``synth.generate`` step makes per class (its ``--n`` or ``--ratio`` of the generator's
    training images, :func:`bench.grid.cost.generated_per_class`)."""
    config, generator = configs[generate.name], configs[generate.inputs[0].name]
    real = real_per_class(train_images, float(generator["data"]["fraction"]), [str(c) for c in config["classes"]],
                          HAM10000_COUNTS)
    return generated_per_class(real, config["n"], config["ratio"])


def synthetic_images(step: Step, config: dict[str, Any], configs: dict[str, dict[str, Any]],
                     train_images: int) -> int:
    """Generated images a cell adds to each epoch (0 without a manifest): what its generation step
    makes, capped by ``synth.max_ratio`` (:func:`bench.grid.cost.synthetic_share`)."""
    if not config["synth"]["manifest"]:
        return 0
    source = next((s for s in step.inputs if s.module in ("synth.generate", "finetune.filter_synthetic")), None)
    if source is not None and source.module == "finetune.filter_synthetic":
        source = next((s for s in source.inputs if s.module == "synth.generate"), None)
    if source is None or source.name not in configs:
        return 0
    generated = generated_images(source, configs, train_images)
    real = real_per_class(train_images, float(config["data"]["fraction"]), list(generated), HAM10000_COUNTS)
    return synthetic_share(real, generated, float(config["synth"]["max_ratio"]))


def estimate(step: Step, config: dict[str, Any], configs: dict[str, dict[str, Any]],
             split: dict[str, int]) -> Estimate:
    """The cost of one step from its resolved config (see :mod:`bench.grid.cost`)."""
    if step.module == "ssl.pretrain":
        return pretrain_cost(config, split["train"])
    if step.module == "finetune.train":
        return finetune_cost(config, split["train"], split["val"], split["test"],
                             synthetic_images(step, config, configs, split["train"]))
    if step.module == "synth.train":
        return synth_train_cost(config, split["train"], len(CANONICAL_CLASSES))
    if step.module == "synth.generate":
        generator = configs[step.inputs[0].name]
        images = int(sum(generated_images(step, configs, split["train"]).values()))
        return synth_generate_cost(config, images, int(generator["data"]["image_size"]),
                                   str(generator["model"]["preset"]), len(CANONICAL_CLASSES))
    if step.module == "synth.evaluate":
        generate = step.inputs[0]
        size = int(configs[generate.inputs[0].name]["data"]["image_size"])
        space = read_card(config["weights"]) if config["weights"] else None
        generated = generated_images(generate, configs, split["train"])
        return synth_evaluate_cost(space.architecture if space else str(config["backbone"]),
                                   space.small_stem if space else bool(config["small_stem"]),
                                   space.input_size if space else size, int(sum(generated.values())), split["train"],
                                   len(generated), int(config["grid_images"]))
    if step.module == "finetune.filter_synthetic":
        scored = generated_images(step.inputs[1], configs, split["train"])
        return filter_cost(config, configs[step.inputs[0].name], int(sum(scored.values())))
    if step.module == "finetune.predict":
        images = len(image_files(Path(str(config["data"]["root"])).expanduser()))
        return predict_cost(config, configs[step.inputs[0].name], images)
    raise ValueError(f"no cost model for {step.module}")



@dataclass
class KindTotal:
    """The estimated cost of the steps of one kind: how many, their time and disk summed, the largest memory."""

    steps: int = 0
    seconds: float = 0.0
    disk_bytes: float = 0.0
    memory_bytes: float = 0.0

    def add(self, cost: Estimate) -> None:
        self.steps += 1
        self.seconds += cost.seconds
        self.disk_bytes += cost.disk_bytes
        self.memory_bytes = max(self.memory_bytes, cost.memory_bytes)


def dry_run(cfg: BenchConfig, steps: list[Step]) -> int:
    """Check and print the plan (see the module docstring); returns 0."""
    total, source = image_count(cfg)
    val, test = float(cfg.data.val_fraction), float(cfg.data.test_fraction)
    split = {"train": int(total * (1 - val - test)), "val": int(total * val), "test": int(total * test)}
    console.print(f"[bold]dry run[/]: {len(steps)} steps; {total} images ({source}), about {split['train']} "
                  f"train / {split['val']} val / {split['test']} test (lesion-grouped split, so approximate)")
    empty = [name for name, n in split.items() if n < 1]
    if empty:  # the grid itself refuses an empty split once it has read the images; say so now
        raise DermkitError(f"{total} images ({source}) leave about {split['train']} train / {split['val']} val / "
                           f"{split['test']} test images: the {' and '.join(empty)} split(s) would be empty. Use a "
                           "larger dataset, or change data.val_fraction / data.test_fraction.")
    configs = check_stage_configs(steps)
    rows, totals = [], defaultdict(KindTotal)
    for step in steps:
        cost = estimate(step, configs[step.name], configs, split)
        console.print(f"{step.name}: ~{human_seconds(cost.seconds)}, disk {human_bytes(cost.disk_bytes)}, "
                      f"peak memory {human_bytes(cost.memory_bytes)} ({cost.note})\n  $ python -m {step.module} "
                      + " ".join(map(shlex.quote, step.args)), highlight=False, soft_wrap=True)
        totals[step.kind].add(cost)
    size = int(cfg.data.image_size)
    for kind, t in totals.items():
        rows.append([kind, str(t.steps), human_seconds(t.seconds), human_bytes(t.disk_bytes),
                     human_bytes(t.memory_bytes)])
    rows.append(["image cache (once)", "-", "-", human_bytes(total * size * size * 3), "-"])
    all_seconds = sum(t.seconds for t in totals.values())
    all_disk = sum(t.disk_bytes for t in totals.values()) + total * size * size * 3
    rows.append(["total (one step at a time)", str(len(steps)), human_seconds(all_seconds), human_bytes(all_disk),
                 human_bytes(max(t.memory_bytes for t in totals.values()))])
    print_table("estimated cost (bench/grid/cost.py: an order of magnitude, not a measurement)",
                ["steps", "count", "time", "disk", "peak memory per step"], rows)
    console.print("Every config resolved. Nothing was written; run the same command without --dry-run to start.")
    return 0
