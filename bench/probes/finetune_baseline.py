"""Fine-tuning against a plain PyTorch loop: test balanced accuracy and training images/s.

The plain loop is what a new user writes in an afternoon: the same lesion-grouped split and image
cache as dermkit, ``torchvision.transforms.v2`` augmentation written out (flips both ways, rotation
by any angle, mild colour jitter: the same operations as ``finetune.train``), a ResNet from the
backbone registry with a linear head, class-weighted cross-entropy (weights ``N / (C * n_c)``),
AdamW with a per-step cosine schedule, the best epoch chosen on validation balanced accuracy, and
the test split scored once with that epoch's weights.

``--role plain`` runs that loop in this process; ``--role ours`` runs ``python -m finetune.train``
with the same model, batch, epochs and data as a subprocess and reads its ``metrics.json`` (the
stage's training images/s is recorded there as ``train_images_per_second``). ``--role both`` (the
default) runs them one after the other and writes a side-by-side table. Images/s counts optimiser
steps after a 5-step warm-up, data loading included, validation excluded; CPU time is the process's
user + system time (its data-loader workers included). ``--precision bf16-mixed`` runs both loops in
bfloat16 autocast: the plain loop's forward passes (training, validation, test) and loss inside
``torch.autocast``, the stage with ``trainer.precision=bf16-mixed``.

Usage (from the repository root)::

    python -m bench.finetune_baseline --root ../shared/data/ham10000 --epochs 15 --out runs/bench/ft_baseline
    python -m bench.finetune_baseline --role ours --epochs 1 --max-batches 20   # a throughput check
    python -m bench.finetune_baseline --epochs 1 --max-batches 40 --precision bf16-mixed --out runs/bench/ft_bf16
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from dermkit.backbones import build_backbone
from dermkit.backbones.card import IMAGENET_MEAN, IMAGENET_STD
from dermkit.config import DataConfig, default_ham10000_root
from dermkit.console import console, entry_point, print_table, progress
from dermkit.data.datasets import CachedImageDataset
from dermkit.data.prepare import prepare_data
from dermkit.metrics import balanced_accuracy, recall_by_class
from dermkit.precision import PRECISIONS, autocast
from bench.probes.timed_loop import TimedLoop

WARMUP_STEPS = 5


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (data-loader workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def plain_transforms(jitter: float = 0.1) -> tuple[v2.Compose, v2.Compose]:
    """(train, eval) transforms of the plain loop, PIL image -> (3, S, S) normalised tensor."""
    normalise = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(IMAGENET_MEAN), list(IMAGENET_STD))]
    train = v2.Compose([v2.RandomHorizontalFlip(), v2.RandomVerticalFlip(),
                        v2.RandomRotation(180.0, interpolation=v2.InterpolationMode.BILINEAR),
                        v2.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter), *normalise])
    return train, v2.Compose(normalise)


@torch.no_grad()
def _predict(model: nn.Module, loader: DataLoader, precision: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted class (N,), target (N,)) over a loader, in ``precision`` as the stage validates and tests."""
    model.eval()
    preds, targets = [], []
    for images, labels in loader:
        with autocast(precision):
            preds.append(model(images).argmax(1))
        targets.append(torch.as_tensor(labels).long())
    model.train()
    return torch.cat(preds), torch.cat(targets)


def run_plain(args: argparse.Namespace) -> dict[str, Any]:
    """Train and test with the plain loop; returns the figures (see module doc)."""
    torch.manual_seed(args.seed)
    data = prepare_data(DataConfig(name=args.data, root=args.root, image_size=args.image_size,
                                   fraction=args.fraction, num_workers=args.workers, batch_size=args.batch_size))
    classes, labels = list(data.classes), data.labels
    train_tf, eval_tf = plain_transforms()
    train_rows = data.indices("train", args.fraction)

    def loader(rows: Any, transform: v2.Compose, shuffle: bool) -> DataLoader:
        return DataLoader(CachedImageDataset(data.cache_path, rows, labels, transform), batch_size=args.batch_size,
                          shuffle=shuffle, num_workers=args.workers, persistent_workers=args.workers > 0,
                          generator=torch.Generator().manual_seed(args.seed) if shuffle else None)

    train, val, test = (loader(train_rows, train_tf, True), loader(data.indices("val"), eval_tf, False),
                        loader(data.indices("test"), eval_tf, False))
    counts = torch.bincount(torch.as_tensor(labels[train_rows]), minlength=len(classes)).float()
    weights = counts.sum() / (len(classes) * counts.clamp(min=1))
    backbone = build_backbone(args.backbone, small_stem=False, image_size=args.image_size)
    model = nn.Sequential(backbone, nn.Linear(backbone.feature_dim, len(classes)))
    criterion = nn.CrossEntropyLoss(weight=weights)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = min(len(train), args.max_batches or len(train))
    total = steps_per_epoch * args.epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))

    best_score, best_state, curve = -1.0, None, []
    loop = TimedLoop(WARMUP_STEPS)
    cpu_start = _cpu_seconds()
    with progress() as bar:
        task = bar.add_task("plain loop", total=total)
        for epoch in range(args.epochs):
            loop.new_epoch()  # validation between epochs is not a training step's time
            for batch_index, (batch, target) in enumerate(train):
                if batch_index >= steps_per_epoch:
                    break
                with autocast(args.precision):
                    loss = criterion(model(batch), torch.as_tensor(target).long())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                loop.step_done(batch.shape[0])
                bar.advance(task)
            score = balanced_accuracy(*_predict(model, val, args.precision), len(classes))
            curve.append(round(score, 4))
            if score > best_score:
                best_score, best_state = score, {k: v.clone() for k, v in model.state_dict().items()}
    assert best_state is not None
    model.load_state_dict(best_state)
    preds, targets = _predict(model, test, args.precision)
    return {"role": "plain", "test_balanced_accuracy": balanced_accuracy(preds, targets, len(classes)),
            "test_recall": recall_by_class(preds, targets, classes), "best_val_balanced_accuracy": best_score,
            "val_curve": curve, "train_images_per_second": loop.images_per_second(),
            "cpu_seconds": _cpu_seconds() - cpu_start}


