"""One GPU check: ``python -m bench.gpu_check`` (SimCLR, sampling and fine-tuning speed, peak memory).

For the first session that has a GPU: one command, under 8 minutes on one GPU, that measures

* ``simclr_workers`` / ``simclr_device`` / ``simclr_resident``: ``ssl.pretrain`` SimCLR, ResNet-50 at
  224 px, bf16-mixed, with ``data.augment_on=workers``, ``device`` and ``resident``: training images/s,
  the share of step time spent waiting for data, peak GPU memory (read from the run's ``summary.json``);
* ``synth_sampling``: ``bench.synth_speed`` on a random-init ``base`` generator: DDIM-50 and
  DPM-Solver++-20 (synth.generate's default) against DDPM-1000 images/s (classifier-free guidance)
  and peak GPU memory (its ``--json`` file);
* ``finetune_resnet50`` / ``finetune_resnet18``: ``finetune.train`` in bf16-mixed, ResNet-50 at 224
  px and ResNet-18 at 64 px (``--finetune-augment-on``, default ``resident``): training images/s, data
  wait, peak GPU memory (its ``metrics.json``).

``--parts`` runs some of them only (``bench.gpu_window`` gives the check a share of a lent GPU's minutes).

Each part is a subprocess of the stage's own command line, in a fresh run folder (deleted at the
end; each part's output goes to ``OUT/logs/<part>.log``), one after the other so that they do not
share the GPU. The stages' configs are resolved by their own schemas first (``--check-configs``),
so a bad key fails in seconds. Speeds are steady state (the stages' ``dermkit.throughput.StepTimer``:
after 5 warm-up steps, epoch boundaries excluded). Results: ``OUT/gpu_check.json`` and
``OUT/gpu_check.md`` (a markdown table); a failed or stopped part is recorded with its log and the
others still run.

Sizing for under 8 minutes on one H200-class GPU with 16 CPU cores and HAM10000: each training part
runs a fixed number of optimiser steps (``--steps``, 60: ~50 timed after the warm-up and the epoch
boundaries), and all parts share ``--budget`` (450 s): a part is stopped when it would leave less
than 30 s to each part after it, so the check ends within 7.5 minutes plus the config check and
start-up (~20 s). (The resident SimCLR part, added since, shares the same budget.) Expected, not yet measured: SimCLR ResNet-50 at batch 256 (512 views of 224 px,
~6 TFLOP per step) 0.2-0.4 s per step, i.e. 60 steps in 15-25 s plus ~20-40 s of start-up, image
cache (HAM10000 decoded at 224 px on all cores, first run only) and checkpoints; DDPM-1000 at batch
32 with guidance is 1000 UNet passes of 64 images, 20-40 s, DDIM-50 a twentieth of that; each
fine-tuning part 60 steps plus one pass over the test split, well under a minute.

Example::

    python -m bench.gpu_check                      # HAM10000 ($DERMKIT_HAM10000), the GPU
    python -m bench.gpu_check --data demo          # the demo data
    python -m bench.gpu_check --device cpu --tiny  # tiny sizes on CPU (tiny_cnn, 32 px, tiny UNet)
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dermkit.config import default_ham10000_root
from dermkit.console import console, entry_point, print_table
from dermkit.errors import DermkitError
from dermkit.resume import runs_dir
from dermkit.runinfo import check_out_dir
from bench.grid.dry_run import check_stage_configs
from bench.grid.keys import Step
from bench.grid.runner import sigterm_as_interrupt

DATA_CHOICES = ("ham10000", "demo")
STAGE_MODULES = ("ssl.pretrain", "finetune.train")  # parts whose configs --check-configs resolves
MIN_PART_SECONDS = 30.0  # of the --budget, kept for each part still to run
SIMCLR_PATHS = ("workers", "device", "resident")  # data.augment_on of the SimCLR parts
PART_NAMES = (*(f"simclr_{path}" for path in SIMCLR_PATHS), "synth_sampling", "finetune_resnet50", "finetune_resnet18")


@dataclass
class Part:
    """One measurement: a command and how to read its result files.

    Attributes:
        name: key in the JSON (``simclr_workers``, ...).
        title: what the table row says.
        setting: model, size, batch and steps, as the table shows them.
        module, args: the command line ``python -m <module> <args>``.
        read: run folder -> the measured values.
        run_dir: the folder the command writes.
        results: what :func:`run_part` measured (``seconds``, ``log``, the read values or ``error``).
    """

    name: str
    title: str
    setting: str
    module: str
    args: list[str]
    read: Callable[[Path], dict[str, Any]]
    run_dir: Path
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def command(self) -> list[str]:
        return [sys.executable, "-m", self.module, *self.args]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="ham10000", choices=DATA_CHOICES, help="dataset the stages train on")
    parser.add_argument("--root", default="",
                        help="HAM10000 folder (default: $DERMKIT_HAM10000 or ../shared/data/ham10000)")
    parser.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"),
                        help="where to train (auto: cuda when available)")
    parser.add_argument("--tiny", action="store_true",
                        help="tiny sizes for a CPU test: tiny_cnn at 32 px, batch 8, tiny UNet at 16 px, few steps")
    parser.add_argument("--steps", type=int, default=0,
                        help="optimiser steps of each training part (default 60, --tiny 8; the first 5 are not timed)")
    parser.add_argument("--ssl-batch-size", type=int, default=256, help="SimCLR images per step (2 views each)")
    parser.add_argument("--finetune-batch-size", type=int, default=128, help="fine-tuning images per step")
    parser.add_argument("--synth-batch-size", type=int, default=32, help="images per sampling batch")
    parser.add_argument("--workers", type=int, default=-1,
                        help="data-loader workers (default: CPU cores - 2, --tiny 0)")
    parser.add_argument("--finetune-augment-on", default="resident", choices=("resident", "device", "workers"),
                        help="data.augment_on of the fine-tuning parts")
    parser.add_argument("--parts", default=",".join(PART_NAMES),
                        help=f"comma-separated parts to run, of {', '.join(PART_NAMES)} (default: all)")
    parser.add_argument("--budget", type=float, default=450.0,
                        help="seconds for all parts together; a part is stopped when it would leave less than "
                             f"{MIN_PART_SECONDS:g} s to each part after it")
    parser.add_argument("--out", default=str(runs_dir() / "bench" / "gpu_check"),
                        help="folder for gpu_check.json, gpu_check.md and logs/")
    args = parser.parse_args(argv)
    if args.steps < 0 or min(args.ssl_batch_size, args.finetune_batch_size, args.synth_batch_size) < 2:
        raise DermkitError("--steps must be >= 0 and the batch sizes >= 2.")
    args.parts = [name.strip() for name in args.parts.split(",") if name.strip()]
    unknown = [name for name in args.parts if name not in PART_NAMES]
    if unknown or not args.parts:
        raise DermkitError(f"--parts {','.join(args.parts)}: choose among {', '.join(PART_NAMES)} "
                           f"({'unknown: ' + ', '.join(unknown) if unknown else 'none given'}).")
    if args.budget < len(args.parts) * MIN_PART_SECONDS:
        raise DermkitError(f"--budget {args.budget:g}: the {len(args.parts)} parts need at least "
                           f"{len(args.parts) * MIN_PART_SECONDS:g} s.")
    check_out_dir(args.out, "--out")
    return args


def resolve_device(choice: str) -> str:
    """``cuda`` or ``cpu``; asking for cuda without one is an error."""
    import torch  # here, so that --help does not import torch

    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and not torch.cuda.is_available():
        raise DermkitError("--device cuda: torch sees no CUDA device here; use --device cpu (with --tiny) or a "
                           "GPU machine.")
    return choice


def data_args(args: argparse.Namespace) -> list[str]:
    """The stages' data flags; HAM10000 must be there."""
    if args.data == "demo":
        return ["--data", "demo"]
    root = Path(args.root or default_ham10000_root())
    if not (root / "HAM10000_metadata.csv").is_file():
        raise DermkitError(f"{root}/HAM10000_metadata.csv not found: pass --root with the HAM10000 folder, set "
                           "$DERMKIT_HAM10000, or use --data demo.")
    return ["--data", "ham10000", "--root", str(root)]


