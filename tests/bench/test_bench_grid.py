"""Step keys, done markers and resume (bench.grid, bench.runner), with a fake stage command."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bench.grid.keys import (DONE_FILE, STARTED_FILE, Cell, Step, adopt_finished, is_done, key_spelling, mark_done,
                        prepare_folder, read_done)
from bench.grid.runner import Runner

# A stand-in stage: writes result.txt (its value plus the text of the files it reads), logs its
# name to a counter file, and fails on request. Runs as `python -m fake_stage key=value ...`.
FAKE_STAGE = """
import pathlib, sys
args = dict(a.split("=", 1) for a in sys.argv[1:])
if args.get("fail") == "1":
    sys.exit(3)
out = pathlib.Path(args["out"])
out.mkdir(parents=True, exist_ok=True)
text = args["value"] + "".join(pathlib.Path(p).read_text() for p in args.get("reads", "").split(",") if p)
(out / "result.txt").write_text(text)
with open(args["counter"], "a") as fh:
    fh.write(args["name"] + "\\n")
"""
DATA = {"name": "fake", "split_hash": "abc"}


def _stage_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "stage_code"
    folder.mkdir(exist_ok=True)
    (folder / "fake_stage.py").write_text(FAKE_STAGE)
    return folder


def _pipeline(root: Path, counter: Path, values: dict[str, str], fail: str = "") -> list[Step]:
    """a -> b, a -> c; c also reads b's output when ``values`` has 'c_reads_b'."""
    steps: dict[str, Step] = {}
    for name, inputs in (("a", []), ("b", ["a"]), ("c", ["a"])):
        folder = root / name
        reads = ",".join(str(steps[i].out_dir / "result.txt") for i in inputs)
        args = [f"out={folder}", f"value={values[name]}", f"counter={counter}", f"name={name}", f"reads={reads}"]
        if name == fail:
            args.append("fail=1")
        steps[name] = Step(name, "kind-" + name, "fake_stage", args, folder, ("result.txt",),
                           [steps[i] for i in inputs])
    return list(steps.values())


def _run(tmp_path: Path, steps: list[Step], keep_going: bool = False):
    runner = Runner(steps, tmp_path / "out", DATA, jobs=2, keep_going=keep_going,
                    env={"PYTHONPATH": str(_stage_dir(tmp_path))})
    return runner.run()


def _ran(counter: Path) -> list[str]:
    return sorted(counter.read_text().split()) if counter.exists() else []


def test_cell_id_names_every_axis() -> None:
    assert Cell(0.1, "simclr", True, 2).cell_id == "f0.1-simclr-synth-s2"
    assert Cell(1.0, "random", False, 0).cell_id == "f1-random-real-s0"


def test_key_ignores_the_output_root_and_changes_with_settings(tmp_path: Path) -> None:
    one = Step("x", "k", "m", [f"out={tmp_path / 'A' / 'x'}", "lr=1"], tmp_path / "A" / "x", ())
    moved = Step("x", "k", "m", [f"out={tmp_path / 'B' / 'x'}", "lr=1"], tmp_path / "B" / "x", ())
    changed = Step("x", "k", "m", [f"out={tmp_path / 'A' / 'x'}", "lr=2"], tmp_path / "A" / "x", ())
    key = one.key(tmp_path / "A", DATA)
    assert moved.key(tmp_path / "B", DATA) == key
    assert changed.key(tmp_path / "A", DATA) != key
    assert one.key(tmp_path / "A", {**DATA, "split_hash": "other"}) != key


def test_key_of_a_renamed_argument_is_its_old_spelling(tmp_path: Path) -> None:
    # synth.train's out and checkpoint_every became out_dir and checkpoint_every_n_steps (issue 14): a
    # generator a grid trained before the rename keeps its key, so it is not trained again.
    def key(module: str, *args: str) -> str:
        return Step("g", "synth-train", module, list(args), tmp_path / "A" / "g", ()).key(tmp_path / "A", DATA)

    folder = tmp_path / "A" / "g"
    assert key("synth.train", f"out_dir={folder}", "checkpoint_every_n_steps=100") == \
        key("synth.train", f"out={folder}", "checkpoint_every=100")
    assert key("synth.train", f"out_dir={folder}") != key("synth.train", f"out_dir={folder}", "seed=1")
    # only where a stage renamed them: finetune.train's out_dir was always out_dir
    assert key("finetune.train", f"out_dir={folder}") != key("finetune.train", f"out={folder}")


