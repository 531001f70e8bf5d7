"""Pretraining throughput: ``python -m ssl.pretrain`` against a loop written like lightly's SimCLR example.

Four loops: the reference, ours (``ssl.pretrain`` augmenting each image in loader workers,
``data.augment_on=workers``), ours with ``data.augment_on=device`` (the loader ships uint8 batches,
the module augments them where they are: here the CPU, the same cores as the training step) and the
compute-only ceiling. Target of the device path (issue 13): >= 95% of the ceiling.

Both loops train the same backbone (with ``SimCLRProjectionHead`` + ``NTXentLoss``) at the same
batch size and resolution with the same view parameters (lightly's ``SimCLRTransform`` with
dermkit's 64-px defaults). The reference does what lightly's plain-PyTorch example does: a torch
``Dataset`` that opens and decodes each JPEG every time it is read, a ``DataLoader``, and two
forward passes per step. Ours reads the decoded image cache and runs in Lightning.

Each loop runs in its own process, interleaved (reference, ours, device, compute-only, reference, ...),
so all see the same machine load. The compute-only loop runs the same training step on one fixed
batch with no data loading: the speed no data pipeline can beat on this machine. Images/s is measured after 5 warm-up steps, data loading included;
peak memory is the largest sum of PSS (proportional set size, so memory-mapped pages shared by
workers are counted once) over the process and its data-loader workers, sampled every 0.2 s.
``--precision bf16-mixed`` runs every loop in bfloat16 autocast: the two hand-written loops wrap
their forward passes in ``torch.autocast`` (NT-Xent in float32, as the stage computes it), the
``ssl.pretrain`` runs get ``trainer.precision=bf16-mixed``.

Usage (from the repository root)::

    python -m bench.ssl_throughput --root ../shared/data/ham10000 --backbone resnet18 \\
        --image-size 64 --batch-size 64 --workers 2 --steps 40 --rounds 2
    python -m bench.ssl_throughput --backbone resnet18 --steps 25 --rounds 1 --precision bf16-mixed \\
        --json runs/bench/ssl_throughput_bf16.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dermkit.config import default_ham10000_root
from dermkit.console import console, entry_point, print_table
from dermkit.precision import PRECISIONS, autocast, float32_call
from bench.probes.timed_loop import TimedLoop

if TYPE_CHECKING:
    import torch

WARMUP_STEPS = 5


# ----------------------------------------------------------------------------------------------
# The reference loop and the compute-only ceiling (child processes: --role reference / compute)
def _simclr_model(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """(model, NT-Xent criterion, SGD optimiser): the same network and optimiser for both child roles."""
    import torch
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead

    from dermkit.backbones import build_backbone

    torch.manual_seed(0)
    backbone = build_backbone(args.backbone, small_stem=args.small_stem, image_size=args.image_size)
    head = SimCLRProjectionHead(backbone.feature_dim, backbone.feature_dim, 128)
    model = torch.nn.Sequential(backbone, head)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.06 * args.batch_size / 256, momentum=0.9, weight_decay=5e-4)
    return model, NTXentLoss(temperature=0.5), optimizer


def run_compute_only(args: argparse.Namespace) -> dict[str, float]:
    """The ceiling of any data pipeline: the same training step on one fixed batch, no loading at all.

    Runs the two views as one (2B, 3, S, S) pass, as ``ssl.pretrain`` does.
    """
    import torch

    model, criterion, optimizer = _simclr_model(args)
    views = torch.randn(2 * args.batch_size, 3, args.image_size, args.image_size)  # (2B, 3, S, S)
    model.train()
    loop = TimedLoop(WARMUP_STEPS)
    for _ in range(args.steps):
        with autocast(args.precision):
            z0, z1 = model(views).split(args.batch_size)  # (B, P) each
            loss = float32_call(criterion, z0, z1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loop.step_done(args.batch_size)
    return {"images_per_second": loop.images_per_second()}


def run_reference(args: argparse.Namespace) -> dict[str, float]:
    """lightly's SimCLR example, plain PyTorch: decode JPEGs every epoch, two forward passes."""
    from lightly.transforms import SimCLRTransform
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset

    class JpegFolder(Dataset):
        def __init__(self, paths: list[Path], transform: Any) -> None:
            self.paths, self.transform = paths, transform

        def __len__(self) -> int:
            return len(self.paths)

        def __getitem__(self, i: int) -> tuple[Any, int]:
            with Image.open(self.paths[i]) as image:
                return self.transform(image.convert("RGB")), 0

    # The same view parameters as ssl.transforms.PretrainAugmentConfig's defaults at <= 64 px (blur off).
    transform = SimCLRTransform(input_size=args.image_size, cj_prob=0.8, cj_bright=0.4, cj_contrast=0.4, cj_sat=0.3,
                                cj_hue=0.02, min_scale=0.2, random_gray_scale=0.1, gaussian_blur=0.0,
                                vf_prob=0.5, hf_prob=0.5, rr_prob=0.5, rr_degrees=180.0)
    paths = sorted((Path(args.root) / "images").glob("*.jpg"))
    loader = DataLoader(JpegFolder(paths, transform), batch_size=args.batch_size, shuffle=True, drop_last=True,
                        num_workers=args.workers, persistent_workers=args.workers > 0)
    model, criterion, optimizer = _simclr_model(args)
    model.train()
    loop, step = TimedLoop(WARMUP_STEPS), 0
    while step < args.steps:
        for (x0, x1), _ in loader:  # x0, x1: (B, 3, S, S) views
            with autocast(args.precision):
                z0, z1 = model(x0), model(x1)
                loss = float32_call(criterion, z0, z1)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loop.step_done(x0.shape[0])
            step += 1
            if step >= args.steps:
                break
    return {"images_per_second": loop.images_per_second()}