# ----------------------------------------------------------------------------------------------
# Reading each part's result files
def read_pretrain(run_dir: Path) -> dict[str, Any]:
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"images_per_second": summary["images_per_second"], "data_wait_fraction": summary["data_wait_fraction"],
            "peak_gpu_memory_mib": summary["peak_gpu_memory_mib"], "steps": summary["global_step"]}


def read_finetune(run_dir: Path) -> dict[str, Any]:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {"images_per_second": metrics["train_images_per_second"],
            "data_wait_fraction": metrics["train_data_wait_fraction"],
            "peak_gpu_memory_mib": metrics["peak_gpu_memory_mib"]}


def _samplers(results: dict[str, Any], suffix: str) -> list[str]:
    """The samplers a results dict holds a speed of, from its keys ``<sampler><suffix>`` (e.g.
    synth.speed's ``ddim_images_per_s``): whichever synth.speed timed, without a list kept here."""
    return [key.removesuffix(suffix) for key in results if key.endswith(suffix)]


def read_synth(run_dir: Path) -> dict[str, Any]:
    speed = json.loads((run_dir / "synth_speed.json").read_text())
    samplers = _samplers(speed, "_images_per_s")
    return {**{f"{name}_images_per_second": speed[f"{name}_images_per_s"] for name in samplers},
            **{f"{name}_steps": speed[f"{name}_steps"] for name in samplers},
            "ddim_over_ddpm": speed["ddim_images_per_s"] / speed["ddpm_images_per_s"],
            "train_steps_per_second": speed["train_steps_per_s"], "peak_gpu_memory_mib": speed["peak_gpu_memory_mib"]}


