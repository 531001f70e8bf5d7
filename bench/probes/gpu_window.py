"""The prepared run for a lent GPU: ``bash bench/gpu_window.sh`` (``python -m bench.gpu_window`` once set up).

A GPU is lent for minutes (15 of device time, start-up and the return of results included). This
command spends them in three phases, one after the other, and writes everything into one folder,
``docs/results/gpu-<date>/`` (``--out``):

1. ``gpu-check``: ``python -m bench.gpu_check`` (speeds, data wait, peak memory of each stage's GPU path;
   ``--check-parts``, within ``--check-budget`` seconds) -> ``gpu_check/``;
2. ``gpu-quick``: the evidence grid, ``python -m bench.label_efficiency --preset gpu-quick`` (HAM10000 at
   64 px, ResNet-18, SimCLR then 1/10/100% labels x random/SimCLR x 3 seeds) -> ``gpu-quick/`` (report,
   results.csv, each finished cell's metrics and predictions);
3. ``gpu-r50-128``, if at least ``--min-last-seconds`` are left: SimCLR against random at 10% labels, 128
   px, ResNet-50, 3 seeds (``--preset gpu-r50-128``) -> ``gpu-r50-128/``.

Everything stops at the deadline (``--deadline``, seconds since the epoch, which ``gpu_window.sh`` sets
from its own start so that setting up the environment counts; else ``--seconds`` from now): a phase
still running ``--reserve`` seconds before it is sent SIGTERM (the grid stops its steps, each saving its
state, and exports the cells that finished; ``bench.gpu_check`` records the parts it measured), killed
if it has not ended ``STOP_GRACE_S`` later, and a stopped grid's finished cells get their report
(``--report-only``). Then ``README.md`` and ``summary.json`` say what finished and what did not (one
line), with each stage's speed and share of step time waiting for data (``dermkit.throughput.StepTimer``
in every stage: ``gpu_check.json``, the pretraining's ``summary.json``, each cell's ``metrics.json``).
The grids' run folders (checkpoints) stay in ``--runs``; ``--copy-to`` copies the results folder there
too (the device tool's ``$OUT``).

``--tiny`` is the CPU dry run: demo data, ``tiny_cnn`` at 32 px, a few steps per stage, the same phases,
deadline and files (the tests run it).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from dermkit.config import REPO_ROOT, default_ham10000_root
from dermkit.console import console, entry_point
from dermkit.errors import DermkitError
from dermkit.resume import runs_dir
from dermkit.runinfo import check_out_dir

PROG = "python -m bench.gpu_window"
POLL_S = 1.0
STOP_GRACE_S = 25.0  # after SIGTERM: a grid stops its steps (each saves a checkpoint) and exports
# The window's check: the SimCLR paths compared and the fine-tuning parts (sampling speed: --check-parts adds
# synth_sampling); four parts in --check-budget's 150 s leave the grid most of the window.
CHECK_PARTS = "simclr_device,simclr_resident,finetune_resnet50,finetune_resnet18"
TINY_CHECK_PARTS = "simclr_resident"
# The CPU dry run's grids: demo data, tiny_cnn at 32 px, one seed, one fraction, a few steps per stage.
TINY_GRID = ["data.name=demo", "data.image_size=32", "data.batch_size=16", "model.backbone=tiny_cnn",
             "model.small_stem=true", "grid.fractions=[0.1]", "grid.seeds=[0]",
             "pretrain.overrides=[trainer.accelerator=cpu, trainer.max_steps=2, monitor.every_n_epochs=0]",
             "pretrain.method_overrides={simclr: [trainer.max_epochs=1]}",
             "finetune.overrides=[trainer.accelerator=cpu, trainer.limit_train_batches=2, optim.head_epochs=0, "
             "report.explain=0, report.bootstrap=100]",
             'finetune.fraction_overrides={"0.1": [trainer.max_epochs=1]}', "run.jobs=2", "report.n_bootstrap=200"]
PARTIAL_REPORT = ["report.n_bootstrap=1000"]  # a stopped grid's report: fewer replicates, it must fit the reserve


@dataclass
class Phase:
    """One phase of the window: a command and where its results go.

    Attributes:
        name: ``gpu-check``, ``gpu-quick`` or ``gpu-r50-128``.
        title: what it is, for the summary.
        command: the command line (run from the repository root, in its own process group).
        results: the folder (inside the window's folder) its results are written to.
        min_seconds: start only with at least this long before the stop time.
        report_command: for a grid, the ``--report-only`` command run after a stop (its finished cells).
        runs: a grid's run folder (its pretraining's ``summary.json`` is read from there).
        status: ``finished``, ``failed (exit status N)``, ``stopped at the deadline`` or ``not started: why``.
        seconds: wall time it ran.
        notes: what else happened (the partial report).
    """

    name: str
    title: str
    command: list[str]
    results: Path
    min_seconds: float = 0.0
    report_command: list[str] = field(default_factory=list)
    runs: Path | None = None
    status: str = "not started"
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.status == "finished"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--deadline", type=float, default=0.0,
                        help="stop time, seconds since the epoch (gpu_window.sh passes its start + its window)")
    parser.add_argument("--seconds", type=float, default=540.0, help="without --deadline: the window, from now")
    parser.add_argument("--reserve", type=float, default=45.0,
                        help="seconds before the deadline at which a running phase is stopped (stopping, the partial "
                             "report and the summary fit in them)")
    parser.add_argument("--out", default="", help="results folder (default docs/results/gpu-<date>)")
    parser.add_argument("--runs", default="", help="the grids' run folders (default $DERMKIT_RUNS/gpu-window)")
    parser.add_argument("--copy-to", default="", help="also copy the results folder into this folder at the end")
    parser.add_argument("--phases", default="gpu-check,gpu-quick,gpu-r50-128", help="the phases to run, in order")
    parser.add_argument("--check-parts", default="", help=f"bench.gpu_check --parts (default {CHECK_PARTS}; "
                        f"--tiny {TINY_CHECK_PARTS})")
    parser.add_argument("--check-budget", type=float, default=150.0, help="bench.gpu_check --budget, seconds")
    parser.add_argument("--check-steps", type=int, default=40, help="bench.gpu_check --steps (training parts)")
    parser.add_argument("--min-last-seconds", type=float, default=120.0,
                        help="start gpu-r50-128 only with at least this long left")
    parser.add_argument("--root", default="", help="HAM10000 folder (default $DERMKIT_HAM10000 or "
                        "../shared/data/ham10000)")
    parser.add_argument("--grid-override", action="append", default=[], metavar="KEY=VALUE",
                        help="a bench.label_efficiency override added to both grids (repeatable), e.g. "
                             "'grid.seeds=[0]'")
    parser.add_argument("--tiny", action="store_true", help="CPU dry run: demo data, tiny sizes, the same phases")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.deadline = args.deadline or time.time() + args.seconds
    args.phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = [p for p in args.phases if p not in ("gpu-check", "gpu-quick", "gpu-r50-128")]
    if unknown or not args.phases:
        raise DermkitError(f"--phases: choose among gpu-check, gpu-quick, gpu-r50-128 (unknown: {unknown}).")
    if args.reserve < 0 or args.check_budget <= 0:
        raise DermkitError("--reserve must be >= 0 and --check-budget > 0.")
    args.out = Path(args.out) if args.out else default_out()
    check_out_dir(args.out, "--out")
    args.runs = Path(args.runs) if args.runs else runs_dir() / "gpu-window" / args.out.name
    return args


def default_out() -> Path:
    """``docs/results/gpu-<date>`` (UTC), or ``...-<time>`` when a window of that day is already there."""
    day = time.strftime("%Y-%m-%d", time.gmtime())
    out = REPO_ROOT / "docs" / "results" / f"gpu-{day}"
    return out if not out.exists() else out.with_name(f"gpu-{day}-{time.strftime('%H%M', time.gmtime())}")


def data_args(args: argparse.Namespace) -> list[str]:
    """The grids' data overrides: HAM10000's folder, checked now (the dry run: the demo data)."""
    if args.tiny:
        return []
    root = Path(args.root or default_ham10000_root())
    if not (root / "HAM10000_metadata.csv").is_file():
        raise DermkitError(f"{root}/HAM10000_metadata.csv not found: pass --root with the HAM10000 folder or set "
                           "$DERMKIT_HAM10000.")
    return [f"data.root={root}"]


def grid_phase(args: argparse.Namespace, preset: str, title: str, min_seconds: float = 0.0) -> Phase:
    """A ``bench.label_efficiency`` phase exporting into ``<out>/<preset>``."""
    results = args.out / preset
    runs = args.runs / preset
    grid = [sys.executable, "-m", "bench.label_efficiency", "--preset", preset, "--out", str(runs), "--export",
            str(results), *data_args(args), *(TINY_GRID if args.tiny else []), *args.grid_override]
    return Phase(preset, title, grid, results, min_seconds, [*grid, "--report-only", *PARTIAL_REPORT], runs)


def plan(args: argparse.Namespace) -> list[Phase]:
    """The phases of ``--phases``, in order."""
    check = [sys.executable, "-m", "bench.gpu_check", "--out", str(args.out / "gpu_check"),
             "--parts", args.check_parts or (TINY_CHECK_PARTS if args.tiny else CHECK_PARTS),
             "--budget", f"{args.check_budget:g}", "--steps", str(min(args.check_steps, 8) if args.tiny else args.check_steps)]
    check += (["--tiny", "--device", "cpu", "--data", "demo"] if args.tiny else
              ["--device", "cuda", *(["--root", args.root] if args.root else [])])
    phases = {
        "gpu-check": Phase("gpu-check", "bench.gpu_check: each stage's GPU path (speed, data wait, memory)", check,
                           args.out / "gpu_check", min_seconds=args.check_budget),
        "gpu-quick": grid_phase(args, "gpu-quick", "the evidence grid, 64 px, ResNet-18, 18 cells"),
        "gpu-r50-128": grid_phase(args, "gpu-r50-128", "SimCLR against random at 10% labels, 128 px, ResNet-50, "
                                  "3 seeds", args.min_last_seconds),
    }
    return [phases[name] for name in args.phases]


class Log:
    """The window's own log (``window.log``), each line timed from the start, also on the console."""

    def __init__(self, path: Path, started: float) -> None:
        self.file: TextIO = path.open("a")
        self.started = started

    def __call__(self, line: str) -> None:
        text = f"[{time.time() - self.started:6.0f} s] {line}"
        self.file.write(text + "\n")
        self.file.flush()
        console.print(text, highlight=False, markup=False)


