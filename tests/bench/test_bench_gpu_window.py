"""bench.gpu_window: phases in order until a deadline, a stopped phase stopped cleanly, one line saying what did
not finish; the GPU plan; the CPU dry run with tiny sizes writes its results folder and stops at its deadline."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.probes.gpu_window import Phase, main, parse_args, plan, run_window
from dermkit.errors import DermkitError

REPO_ROOT = Path(__file__).resolve().parents[2]


def sleeper(seconds: float, status: int = 0, on_term: str = "") -> list[str]:
    """A phase command that sleeps; ``on_term``: a file it writes when sent SIGTERM (a clean stop)."""
    code = (f"import signal, sys, time\n"
            f"def stop(*_):\n    open({on_term!r}, 'w').write('stopped'); sys.exit(130)\n"
            f"signal.signal(signal.SIGTERM, stop) if {bool(on_term)} else None\n"
            f"time.sleep({seconds}); sys.exit({status})\n")
    return [sys.executable, "-c", code]


def test_phases_run_in_order_until_the_deadline(tmp_path: Path) -> None:
    out = tmp_path / "gpu-test"
    args = parse_args(["--out", str(out), "--runs", str(tmp_path / "runs"), "--seconds", "6", "--reserve", "1",
                       "--phases", "gpu-check"])
    stopped_file = tmp_path / "stopped"
    phases = [Phase("quick", "a phase that ends", sleeper(0.2), out / "quick"),
              Phase("broken", "a phase that fails", sleeper(0.1, status=2), out / "broken"),
              Phase("long", "a phase the deadline stops", sleeper(60, on_term=str(stopped_file)), out / "long"),
              Phase("last", "a phase without time left", sleeper(0.1), out / "last", min_seconds=30)]
    started = time.time()
    run_window(args, phases)
    assert time.time() - started < 6 + 2  # stopped at the deadline, not after the long phase's 60 s
    assert [p.status for p in phases][:3] == ["finished", "failed (exit status 2)", "stopped at the deadline"]
    assert phases[3].status.startswith("not started:")
    assert stopped_file.read_text() == "stopped"  # SIGTERM: the phase could stop cleanly
    summary = json.loads((out / "summary.json").read_text())
    assert [p["status"] for p in summary["phases"]] == [p.status for p in phases]
    readme = (out / "README.md").read_text()
    unfinished = [line for line in readme.splitlines() if line.startswith("**Did not finish:")]
    assert len(unfinished) == 1 and all(name in unfinished[0] for name in ("broken", "long", "last"))
    assert "quick (" not in unfinished[0]
    assert (out / "window.log").is_file() and (out / "logs" / "long.log").is_file()


def test_every_phase_finished_says_so(tmp_path: Path) -> None:
    out = tmp_path / "gpu-test"
    args = parse_args(["--out", str(out), "--runs", str(tmp_path / "runs"), "--seconds", "30", "--reserve", "1",
                       "--copy-to", str(tmp_path / "back")])
    run_window(args, [Phase("quick", "a phase that ends", sleeper(0.1), out / "quick")])
    assert "**Every phase finished.**" in (out / "README.md").read_text()
    assert (tmp_path / "back" / "gpu-test" / "summary.json").is_file()  # --copy-to


def test_gpu_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "ham"
    root.mkdir()
    (root / "HAM10000_metadata.csv").write_text("image_id\n")
    args = parse_args(["--out", str(tmp_path / "out"), "--runs", str(tmp_path / "runs"), "--root", str(root)])
    check, quick, r50 = plan(args)
    assert check.command[1:3] == ["-m", "bench.gpu_check"] and "cuda" in check.command
    assert check.command[check.command.index("--parts") + 1] == "simclr_device,simclr_resident,finetune_resnet50," \
                                                                 "finetune_resnet18"
    assert check.command[check.command.index("--budget") + 1] == "150" and check.min_seconds == 150
    for phase, preset in ((quick, "gpu-quick"), (r50, "gpu-r50-128")):
        assert phase.command[phase.command.index("--preset") + 1] == preset
        assert phase.command[phase.command.index("--export") + 1] == str(tmp_path / "out" / preset)
        assert f"data.root={root}" in phase.command
        assert phase.report_command[-2:] == ["--report-only", "report.n_bootstrap=1000"]
    assert r50.min_seconds == 120
    with pytest.raises(DermkitError, match="--phases: choose among"):
        parse_args(["--phases", "gpu-quick,gpu-full"])


def test_missing_data_fails_before_anything_runs(tmp_path: Path) -> None:
    args = parse_args(["--out", str(tmp_path / "out"), "--root", str(tmp_path / "nowhere")])
    with pytest.raises(DermkitError, match="nowhere/HAM10000_metadata.csv not found"):
        plan(args)


def test_the_shell_script_parses() -> None:
    assert subprocess.run(["bash", "-n", str(REPO_ROOT / "bench" / "gpu_window.sh")]).returncode == 0


@pytest.mark.slow  # the real stages at tiny sizes for 110 s: ~2 minutes on the loaded 2-core machine
def test_tiny_cpu_dry_run_writes_its_results_and_stops_at_its_deadline(tmp_cache: Path, tmp_path: Path) -> None:
    """The check, then the grid, whose pretraining (1,000 epochs) cannot finish: it is stopped at the deadline,
    saving its checkpoint; the finished random-init cell is reported; the last phase has no time left."""
    out, runs = tmp_path / "gpu-dry", tmp_path / "runs"
    started = time.time()
    status = main(["--tiny", "--seconds", "110", "--reserve", "20", "--check-budget", "60", "--out", str(out),
                   "--runs", str(runs), "--grid-override",
                   "pretrain.overrides=[trainer.accelerator=cpu, monitor.every_n_epochs=0]",
                   "--grid-override", "pretrain.method_overrides={simclr: [trainer.max_epochs=1000]}"])
    elapsed = time.time() - started
    assert status == 3 and 110 - 20 < elapsed < 110 + 10  # stopped at the deadline, not before, not much after
    summary = json.loads((out / "summary.json").read_text())
    statuses = {p["name"]: p["status"] for p in summary["phases"]}
    assert statuses == {"gpu-check": "finished", "gpu-quick": "stopped at the deadline",
                        "gpu-r50-128": statuses["gpu-r50-128"]} and statuses["gpu-r50-128"].startswith("not started")
    assert (runs / "gpu-quick" / "pretrain" / "simclr" / "checkpoints" / "last.ckpt").is_file()  # a clean stop
    check = json.loads((out / "gpu_check" / "gpu_check.json").read_text())
    assert check["parts"]["simclr_resident"]["images_per_second"] > 0
    readme = (out / "README.md").read_text()
    unfinished = [line for line in readme.splitlines() if line.startswith("**Did not finish:")]
    assert "CPU dry run" in readme and len(unfinished) == 1 and "gpu-quick (stopped at the deadline)" in unfinished[0]
    assert "| gpu-check | simclr_resident" in readme  # its speed and data wait
    assert (out / "logs" / "gpu-quick.log").is_file() and (out / "window.log").is_file()
