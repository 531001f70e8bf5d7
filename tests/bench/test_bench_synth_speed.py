"""bench.synth_speed: times sampling and training through ``python -m synth.speed`` and keeps its results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.probes.synth_speed import main

# The keys bench.gpu_check reads from the --json file (its synth_sampling part), and the rest.
KEYS = {"model", "device", "batch_size", "threads", "ddim_steps", "dpm_steps", "ddpm_steps", "guidance",
        "ddim_images_per_s", "dpm_images_per_s", "ddpm_images_per_s", "train_steps_per_s",
        "train_steps_per_s_by_precision", "peak_gpu_memory_mib"}


@pytest.fixture(autouse=True)
def one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stage runs in a subprocess: one OpenMP thread there too (a tiny UNet on a loaded 2-core
    machine is far faster with one)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def test_tiny_random_init_run_writes_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "speed" / "tiny.json"
    assert main(["--preset", "tiny", "--image-size", "16", "--batch-size", "2", "--ddim-steps", "2", "--dpm-steps", "3",
                 "--ddpm-steps", "4", "--train-steps", "2", "--device", "cpu", "--threads", "1",
                 "--train-precisions", "32-true", "bf16-mixed", "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    assert set(results) == KEYS
    assert results["model"] == "random-init tiny (16 px)" and results["device"] == "cpu"
    assert (results["batch_size"], results["ddim_steps"], results["ddpm_steps"], results["threads"]) == (2, 2, 4, 1)
    assert results["dpm_steps"] == 3
    assert min(results["ddim_images_per_s"], results["dpm_images_per_s"], results["ddpm_images_per_s"],
               results["train_steps_per_s"]) > 0
    by_precision = results["train_steps_per_s_by_precision"]
    assert list(by_precision) == ["32-true", "bf16-mixed"] and min(by_precision.values()) > 0
    assert results["train_steps_per_s"] == by_precision["32-true"]  # the first precision's
    assert results["peak_gpu_memory_mib"] is None  # CPU: no GPU memory to report
    assert "DDIM / DDPM speed-up" in capsys.readouterr().out


def test_a_stage_error_stops_the_benchmark(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "never.json"
    with pytest.raises(SystemExit) as exit_info:  # 15 px: the tiny UNet halves the image once
        main(["--preset", "tiny", "--image-size", "15", "--device", "cpu", "--json", str(out)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "python -m synth.speed" in err and "failed (exit status 2)" in err
    assert not out.exists()