def test_key_does_not_depend_on_the_accelerator(tmp_path: Path) -> None:
    # A generator started on a lent GPU is the grid's step here: it resumes from its checkpoint or counts as
    # done; every key made before the rule hashed trainer.accelerator=cpu, and still does.
    def key(*args: str) -> str:
        return Step("g", "synth-train", "synth.train", list(args), tmp_path / "A" / "g", ()).key(tmp_path / "A", DATA)

    on_cpu = key("model.preset=small", "trainer.accelerator=cpu", "trainer.precision=bf16-mixed")
    assert key("model.preset=small", "trainer.accelerator=gpu", "trainer.precision=bf16-mixed") == on_cpu
    assert key("model.preset=small", "trainer.accelerator=auto", "trainer.precision=bf16-mixed") == on_cpu
    assert key("model.preset=small", "trainer.precision=bf16-mixed") != on_cpu  # given or not still differs
    assert key("model.preset=small", "trainer.accelerator=gpu", "trainer.precision=32") != on_cpu
    # the spelling every earlier key hashed: a step finished before the rule keeps its key
    assert key_spelling("finetune.train", "trainer.accelerator=gpu") == "trainer.accelerator=cpu"
    assert key_spelling("finetune.train", "trainer.accelerator=cpu") == "trainer.accelerator=cpu"


def test_key_hashes_augment_on_workers_as_absent(tmp_path: Path) -> None:
    # Before issue 13 the grid passed no data.augment_on and the stages augmented in the workers; it now
    # always passes the value, so a step finished then keeps its key (device is another step).
    def key(*args: str) -> str:
        return Step("p", "pretrain", "ssl.pretrain", list(args), tmp_path / "A" / "p", ()).key(tmp_path / "A", DATA)

    assert key("method=simclr", "data.augment_on=workers") == key("method=simclr")
    assert key("method=simclr", "data.augment_on=device") != key("method=simclr")


def test_done_marker_requires_same_key_and_intact_outputs(tmp_path: Path) -> None:
    step = Step("x", "k", "m", [], tmp_path / "x", ("out.txt",))
    prepare_folder(step, "key1")
    with pytest.raises(FileNotFoundError):
        mark_done(step, "key1", 1.0)
    (step.out_dir / "out.txt").write_text("result")
    mark_done(step, "key1", 1.0)
    assert is_done(step, "key1") and not is_done(step, "key2")
    (step.out_dir / "out.txt").write_text("tampered")
    assert read_done(step) is None and not is_done(step, "key1")


def test_adopt_finished_takes_a_copy_only_under_the_same_key_with_intact_outputs(tmp_path: Path) -> None:
    finished = Step("x", "k", "m", [], tmp_path / "old" / "x", ("out.txt",))
    prepare_folder(finished, "key1")
    (finished.out_dir / "out.txt").write_text("result")
    mark_done(finished, "key1", 1.0)
    here = Step("x", "k", "m", [], tmp_path / "new" / "x", ("out.txt",))
    assert not adopt_finished(here, "key2", finished.out_dir)  # other settings: it must run
    assert not here.out_dir.exists()
    (finished.out_dir / "out.txt").write_text("tampered")
    assert not adopt_finished(here, "key1", finished.out_dir)  # output no longer what done.json recorded
    (finished.out_dir / "out.txt").write_text("result")
    prepare_folder(here, "key0")  # an interrupted run here under other settings, with its checkpoint
    (here.out_dir / "last.ckpt").write_text("other settings")
    assert adopt_finished(here, "key1", finished.out_dir)
    assert is_done(here, "key1") and (here.out_dir / "out.txt").read_text() == "result"
    assert not (here.out_dir / "last.ckpt").exists()  # nothing of the other run is left to be read
    assert not adopt_finished(here, "key1", finished.out_dir)  # already done here