# ----------------------------------------------------------------------------------------------
# The plan
def plan(args: argparse.Namespace, device: str, work: Path) -> list[Part]:
    """The parts of ``--parts`` (all by default), sized for one GPU (or tiny with ``--tiny``), writing below
    ``work``."""
    tiny = args.tiny
    steps = args.steps or (8 if tiny else 60)
    workers = args.workers if args.workers >= 0 else (0 if tiny else max(1, (os.cpu_count() or 2) - 2))
    ssl_batch, ft_batch, synth_batch = ((8, 8, 2) if tiny else
                                        (args.ssl_batch_size, args.finetune_batch_size, args.synth_batch_size))
    trainer = [f"trainer.accelerator={'gpu' if device == 'cuda' else 'cpu'}", "trainer.devices=1",
               "trainer.precision=bf16-mixed", "trainer.log_every_n_steps=50"]
    data = [*data_args(args), f"data.num_workers={workers}"]
    parts = []
    backbone, size = ("tiny_cnn", 32) if tiny else ("resnet50", 224)
    for augment_on in SIMCLR_PATHS:
        run = work / f"simclr_{augment_on}"
        pretrain_args = ["--method", "simclr", *data, "--backbone", backbone, "--image-size", str(size),
                         "--batch-size", str(ssl_batch), "--max-steps", str(steps), "--out", str(run),
                         "model.small_stem=false", f"data.augment_on={augment_on}", "monitor.every_n_epochs=0",
                         *trainer]
        parts.append(Part(f"simclr_{augment_on}", f"SimCLR pretraining, augmented on {augment_on}",
                          f"{backbone} {size} px, batch {ssl_batch}, {steps} steps, {workers} workers, bf16-mixed",
                          "ssl.pretrain", pretrain_args, read_pretrain, run))
    preset, synth_size, ddim, dpm, ddpm = ("tiny", 16, 2, 2, 4) if tiny else ("base", 0, 50, 20, 1000)
    run = work / "synth_sampling"
    synth_args = ["--preset", preset, "--image-size", str(synth_size), "--batch-size", str(synth_batch),
                  "--ddim-steps", str(ddim), "--dpm-steps", str(dpm), "--ddpm-steps", str(ddpm),
                  "--train-steps", "2" if tiny else "10",
                  "--device", device, "--json", str(run / "synth_speed.json")]
    parts.append(Part("synth_sampling", f"Sampling, DDIM-{ddim} and DPM-Solver++-{dpm} against DDPM-{ddpm}",
                      f"random-init {preset} UNet{f' {synth_size} px' if synth_size else ''}, batch {synth_batch}, "
                      "guidance 3", "bench.synth_speed", synth_args, read_synth, run))
    for name, backbone, size in [("finetune_resnet50", "resnet50", 224), ("finetune_resnet18", "resnet18", 64)]:
        if tiny:  # the two parts keep their names; the setting column says what ran
            backbone, size = "tiny_cnn", 32
        run = work / name
        finetune_args = [*data, "--backbone", backbone, "--image-size", str(size), "--out", str(run),
                         f"data.batch_size={ft_batch}", f"data.augment_on={args.finetune_augment_on}",
                         "model.small_stem=false", "trainer.max_epochs=-1", f"trainer.max_steps={steps}",
                         "report.explain=0", "report.bootstrap=100", *trainer]
        parts.append(Part(name, f"Fine-tuning, augmented on {args.finetune_augment_on}",
                          f"{backbone} {size} px, batch {ft_batch}, {steps} steps, {workers} workers, bf16-mixed",
                          "finetune.train", finetune_args, read_finetune, run))
    return [part for part in parts if part.name in args.parts]