def run_until(command: list[str], log_path: Path, stop_at: float, env: dict[str, str] | None = None) -> str:
    """Run ``command`` from the repository root until it ends or ``stop_at`` (seconds since the epoch).

    At ``stop_at`` the process is sent SIGTERM (a grid or ``bench.gpu_check`` stops its own stages
    cleanly) and, if it has not ended :data:`STOP_GRACE_S` later, killed with its process group.

    Returns:
        ``finished``, ``failed (exit status N)`` or ``stopped at the deadline``.
    """
    with log_path.open("a") as out:
        out.write(f"$ {shlex.join(command)}\n")
        out.flush()
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        while True:
            try:
                status = process.wait(timeout=max(min(POLL_S, stop_at - time.time()), 0.01))
                return "finished" if status == 0 else f"failed (exit status {status})"
            except subprocess.TimeoutExpired:
                if time.time() < stop_at:
                    continue
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            return "stopped at the deadline"


def run_phase(phase: Phase, logs: Path, stop_at: float, deadline: float, log: Log) -> None:
    """Run one phase if there is time for it, then (a stopped grid) the report of its finished cells."""
    left = stop_at - time.time()
    if left < phase.min_seconds or left <= 0:
        phase.status = f"not started: {max(left, 0):.0f} s left before the stop, it needs {phase.min_seconds:.0f} s"
        log(f"{phase.name}: {phase.status}")
        return
    log(f"{phase.name}: started ({phase.title}); stops at the latest in {left:.0f} s")
    started = time.time()
    phase.status = run_until(phase.command, logs / f"{phase.name}.log", stop_at)
    phase.seconds = time.time() - started
    log(f"{phase.name}: {phase.status} after {phase.seconds:.0f} s")
    if phase.report_command and not phase.finished:
        # The cells that finished before the stop: their report, in the time kept for it.
        result = run_until(phase.report_command, logs / f"{phase.name}.report.log", deadline - 5.0)
        note = ("report of the finished cells written" if result == "finished" else
                f"no report of finished cells ({result}: none finished, or no time; see logs/{phase.name}.report.log)")
        phase.notes.append(note)
        log(f"{phase.name}: {note}")