def test_prepare_folder_keeps_an_interrupted_run_and_clears_a_stale_one(tmp_path: Path) -> None:
    step = Step("x", "k", "m", [], tmp_path / "x", ("out.txt",))
    assert not prepare_folder(step, "key1")
    (step.out_dir / "checkpoint").write_text("half done")
    assert not prepare_folder(step, "key1")  # same settings: the stage resumes from its checkpoint
    assert (step.out_dir / "checkpoint").exists()
    assert prepare_folder(step, "key2")  # other settings: the old checkpoint must not be resumed
    assert not (step.out_dir / "checkpoint").exists()


def test_done_json_adds_up_the_attempts_of_a_step_and_counts_those_whose_time_was_lost(tmp_path: Path) -> None:
    from bench.grid.keys import record_attempt

    step = Step("x", "k", "m", [], tmp_path / "x", ("out.txt",))
    prepare_folder(step, "key1")
    record_attempt(step, 10.0, 8.0, "stopped")
    prepare_folder(step, "key1")  # resumed, then killed with the grid: its time is never recorded
    prepare_folder(step, "key1")
    (step.out_dir / "out.txt").write_text("result")
    record = mark_done(step, "key1", 5.0, 4.0)
    assert (record["seconds"], record["cpu_seconds"]) == (15.0, 12.0)
    assert record["attempts"] == 3 and record["unrecorded_attempts"] == 1

    prepare_folder(step, "key2")  # other settings: the earlier attempts belong to the cleared folder
    (step.out_dir / "out.txt").write_text("result")
    record = mark_done(step, "key2", 5.0, 4.0)
    assert (record["seconds"], record["cpu_seconds"], record["attempts"]) == (5.0, 4.0, 1)
    assert "unrecorded_attempts" not in record


def test_runner_resumes_and_reruns_only_what_a_change_affects(tmp_path: Path) -> None:
    counter = tmp_path / "counter.txt"
    values = {"a": "1", "b": "2", "c": "3"}
    summary = _run(tmp_path, _pipeline(tmp_path / "out", counter, values))
    assert summary.ok and sorted(summary.ran) == ["a", "b", "c"] and _ran(counter) == ["a", "b", "c"]
    assert (tmp_path / "out" / "b" / "result.txt").read_text() == "21"
    record = json.loads((tmp_path / "out" / "b" / DONE_FILE).read_text())
    assert set(record["outputs"]) == {"result.txt"} and record["seconds"] >= 0

    counter.unlink()
    summary = _run(tmp_path, _pipeline(tmp_path / "out", counter, values))
    assert summary.ok and summary.ran == {} and sorted(summary.skipped) == ["a", "b", "c"]
    assert _ran(counter) == []

    summary = _run(tmp_path, _pipeline(tmp_path / "out", counter, {**values, "b": "20"}))
    assert sorted(summary.ran) == ["b"] and sorted(summary.skipped) == ["a", "c"]
    assert summary.cleared == ["b"]
    assert (tmp_path / "out" / "b" / "result.txt").read_text() == "201"

    counter.unlink()
    summary = _run(tmp_path, _pipeline(tmp_path / "out", counter, {**values, "a": "9", "b": "20"}))
    assert sorted(summary.ran) == ["a", "b", "c"]  # a's output changed, so both readers re-run
    assert (tmp_path / "out" / "c" / "result.txt").read_text() == "39"


TIMED_STAGE = """
import os, pathlib, sys, time
args = dict(a.split("=", 1) for a in sys.argv[1:])
start = time.time()
time.sleep(1.0)
out = pathlib.Path(args["out"])
out.mkdir(parents=True, exist_ok=True)
(out / "result.txt").write_text(args["name"])
with open(args["log"], "a") as fh:
    fh.write(f"{args['name']} {os.environ.get('OMP_NUM_THREADS')} {start} {time.time()}\\n")
"""