def run_ours(args: argparse.Namespace, out_dir: Path) -> dict[str, Any]:
    """``python -m finetune.train`` with the plain loop's settings; its metrics.json figures."""
    run_dir = out_dir / "finetune"
    command = [sys.executable, "-m", "finetune.train", "--data", args.data, "--image-size", str(args.image_size),
               "--backbone", args.backbone, "--fraction", str(args.fraction), "--epochs", str(args.epochs),
               "--seed", str(args.seed), "--out", str(run_dir), "--loss", "ce",
               f"data.batch_size={args.batch_size}", f"data.num_workers={args.workers}",
               f"optim.lr={args.lr}", f"optim.weight_decay={args.weight_decay}", "loss.weighting=inverse",
               "trainer.accelerator=cpu", f"trainer.precision={args.precision}",
               *([f"data.root={args.root}"] if args.root else []),
               *([f"trainer.limit_train_batches={args.max_batches}"] if args.max_batches else []), *args.ours_overrides]
    console.print("ours: " + " ".join(command))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {"role": "ours", "test_balanced_accuracy": metrics["balanced_accuracy"],
            "test_recall": metrics.get("recall", {}), "best_val_balanced_accuracy": metrics.get("best_val_balanced_accuracy"),
            "train_images_per_second": metrics.get("train_images_per_second", 0.0),
            "cpu_seconds": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
            "command": " ".join(command)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.finetune_baseline", description=__doc__.split("\n")[0])
    parser.add_argument("--role", choices=("both", "plain", "ours"), default="both", help="which loop(s) to run")
    parser.add_argument("--data", default="ham10000", help="dataset format (the plain loop reads it through dermkit)")
    parser.add_argument("--root", default="", help=f"dataset folder (default {default_ham10000_root()} for ham10000)")
    parser.add_argument("--backbone", default="resnet18", help="architecture from the backbone registry (standard stem)")
    parser.add_argument("--image-size", type=int, default=64, help="image side in px")
    parser.add_argument("--batch-size", type=int, default=64, help="images per training batch")
    parser.add_argument("--workers", type=int, default=1, help="data-loader worker processes")
    parser.add_argument("--epochs", type=int, default=15, help="training epochs")
    parser.add_argument("--max-batches", type=int, default=0, help="at most this many batches per epoch (0: all)")
    parser.add_argument("--fraction", type=float, default=1.0, help="nested label fraction of the training split")
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW peak learning rate (cosine decay per step)")
    parser.add_argument("--weight-decay", type=float, default=0.05, help="AdamW weight decay")
    parser.add_argument("--seed", type=int, default=0, help="seed of weights and data order")
    parser.add_argument("--precision", choices=PRECISIONS, default="32-true",
                        help="precision of both loops: 32-true (float32) or bf16-mixed (forward pass and loss "
                             "autocast to bfloat16, where the CPU or GPU supports it; the stage gets "
                             "trainer.precision=bf16-mixed)")
    parser.add_argument("--out", default="runs/bench/finetune_baseline", help="folder for results.json, results.md")
    parser.add_argument("ours_overrides", nargs="*", help="extra key=value overrides for finetune.train")
    return parser


@entry_point
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    if args.role in ("both", "plain"):
        results.append(run_plain(args))
    if args.role in ("both", "ours"):
        results.append(run_ours(args, out_dir))
    (out_dir / "results.json").write_text(json.dumps({"args": vars(args), "results": results}, indent=2) + "\n")
    rows = [[r["role"], f"{r['test_balanced_accuracy']:.3f}", f"{r['best_val_balanced_accuracy'] or 0:.3f}",
             f"{r['train_images_per_second']:.1f}", f"{r['cpu_seconds'] / 60:.1f}"] for r in results]
    header = ["loop", "test bal. acc.", "best val bal. acc.", "train images/s", "CPU min"]
    if len(results) == 2 and results[0]["train_images_per_second"]:
        ratio = results[1]["train_images_per_second"] / results[0]["train_images_per_second"]
        console.print(f"finetune.train / plain loop training images/s: {ratio:.2f}x")
    title = f"fine-tuning against a plain loop, {args.precision}"
    print_table(title, header, rows)
    lines = [title, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header),
             *("| " + " | ".join(r) + " |" for r in rows)]
    (out_dir / "results.md").write_text("\n".join(lines) + "\n")
    console.print(f"Wrote {out_dir}/results.json and results.md.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