def collect_pretraining(phase: Phase) -> None:
    """Copy each pretraining's ``summary.json`` of a grid's run folder into its results (the export holds cells)."""
    if phase.runs is None:
        return
    for summary in sorted((phase.runs / "pretrain").glob("*/summary.json")):
        phase.results.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(summary, phase.results / f"pretrain_{summary.parent.name}_summary.json")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@dataclass
class StageSpeed:
    """One row of the speed table: a stage of a phase, its images/s and share of step time waiting for data."""

    phase: str
    stage: str
    runs: int
    images_per_second: float | None
    data_wait_fraction: float | None
    peak_gpu_memory_mib: float | None


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def stage_speeds(phases: list[Phase]) -> list[StageSpeed]:
    """Speed and data wait of every stage that ran: ``bench.gpu_check``'s parts, each grid's pretraining and its
    cells per label fraction (medians over the cells)."""
    rows: list[StageSpeed] = []
    for phase in phases:
        check = _read_json(phase.results / "gpu_check.json")
        for name, part in (check or {}).get("parts", {}).items():
            if "images_per_second" in part:
                rows.append(StageSpeed(phase.name, f"{name} ({part.get('setting', '')})", 1, part["images_per_second"],
                                       part.get("data_wait_fraction"), part.get("peak_gpu_memory_mib")))
        for summary_path in sorted(phase.results.glob("pretrain_*_summary.json")):
            summary = _read_json(summary_path) or {}
            rows.append(StageSpeed(phase.name, f"ssl.pretrain {summary_path.stem.split('_')[1]}", 1,
                                   summary.get("images_per_second"), summary.get("data_wait_fraction"),
                                   summary.get("peak_gpu_memory_mib")))
        by_fraction: dict[str, list[dict[str, Any]]] = {}
        for metrics_path in sorted(phase.results.glob("cells/*/metrics.json")):
            metrics = _read_json(metrics_path) or {}
            by_fraction.setdefault(str(metrics.get("fraction", "?")), []).append(metrics)
        for fraction, cells in sorted(by_fraction.items()):
            rows.append(StageSpeed(phase.name, f"finetune.train, {fraction} of the labels (median of cells)",
                                   len(cells), _median([c.get("train_images_per_second") for c in cells]),
                                   _median([c.get("train_data_wait_fraction") for c in cells]),
                                   _median([c.get("peak_gpu_memory_mib") for c in cells])))
    return rows