def test_an_alone_step_gets_every_thread_and_nothing_runs_beside_it(tmp_path: Path) -> None:
    stages = tmp_path / "stage_code"
    stages.mkdir()
    (stages / "timed_stage.py").write_text(TIMED_STAGE)
    log = tmp_path / "log.txt"
    # listed first a cell, then the generator, then two more cells; none reads another
    steps = [Step(name, kind, "timed_stage", [f"out={tmp_path / 'out' / name}", f"name={name}", f"log={log}"],
                  tmp_path / "out" / name, ("result.txt",))
             for name, kind in (("c1", "cell"), ("gen", "synth-train"), ("c2", "cell"), ("c3", "cell"))]
    summary = Runner(steps, tmp_path / "out", DATA, jobs=2, threads=1, alone_kinds=["synth-train"],
                     env={"PYTHONPATH": str(stages)}).run()
    assert summary.ok
    runs = {name: (threads, float(start), float(end))
            for name, threads, start, end in (line.split() for line in log.read_text().splitlines())}
    assert {name: r[0] for name, r in runs.items()} == {"c1": "1", "gen": "2", "c2": "1", "c3": "1"}
    _, gen_start, gen_end = runs["gen"]
    for name in ("c1", "c2", "c3"):  # the generator waited for c1 and held back c2 and c3
        assert runs[name][2] <= gen_start or runs[name][1] >= gen_end, name
    assert runs["c1"][2] <= gen_start and runs["c2"][1] >= gen_end
    assert max(runs["c2"][1], runs["c3"][1]) < min(runs["c2"][2], runs["c3"][2])  # after it, two at a time


def test_ready_steps_start_in_the_order_of_start_key(tmp_path: Path) -> None:
    """Two cells, each read by a predict step listed after both: one job runs c1, p1, c2, p2."""
    stages = tmp_path / "stage_code"
    stages.mkdir()
    (stages / "timed_stage.py").write_text(TIMED_STAGE)
    log = tmp_path / "log.txt"

    def step(name: str, kind: str, inputs: list[Step]) -> Step:
        return Step(name, kind, "timed_stage", [f"out={tmp_path / 'out' / name}", f"name={name}", f"log={log}"],
                    tmp_path / "out" / name, ("result.txt",), inputs)

    c1, c2 = step("c1", "cell", []), step("c2", "cell", [])
    steps = [c1, c2, step("p1", "predict", [c1]), step("p2", "predict", [c2])]
    assert Runner(steps, tmp_path / "out", DATA, env={"PYTHONPATH": str(stages)},
                  start_key=lambda step: step.kind != "predict").run().ok
    assert [line.split()[0] for line in log.read_text().splitlines()] == ["c1", "p1", "c2", "p2"]
    log.unlink()
    assert Runner(steps, tmp_path / "again", DATA, env={"PYTHONPATH": str(stages)}).run().ok
    assert [line.split()[0] for line in log.read_text().splitlines()] == ["c1", "c2", "p1", "p2"]  # step order


def test_runner_reports_a_failure_and_blocks_its_dependents(tmp_path: Path) -> None:
    counter = tmp_path / "counter.txt"
    values = {"a": "1", "b": "2", "c": "3"}
    summary = _run(tmp_path, _pipeline(tmp_path / "out", counter, values, fail="a"))
    assert not summary.ok and list(summary.failed) == ["a"] and sorted(summary.blocked) == ["b", "c"]
    assert summary.failed["a"].is_file()  # the log is kept
    assert not is_done(_pipeline(tmp_path / "out", counter, values)[0], "any")

    attempts = json.loads((tmp_path / "out" / "a" / STARTED_FILE).read_text())["attempts"]
    assert [a["outcome"] for a in attempts] == ["failed"] and attempts[0]["seconds"] > 0

    summary = _run(tmp_path, _pipeline(tmp_path / "out", counter, values, fail="b"), keep_going=True)
    assert list(summary.failed) == ["b"] and sorted(summary.ran) == ["a", "c"]