def check_stage_parts(parts: list[Part]) -> None:
    """Resolve the stage parts' configs with each stage's own schema before anything runs (a bad
    key fails in seconds, not after minutes of GPU time); :func:`bench.grid.dry_run.check_stage_configs`."""
    steps = [Step(p.name, "gpu-check", p.module, p.args, p.run_dir, ()) for p in parts if p.module in STAGE_MODULES]
    check_stage_configs(steps)


def run_part(part: Part, logs: Path, timeout: float) -> None:
    """Run one part in its own process session (killed whole after ``timeout`` seconds) and read its files."""
    log = logs / f"{part.name}.log"
    console.print(f"[bold]{part.name}[/]: {part.title} ({part.setting}) ...")
    start = time.perf_counter()
    with log.open("w") as out:
        out.write(shlex.join(part.command) + "\n\n")
        out.flush()
        process = subprocess.Popen(part.command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            status: int | None = process.wait(timeout=max(timeout, 1.0))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the stage and its data-loader workers
            process.wait()
            status = None
        except KeyboardInterrupt:  # the check itself was stopped: so is the part (its own session)
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            part.results = {"seconds": time.perf_counter() - start, "log": str(log),
                            "error": "stopped with the check (Ctrl-C or SIGTERM)"}
            raise
    part.results = {"seconds": time.perf_counter() - start, "log": str(log)}
    if status is None:
        part.results["error"] = f"stopped after {timeout:.0f} s, its share of --budget"
    elif status != 0:
        part.results["error"] = f"exit status {status}"
    else:
        part.results.update(part.read(part.run_dir))
    if "error" in part.results:
        console.print(f"[red]{part.name}: {part.results['error']}; see {log}[/]")


# ----------------------------------------------------------------------------------------------
# The report
def _number(value: Any, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _share(value: Any) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def table_rows(parts: dict[str, dict[str, Any]]) -> list[list[str]]:
    """Rows of the results table: part, setting, images/s, data wait, peak GPU MiB, wall s."""
    rows = []
    for name, part in parts.items():
        common = [_number(part.get("peak_gpu_memory_mib"), 0), _number(part["seconds"], 0)]
        if "error" in part:
            rows.append([name, part["setting"], f"failed: {part['error']}", "", *common])
        elif name == "synth_sampling":
            for sampler in _samplers(part, "_images_per_second"):
                rows.append([f"{name}: {sampler.upper()}-{part[f'{sampler}_steps']}", part["setting"],
                             _number(part[f"{sampler}_images_per_second"], 2), "n/a", *common])
        else:
            rows.append([name, part["setting"], _number(part["images_per_second"]), _share(part["data_wait_fraction"]),
                         *common])
    return rows


COLUMNS = ["part", "setting", "images/s", "data wait", "peak GPU MiB", "wall s"]


def markdown(report: dict[str, Any]) -> str:
    """``gpu_check.md``: the command, the machine and the table."""
    lines = [f"# bench.gpu_check, {report['date']}", "",
             f"Command: `{report['command']}`", "",
             f"Device: {report['device_name']}; data: {report['data']}; torch {report['torch']}.", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(report["parts"])]
    synth = report["parts"].get("synth_sampling", {})
    if "ddim_over_ddpm" in synth:
        lines += ["", f"DDIM-{synth['ddim_steps']} samples {synth['ddim_over_ddpm']:.1f}x as many images/s as "
                      f"DDPM-{synth['ddpm_steps']}."]
        if "dpm_images_per_second" in synth:
            lines += [f"DPM-Solver++-{synth['dpm_steps']} (synth.generate's default) samples "
                      f"{synth['dpm_images_per_second'] / synth['ddim_images_per_second']:.1f}x as many images/s as "
                      f"DDIM-{synth['ddim_steps']}."]
    waits = {name: report["parts"][name].get("data_wait_fraction")
             for name in (f"simclr_{path}" for path in SIMCLR_PATHS) if name in report["parts"]}
    if not report["tiny"] and waits and None not in waits.values():
        lines += ["", "Target of issue 13, SimCLR ResNet-50 224 px waiting for data < 10% of its step time: "
                      + "; ".join(f"{name} {_share(w)} ({'met' if w < 0.1 else 'not met'})"
                                  for name, w in waits.items())
                      + "."]
    lines += ["", "Data wait: share of the timed step time between the end of one training batch and the start of "
                  "the next (loading, host-to-device copy, on-device augmentation), after 5 warm-up steps; "
                  "peak GPU memory: torch.cuda.max_memory_allocated (n/a: not on a GPU).", ""]
    return "\n".join(lines)


@entry_point
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = resolve_device(args.device)
    data_args(args)  # a missing dataset fails before anything is written
    out = Path(args.out)
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    import torch

    started = time.perf_counter()
    stopped = False
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:  # run folders: checkpoints of ResNet-50s
        parts = plan(args, device, Path(tmp))
        check_stage_parts(parts)
        deadline = time.perf_counter() + args.budget
        try:
            with sigterm_as_interrupt():  # a stopped check (Ctrl-C, kill) still writes what it measured
                for index, part in enumerate(parts):
                    run_part(part, logs, deadline - time.perf_counter() - MIN_PART_SECONDS * (len(parts) - index - 1))
        except KeyboardInterrupt:
            stopped = True
            for part in parts:
                if not part.results:
                    part.results = {"seconds": 0.0, "log": "", "error": "not run: the check was stopped"}
    report = {
        "command": shlex.join(["python", "-m", "bench.gpu_check", *(sys.argv[1:] if argv is None else argv)]),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"), "device": device,
        "device_name": torch.cuda.get_device_name() if device == "cuda" else "CPU",
        "torch": torch.__version__, "data": args.data, "tiny": args.tiny,
        "total_seconds": time.perf_counter() - started,
        "parts": {p.name: {"title": p.title, "setting": p.setting, "command": shlex.join(p.command), **p.results}
                  for p in parts},
    }
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "gpu_check.md").write_text(markdown(report))
    print_table(f"bench.gpu_check on {report['device_name']} ({report['total_seconds']:.0f} s)", COLUMNS,
                table_rows(report["parts"]))
    console.print(f"Wrote {out / 'gpu_check.json'} and {out / 'gpu_check.md'}.")
    if stopped:
        console.print("[yellow]stopped[/]: the parts not finished are marked as such.")
        return 130
    failed = [p.name for p in parts if "error" in p.results]
    if failed:
        raise DermkitError(f"{len(failed)} part(s) failed ({', '.join(failed)}): see their logs in {logs}.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