def unfinished_line(phases: list[Phase]) -> str:
    """The one line saying what did not finish (or that everything did)."""
    left = [f"{p.name} ({p.status})" for p in phases if not p.finished]
    return "Did not finish: " + "; ".join(left) + "." if left else "Every phase finished."


def _fmt(value: float | None, digits: int = 0, share: bool = False) -> str:
    if value is None or (value == 0 and not share):  # StepTimer's 0 images/s: too few steps to time
        return "n/a"
    return f"{100 * value:.1f}%" if share else f"{value:,.{digits}f}"


def write_summary(args: argparse.Namespace, phases: list[Phase], started: float, device: str) -> None:
    """``summary.json`` and ``README.md`` of the results folder."""
    speeds = stage_speeds(phases)
    unfinished = unfinished_line(phases)
    command = f"{PROG} {shlex.join(args.argv)}".strip()
    summary = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)), "device": device,
               "command": command, "tiny": args.tiny, "seconds": round(time.time() - started, 1),
               "deadline_in_seconds": round(args.deadline - started, 1), "unfinished": unfinished,
               "phases": [{**{k: v for k, v in asdict(p).items() if k not in ("command", "report_command")},
                           "results": str(p.results.relative_to(args.out)), "runs": str(p.runs) if p.runs else None,
                           "command": shlex.join(p.command)} for p in phases],
               "stage_speeds": [asdict(s) for s in speeds]}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = [f"# GPU window, {summary['date']}{' (CPU dry run, tiny sizes)' if args.tiny else ''}", "",
             f"Device: {device}. Command: `{command}`, {summary['seconds']:.0f} s of a "
             f"{summary['deadline_in_seconds']:.0f}-s window.", "", f"**{unfinished}**", "",
             "| phase | what | status | wall s | results |", "|---|---|---|---|---|"]
    lines += [f"| {p.name} | {p.title} | {p.status}{'; ' + '; '.join(p.notes) if p.notes else ''} | "
              f"{p.seconds:.0f} | [`{p.results.name}/`]({p.results.name}/) |" for p in phases]
    lines += ["", "## Speed and data wait per stage", "",
              "Steady-state training images/s and the share of step time spent waiting for data "
              "(`dermkit.throughput.StepTimer`: on a GPU, CUDA events between the end of one step's work and the "
              "start of the next's), peak GPU memory (MiB).", "",
              "| phase | stage | runs | images/s | data wait | peak GPU MiB |", "|---|---|---|---|---|---|"]
    lines += [f"| {s.phase} | {s.stage} | {s.runs} | {_fmt(s.images_per_second)} | "
              f"{_fmt(s.data_wait_fraction, share=True)} | {_fmt(s.peak_gpu_memory_mib)} |" for s in speeds]
    if not speeds:
        lines.append("| (none: no stage finished) | | | | | |")
    lines += ["", "Commands of each phase: `summary.json`; their output: `logs/`; the window's own log: "
              "`window.log`.", ""]
    (args.out / "README.md").write_text("\n".join(lines))