# ----------------------------------------------------------------------------------------------
# Memory sampling of a process tree
def _children_map() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        tree.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return tree


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


class PeakTreeMemory(threading.Thread):
    """Samples the summed PSS of a process and its descendants; ``peak_mib`` after ``stop()``."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak_mib = pid, interval, 0.0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            tree, todo, total = _children_map(), [self.pid], 0
            while todo:
                pid = todo.pop()
                total += _pss_kib(pid)
                todo.extend(tree.get(pid, []))
            self.peak_mib = max(self.peak_mib, total / 1024)
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def _run_measured(command: list[str]) -> tuple[subprocess.CompletedProcess[str], float]:
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = PeakTreeMemory(process.pid)
    sampler.start()
    stdout, stderr = process.communicate()
    sampler.stop()
    done = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{stderr[-3000:]}")
    return done, sampler.peak_mib


def measure_child(args: argparse.Namespace, role: str) -> dict[str, float]:
    """Runs ``run_reference`` or ``run_compute_only`` in a fresh process; images/s and peak PSS."""
    command = [sys.executable, "-m", "bench.ssl_throughput", "--role", role, *_shared_args(args)]
    done, peak = _run_measured(command)
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "peak_mib": peak}


def measure_ours(args: argparse.Namespace, out_dir: Path, augment_on: str = "workers") -> dict[str, float]:
    """``ssl.pretrain`` in a fresh process with ``data.augment_on=augment_on``; images/s and peak PSS."""
    workers = args.workers if args.ours_workers < 0 else args.ours_workers
    if augment_on == "device":
        workers = args.device_workers
    command = [sys.executable, "-m", "ssl.pretrain", "--data", "ham10000", "--root", args.root,
               "--backbone", args.backbone, "--image-size", str(args.image_size), "--batch-size", str(args.batch_size),
               "--workers", str(workers), "--max-steps", str(args.steps), "--out", str(out_dir),
               f"data.augment_on={augment_on}",
               "--small-stem" if args.small_stem else "--no-small-stem", "monitor.every_n_epochs=0",
               "trainer.accelerator=cpu", f"trainer.precision={args.precision}", "trainer.log_every_n_steps=50"]
    _, peak = _run_measured(command)
    summary = json.loads((out_dir / "summary.json").read_text())
    return {"images_per_second": summary["images_per_second"], "peak_mib": peak}


def _shared_args(args: argparse.Namespace) -> list[str]:
    return ["--root", args.root, "--backbone", args.backbone, "--image-size", str(args.image_size),
            "--batch-size", str(args.batch_size), "--workers", str(args.workers), "--steps", str(args.steps),
            "--precision", args.precision, *(["--small-stem"] if args.small_stem else [])]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.ssl_throughput", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=default_ham10000_root(), help="HAM10000 folder (with images/*.jpg)")
    parser.add_argument("--backbone", default="resnet18", help="backbone registry name, same for both loops")
    parser.add_argument("--small-stem", action="store_true", help="small-image stem for both loops")
    parser.add_argument("--image-size", type=int, default=64, help="view side in px")
    parser.add_argument("--batch-size", type=int, default=64, help="images per step")
    parser.add_argument("--workers", type=int, default=2, help="data-loader workers of the reference loop")
    parser.add_argument("--ours-workers", type=int, default=-1,
                        help="data-loader workers of ssl.pretrain (-1: the same as --workers)")
    parser.add_argument("--device-workers", type=int, default=1,
                        help="data-loader workers of ssl.pretrain with data.augment_on=device (they only copy "
                             "uint8 rows of the cache)")
    parser.add_argument("--steps", type=int, default=40, help=f"steps per measurement (the first {WARMUP_STEPS} untimed)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="interleaved rounds (reference, ours, ours on the device, then the compute-only "
                             "ceiling)")
    parser.add_argument("--precision", choices=PRECISIONS, default="32-true",
                        help="precision of every loop: 32-true (float32) or bf16-mixed (forward pass autocast to "
                             "bfloat16, where the CPU or GPU supports it, NT-Xent in float32; ssl.pretrain gets "
                             "trainer.precision=bf16-mixed)")
    parser.add_argument("--json", default="runs/bench/ssl_throughput.json", help="where to write the results")
    parser.add_argument("--role", choices=["compare", "reference", "compute"], default="compare", help=argparse.SUPPRESS)
    return parser


@entry_point
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.role != "compare":
        print(json.dumps(run_reference(args) if args.role == "reference" else run_compute_only(args)))
        return 0
    if not (Path(args.root) / "images").is_dir():
        raise SystemExit(f"{args.root}/images not found: pass --root with the HAM10000 folder.")
    # compute: the same step with no data loading at all, the ceiling any data pipeline can reach.
    results: dict[str, list[dict[str, float]]] = {"reference": [], "ours": [], "device": [], "compute": []}
    with tempfile.TemporaryDirectory(prefix="ssl-throughput-") as tmp:
        for round_index in range(args.rounds):
            console.print(f"round {round_index + 1}/{args.rounds}: reference loop ...")
            results["reference"].append(measure_child(args, "reference"))
            console.print(f"round {round_index + 1}/{args.rounds}: ssl.pretrain ...")
            results["ours"].append(measure_ours(args, Path(tmp) / f"run{round_index}"))
            console.print(f"round {round_index + 1}/{args.rounds}: ssl.pretrain data.augment_on=device ...")
            results["device"].append(measure_ours(args, Path(tmp) / f"device{round_index}", "device"))
            console.print(f"round {round_index + 1}/{args.rounds}: compute only (no data loading) ...")
            results["compute"].append(measure_child(args, "compute"))
    mean = {name: sum(r["images_per_second"] for r in runs) / len(runs) for name, runs in results.items()}
    rows = [[name, mean[name], mean[name] / mean["reference"], min(r["images_per_second"] for r in runs),
             max(r["images_per_second"] for r in runs), max(r["peak_mib"] for r in runs)]
            for name, runs in results.items()]
    speedup, ceiling = mean["ours"] / mean["reference"], mean["compute"] / mean["reference"]
    device_share = mean["device"] / mean["compute"]  # target >= 0.95
    print_table(f"SimCLR pretraining, {args.backbone}{' small stem' if args.small_stem else ''}, {args.image_size} px, "
                f"batch {args.batch_size}, {args.precision}; speed-up {speedup:.2f}x "
                f"(ceiling without data loading {ceiling:.2f}x); device path {device_share:.0%} of the ceiling",
                ["loop", "images/s (mean)", "x reference", "min", "max", "peak PSS MiB"], rows)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "results": results, "speedup": speedup, "ceiling": ceiling,
                               "device_share_of_ceiling": device_share,
                               "date": time.strftime("%Y-%m-%d %H:%M %Z")}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
