"""Run the pipeline's steps as subprocesses, inputs first, with a live rich table.

Each step runs as ``python -m <module> <args>`` with the repository root as working directory, its
output (progress bars included) going to ``stage.log`` in its folder. Up to ``jobs`` steps run at
once; a step starts when all its input steps are done. Steps already done under the same key
(:mod:`bench.grid.keys`) are skipped, so re-running the command resumes an interrupted pipeline.
:func:`run_stage` runs a single stage command in the foreground, for the smaller benchmarks.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from dermkit.config import REPO_ROOT
from dermkit.console import console
from dermkit.errors import DermkitError
from dermkit.progress_file import Progress, read_progress
from bench.grid.cost import human_seconds
from bench.grid.keys import LOG_FILE, Step, is_done, mark_done, prepare_folder, record_attempt

POLL_SECONDS = 0.5
LOG_TAIL_LINES = 15
# Without a terminal (nohup, CI) the live table is not redrawn: a plain status every this many seconds.
STATUS_EVERY_S = 600.0
RATE_WINDOW_S = 600.0  # a running step's rate and time left are those of about its last 10 minutes


@dataclass
class _Running:
    step: Step
    key: str
    process: subprocess.Popen
    log: IO[str]
    started: float
    cpu_seconds: float = 0.0
    # The readings of progress.json in this attempt, newest last, back to RATE_WINDOW_S before the newest.
    readings: deque[Progress] = field(default_factory=deque)

    def progress(self) -> str:
        """The step's ``progress.json`` in words (see :func:`progress_text`), at the rate of the last
        :data:`RATE_WINDOW_S` seconds, so a pause or a busy spell long ago does not skew it; empty
        without one."""
        now = read_progress(self.step.out_dir)
        if now is None or now.updated < self.started:  # a file left by an earlier attempt
            return ""
        if not self.readings or now.updated > self.readings[-1].updated:
            self.readings.append(now)
        while len(self.readings) > 2 and now.updated - self.readings[1].updated >= RATE_WINDOW_S:
            self.readings.popleft()
        return progress_text(now, self.readings[0])

    def reap(self) -> bool:
        """Whether the process has exited; if so, record its exit status and CPU time.

        ``os.wait4`` returns the finished child's own resource usage, so the CPU seconds (user +
        system) of each step are exact even with several steps running at once; on a shared
        machine they are a steadier measure of cost than wall time.
        """
        if self.process.returncode is not None:
            return True
        pid, status, usage = os.wait4(self.process.pid, os.WNOHANG)
        if pid == 0:
            return False
        self.process.returncode = os.waitstatus_to_exitcode(status)
        self.cpu_seconds = usage.ru_utime + usage.ru_stime
        return True

    def wait(self) -> None:
        """Block until the process has exited, recording what :meth:`reap` records."""
        while not self.reap():
            time.sleep(POLL_SECONDS / 10)


def progress_text(now: Progress, first: Progress) -> str:
    """``"step 1,234/20,000 (6%), 1.62 s/step, ~8.4 h left"``: the rate from ``first`` to ``now``
    (two readings of one attempt), omitted while they are the same."""
    unit = now.unit.removesuffix("s")
    text = f"{unit} {now.done:,}/{now.total:,} ({now.done / now.total:.0%})" if now.total else f"{unit} {now.done:,}"
    if now.done <= first.done or now.updated <= first.updated:
        return text
    per_unit = (now.updated - first.updated) / (now.done - first.done)
    rate = f"{per_unit:.2f} s/{unit}" if per_unit >= 1 else f"{1 / per_unit:.1f} {now.unit}/s"
    left = f", ~{human_seconds(per_unit * (now.total - now.done))} left" if now.total else ""
    return f"{text}, {rate}{left}"


@dataclass
class RunSummary:
    """What happened to each step.

    Attributes:
        skipped: steps already done under the same key (not run again).
        ran: steps run now, with their running time in seconds.
        failed: steps that failed, with the path of their log.
        blocked: steps not run because an input failed.
        cleared: steps whose stale folder (other settings) was removed before running.
    """

    skipped: list[str] = field(default_factory=list)
    ran: dict[str, float] = field(default_factory=dict)
    failed: dict[str, Path] = field(default_factory=dict)
    blocked: list[str] = field(default_factory=list)
    cleared: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.blocked


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill PID``), raised like Ctrl-C; unlike Ctrl-C, it did not reach the stages started."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread, so that a killed
    benchmark stops its stages instead of leaving them running, unwatched, into folders a re-run
    would resume."""
    if threading.current_thread() is not threading.main_thread():  # signal handlers: main thread only
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_stage(module: str, args: list[str], python: str = sys.executable) -> None:
    """Run one stage command, ``python -m <module> <args>``, in the foreground and wait for it.

    For the benchmarks that run a few stage commands one after the other (``bench.synth_quality``,
    ``bench.synth_speed``): bench talks to the stages only through their command lines and the files
    they write. The stage inherits this process's terminal and working directory, so its progress
    shows and relative paths in ``args`` mean what they meant to the caller.

    Args:
        module: the stage's module, e.g. ``synth.train``.
        args: its command-line arguments.
        python: the interpreter (default: this one).

    Raises:
        DermkitError: the stage exited with a non-zero status (its own message is printed above).
        KeyboardInterrupt: Ctrl-C or SIGTERM, after the stage has exited.
    """
    process = subprocess.Popen([python, "-m", module, *args])
    try:
        with sigterm_as_interrupt():
            status = process.wait()
    except KeyboardInterrupt as stop:
        # Ctrl-C reached the stage too (one process group), and it saves its state before exiting
        # (synth.train writes last.ckpt): wait for it rather than kill it mid-save. SIGTERM reached
        # only this process: pass it on, and the stage saves and exits the same way.
        if isinstance(stop, Terminated):
            process.terminate()
        process.wait()
        raise
    if status != 0:
        command = shlex.join(["python", "-m", module, *args])
        raise DermkitError(f"{command} failed (exit status {status}); its output is above.")


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a log file ('' when it cannot be read)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class Runner:
    """Runs steps in dependency order with at most ``jobs`` at a time.

    Args:
        steps: every step of the pipeline (inputs listed before the steps reading them or not).
        out_root: the benchmark's output folder (written as ``<out>`` in keys).
        data_fingerprint: the data identity that enters every key.
        jobs: steps run at the same time.
        threads: ``OMP_NUM_THREADS`` of each step (0: inherit).
        alone_kinds: kinds of step that run with nothing beside them, on ``jobs x threads`` threads
            (``threads`` 0: inherit); a ready one waits until the running steps have ended.
        start_key: when several steps are ready, they start in the order of this key, ties in step
            order (None: step order). The grid's (:func:`bench.grid.plan.start_key`) makes a
            stopped grid leave whole cells and paired seeds.
        keep_going: after a failure, keep running steps that do not depend on it.
        describe: text shown for a finished step in the live table (e.g. its balanced accuracy),
            or None for nothing.
        env: environment variables set for every step (on top of this process's environment).
        python: interpreter running the stages (default: this one).
    """

    def __init__(self, steps: list[Step], out_root: Path, data_fingerprint: dict[str, Any], jobs: int = 1,
                 threads: int = 0, alone_kinds: Collection[str] = (),
                 start_key: Callable[[Step], Any] | None = None, keep_going: bool = False,
                 describe: Callable[[Step], str | None] | None = None, env: dict[str, str] | None = None,
                 python: str = sys.executable) -> None:
        names = [s.name for s in steps]
        if len(set(names)) != len(names):
            raise ValueError(f"step names must be unique: {sorted(n for n in set(names) if names.count(n) > 1)}")
        self.steps = steps
        self.out_root = out_root
        self.data_fingerprint = data_fingerprint
        self.jobs = max(1, jobs)
        self.threads = threads
        self.alone_kinds = frozenset(alone_kinds)
        self.start_order = sorted(steps, key=start_key) if start_key else list(steps)  # stable: ties in step order
        self.keep_going = keep_going
        self.describe = describe or (lambda step: None)
        self.extra_env = dict(env or {})
        self.python = python
        self.state: dict[str, str] = {s.name: "waiting" for s in steps}
        self.keys: dict[str, str] = {}  # step name -> key, once its inputs are done
        self.finished_lines: list[str] = []
        self.started_at = time.time()

    # -- scheduling -------------------------------------------------------------------------
    def _inputs_state(self, step: Step) -> str:
        states = {self.state[s.name] for s in step.inputs}
        if states & {"failed", "blocked"}:
            return "blocked"
        return "ready" if states <= {"done", "skipped"} else "waiting"

    def _env(self, step: Step) -> dict[str, str]:
        env = {**os.environ, **self.extra_env, "PYTHONUNBUFFERED": "1"}
        if self.threads > 0:
            threads = self.threads * (self.jobs if step.kind in self.alone_kinds else 1)
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
        return env

    def _next_to_start(self, running: list[_Running]) -> Step | None:
        """The first ready step that may start beside ``running``, in start order (``start_key``); None
        when there is none. An alone step blocks the steps after it until it has
        started, so the running ones drain for it."""
        if len(running) >= self.jobs or any(job.step.kind in self.alone_kinds for job in running):
            return None
        for step in self.start_order:
            if self.state[step.name] == "ready":
                alone = step.kind in self.alone_kinds
                return step if not (alone and running) else None
        return None

    def _start(self, step: Step, key: str, summary: RunSummary) -> _Running:
        if prepare_folder(step, key):
            summary.cleared.append(step.name)
        log = (step.out_dir / LOG_FILE).open("a")  # a resumed attempt's log follows the stopped one's
        log.write(f"[bench] attempt started {time.strftime('%Y-%m-%d %H:%M:%S')}\n$ "
                  + " ".join(step.command("python")) + "\n")
        log.flush()
        process = subprocess.Popen(step.command(self.python), cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=self._env(step))
        self.state[step.name] = "running"
        return _Running(step, key, process, log, time.time())

    def run(self) -> RunSummary:
        """Run every step that is not done; returns what happened (failures do not raise).

        Raises:
            KeyboardInterrupt: Ctrl-C or SIGTERM (``kill PID``: a grid started in the background with
                ``&`` ignores Ctrl-C), after the running steps have been sent SIGTERM and have exited;
                the stages save their state on it, so the same command resumes them.
        """
        with sigterm_as_interrupt():
            return self._run()

    def _run(self) -> RunSummary:
        summary = RunSummary()
        running: list[_Running] = []
        stop = False  # set by a failure without keep_going: launch nothing new, let running steps end
        last_status = time.time()
        with Live(self._render(running), console=console, refresh_per_second=2, transient=False) as live:
            try:
                while True:
                    self._settle(summary)
                    while not stop and (step := self._next_to_start(running)) is not None:
                        running.append(self._start(step, self.keys[step.name], summary))
                    if not running:
                        break
                    time.sleep(POLL_SECONDS)
                    for job in [j for j in running if j.reap()]:
                        running.remove(job)
                        if not self._finish(job, summary):
                            stop = stop or not self.keep_going
                    live.update(self._render(running))
                    if not console.is_terminal and time.time() - last_status >= STATUS_EVERY_S:
                        self._print_status(running)
                        last_status = time.time()
            except KeyboardInterrupt:
                for job in running:  # only the processes started here; SIGTERM: each saves its state
                    job.process.terminate()
                for job in running:
                    job.wait()
                    job.log.close()
                    record_attempt(job.step, time.time() - job.started, job.cpu_seconds, "stopped")
                raise
            finally:
                live.update(self._render(running))
        summary.blocked += [s.name for s in self.steps
                            if self.state[s.name] in ("waiting", "ready") and s.name not in summary.blocked]
        return summary

    def _settle(self, summary: RunSummary) -> None:
        """Mark waiting steps whose inputs are settled as skipped (done before), ready, or blocked.

        Repeats until nothing changes, since a skipped step can make its readers ready at once.
        """
        progressed = True
        while progressed:
            progressed = False
            for step in self.steps:
                if self.state[step.name] != "waiting":
                    continue
                inputs = self._inputs_state(step)
                if inputs == "waiting":
                    continue
                progressed = True
                if inputs == "blocked":
                    self.state[step.name] = "blocked"
                    summary.blocked.append(step.name)
                    continue
                key = step.key(self.out_root, self.data_fingerprint)
                if is_done(step, key):
                    self.state[step.name] = "skipped"
                    summary.skipped.append(step.name)
                    self._note_finished(step, cached=True)
                else:
                    self.state[step.name] = "ready"
                    self.keys[step.name] = key

    def _finish(self, job: _Running, summary: RunSummary) -> bool:
        """Record an exited step as done (exit status 0 and every output written) or failed; returns success."""
        job.log.close()
        seconds = time.time() - job.started
        log_path = job.step.out_dir / LOG_FILE
        if job.process.returncode == 0:
            try:
                mark_done(job.step, job.key, seconds, job.cpu_seconds)
            except FileNotFoundError as err:
                with log_path.open("a") as log:
                    log.write(f"\n[bench] {err}\n")
            else:
                self.state[job.step.name] = "done"
                summary.ran[job.step.name] = seconds
                self._note_finished(job.step, cached=False, seconds=seconds)
                return True
        record_attempt(job.step, seconds, job.cpu_seconds, "failed")
        self.state[job.step.name] = "failed"
        summary.failed[job.step.name] = log_path
        self.finished_lines.append(f"[red]failed[/] {job.step.name} (exit {job.process.returncode}; log: {log_path})")
        return False

    # -- display ----------------------------------------------------------------------------
    def _note_finished(self, step: Step, cached: bool, seconds: float = 0.0) -> None:
        result = self.describe(step)
        how = "cached" if cached else f"{seconds:.0f} s"
        self.finished_lines.append(f"{step.name} ({how})" + (f": {result}" if result else ""))

    @staticmethod
    def _running_line(job: _Running) -> str:
        progress = job.progress()
        return (f"[cyan]running[/] {job.step.name} ({human_seconds(time.time() - job.started)}"
                + (f"; {progress})" if progress else ")"))

    def _print_status(self, running: list[_Running]) -> None:
        """One plain status line per running step, for a log without a terminal."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        for job in running:
            console.print(f"\\[bench] {stamp} " + self._running_line(job), highlight=False, soft_wrap=True)

    def _render(self, running: list[_Running]) -> Group:
        kinds = list(dict.fromkeys(s.kind for s in self.steps))
        counts = Table(title=f"label-efficiency grid · {time.time() - self.started_at:.0f} s elapsed")
        for column in ("stage", "done", "running", "remaining", "failed"):
            counts.add_column(column, justify="left" if column == "stage" else "right")
        for kind in kinds:
            states = [self.state[s.name] for s in self.steps if s.kind == kind]
            done = sum(st in ("done", "skipped") for st in states)
            now = states.count("running")
            failed = sum(st in ("failed", "blocked") for st in states)
            counts.add_row(kind, str(done), str(now), str(len(states) - done - now - failed), str(failed))
        lines = [Text.from_markup(self._running_line(job)) for job in running]
        lines += [Text.from_markup(line) for line in self.finished_lines[-5:]]
        return Group(counts, *lines)