def device_name(tiny: bool) -> str:
    """The GPU's name and memory from ``nvidia-smi``, or ``CPU``."""
    if tiny or shutil.which("nvidia-smi") is None:
        return "CPU"
    try:
        text = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "GPU (nvidia-smi did not answer)"
    return text.splitlines()[0] if text else "GPU (nvidia-smi said nothing)"


def run_window(args: argparse.Namespace, phases: list[Phase]) -> list[Phase]:
    """Run the phases in order until the deadline; write the summary; copy the results if asked."""
    started = time.time()
    logs = args.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = Log(args.out / "window.log", started)
    stop_at = args.deadline - args.reserve
    log(f"results in {args.out}; deadline in {args.deadline - started:.0f} s, phases stopped "
        f"{args.reserve:.0f} s before it")
    try:
        for phase in phases:
            run_phase(phase, logs, stop_at, args.deadline, log)
            collect_pretraining(phase)
    finally:
        write_summary(args, phases, started, device_name(args.tiny))
        log(unfinished_line(phases))
        if args.copy_to:
            target = Path(args.copy_to) / args.out.name
            shutil.copytree(args.out, target, dirs_exist_ok=True)
            log(f"copied to {target}")
    return phases


@entry_point
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    phases = plan(args)
    run_window(args, phases)
    return 0 if all(p.finished for p in phases) else 3


if __name__ == "__main__":
    raise SystemExit(main())