# A stand-in stage that runs (using CPU) until it is stopped: records its pid, and on SIGTERM records that
# and exits. Run again after a stop, it finishes at once (writes result.txt), as a resumed stage would.
WAITING_STAGE = """
import os, pathlib, signal, sys
out = pathlib.Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
if (out / "terminated").exists():
    (out / "result.txt").write_text("resumed")
    sys.exit(0)
def stop(signum, frame):
    (out / "terminated").write_text("SIGTERM")
    sys.exit(143)
signal.signal(signal.SIGTERM, stop)
(out / "pid").write_text(str(os.getpid()))
while True:
    sum(range(10000))
"""


def test_sigterm_stops_the_grid_and_its_running_steps(tmp_path: Path) -> None:
    """``kill PID`` on a grid started in the background (where Ctrl-C does not reach it): the running
    stages get SIGTERM (they save their state on it) and have exited before the grid does; none is left
    running unwatched into a folder that a re-run would resume at the same time."""
    import os
    import signal
    import threading
    import time

    stages = _stage_dir(tmp_path)
    (stages / "waiting_stage.py").write_text(WAITING_STAGE)
    folders = [tmp_path / "out" / name for name in ("a", "b")]
    steps = [Step(f.name, "kind", "waiting_stage", [str(f)], f, ("never.txt",)) for f in folders]
    runner = Runner(steps, tmp_path / "out", DATA, jobs=2, env={"PYTHONPATH": str(stages)})

    def kill_when_both_run() -> None:
        while not all((f / "pid").is_file() for f in folders):
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    threading.Thread(target=kill_when_both_run, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        runner.run()
    assert signal.getsignal(signal.SIGTERM) == before
    for folder in folders:
        assert (folder / "terminated").read_text() == "SIGTERM"
        assert not Path(f"/proc/{(folder / 'pid').read_text()}").exists()  # exited and reaped


def test_a_stopped_and_resumed_step_records_the_time_of_both_attempts(tmp_path: Path) -> None:
    """A grid stopped with SIGTERM keeps the stopped attempt's wall and CPU time; the attempt that finishes
    adds it, so done.json (and the report's running time) states what the step cost, not its last part."""
    import os
    import signal
    import threading
    import time

    stages = _stage_dir(tmp_path)
    (stages / "waiting_stage.py").write_text(WAITING_STAGE)
    folder = tmp_path / "out" / "a"
    steps = [Step("a", "kind", "waiting_stage", [str(folder)], folder, ("result.txt",))]

    def stage_cpu_seconds(pid: int) -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime

    def kill_after_a_while() -> None:
        while not (folder / "pid").is_file():
            time.sleep(0.05)
        time.sleep(0.5)
        # On a loaded machine the stage may have had less than the asserted CPU time yet: wait for it.
        pid, waited = int((folder / "pid").read_text()), 0.0
        while stage_cpu_seconds(pid) < 0.4 and waited < 60:
            time.sleep(0.05)
            waited += 0.05
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=kill_after_a_while, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        Runner(steps, tmp_path / "out", DATA, env={"PYTHONPATH": str(stages)}).run()
    [stopped] = json.loads((folder / STARTED_FILE).read_text())["attempts"]
    assert stopped["outcome"] == "stopped" and stopped["seconds"] >= 0.5 and stopped["cpu_seconds"] >= 0.3

    summary = Runner(steps, tmp_path / "out", DATA, env={"PYTHONPATH": str(stages)}).run()
    record = json.loads((folder / DONE_FILE).read_text())
    assert summary.ok and record["attempts"] == 2 and "unrecorded_attempts" not in record
    assert record["seconds"] > stopped["seconds"] and record["cpu_seconds"] > stopped["cpu_seconds"]
    log = (folder / "stage.log").read_text()
    assert log.count("attempt started") == 2  # the stopped attempt's log is kept


def test_sigterm_stops_a_foreground_stage_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``run_stage`` (the smaller benchmarks' one stage at a time): SIGTERM reaches only the benchmark's
    process, which passes it on to the stage and waits for it, instead of waiting for a whole run."""
    import os
    import signal
    import threading
    import time

    from bench.grid.runner import run_stage

    stages = _stage_dir(tmp_path)
    (stages / "waiting_stage.py").write_text(WAITING_STAGE)
    monkeypatch.setenv("PYTHONPATH", str(stages))
    folder = tmp_path / "out" / "stage"

    def kill_when_it_runs() -> None:
        while not (folder / "pid").is_file():
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=kill_when_it_runs, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        run_stage("waiting_stage", [str(folder)])
    assert (folder / "terminated").read_text() == "SIGTERM"
    assert not Path(f"/proc/{(folder / 'pid').read_text()}").exists()


# A stage that reports progress.json twice, a second apart, then waits before finishing.
PROGRESS_STAGE = """
import pathlib, sys, time
from dermkit.progress_file import write_progress
out = pathlib.Path(sys.argv[1])
write_progress(out, 1, 10, "steps")
time.sleep(1.0)
write_progress(out, 3, 10, "steps")
time.sleep(2.0)
(out / "result.txt").write_text("done")
"""


def test_a_grid_without_a_terminal_prints_each_running_steps_progress(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A grid under nohup has no live table: it prints a status line with the step's progress.json
    (steps done of planned, rate, time left) instead, and ignores a file left by an earlier attempt."""
    import bench.grid.runner as runner_module

    monkeypatch.setattr(runner_module, "STATUS_EVERY_S", 0.0)
    stages = _stage_dir(tmp_path)
    (stages / "progress_stage.py").write_text(PROGRESS_STAGE)
    folder = tmp_path / "out" / "a"
    folder.mkdir(parents=True)
    (folder / "progress.json").write_text('{"done": 7, "total": 9, "unit": "steps", "updated": 0}')  # stale
    steps = [Step("a", "kind", "progress_stage", [str(folder)], folder, ("result.txt",))]
    repo = Path(__file__).resolve().parents[2]
    assert Runner(steps, tmp_path / "out", DATA, env={"PYTHONPATH": f"{stages}:{repo}"}).run().ok
    err = capsys.readouterr().err
    assert "[bench] " in err and "running a" in err
    assert "step 1/10 (10%)" in err
    assert re.search(r"step 3/10 \(30%\), [0-9.]+ steps/s, ~[0-9] s left", err)  # the rate of two readings
    assert "7/9" not in err


def test_progress_text_gives_the_rate_and_time_left_once_there_are_two_readings() -> None:
    from bench.grid.runner import progress_text
    from dermkit.progress_file import Progress

    first = Progress(100, 20000, "steps", 1000.0)
    assert progress_text(first, first) == "step 100/20,000 (0%)"
    assert progress_text(Progress(600, 20000, "steps", 1800.0), first) == \
        "step 600/20,000 (3%), 1.60 s/step, ~8.6 h left"
    fast = Progress(40, 100, "images", 1002.0)
    assert progress_text(fast, Progress(0, 100, "images", 1000.0)) == "image 40/100 (40%), 20.0 images/s, ~3 s left"
    assert progress_text(Progress(5, 0, "steps", 1001.0), Progress(1, 0, "steps", 1000.0)) == "step 5, 4.0 steps/s"


def test_a_running_steps_rate_is_that_of_its_last_ten_minutes(tmp_path: Path) -> None:
    """A pause early in a long step (a test suite beside it, SIGSTOP) does not slow its rate for hours."""
    from bench.grid.runner import _Running

    job = _Running(Step("a", "kind", "stage", [], tmp_path, ("out.txt",)), "key", None, None, started=0.0)
    lines = []
    for updated, done in ((1000, 0), (2000, 100), (2100, 200), (2600, 700)):  # 10 s/step, then 1 s/step
        (tmp_path / "progress.json").write_text(json.dumps({"done": done, "total": 1700, "unit": "steps",
                                                            "updated": updated}))
        lines.append(job.progress())
    assert lines[1] == "step 100/1,700 (6%), 10.00 s/step, ~4.4 h left"
    assert lines[3] == "step 700/1,700 (41%), 1.00 s/step, ~16.7 min left"  # from 2000 on, not from 1000
