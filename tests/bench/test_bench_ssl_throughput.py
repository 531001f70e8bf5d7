"""The child loops of bench.ssl_throughput (the comparison itself needs HAM10000 and minutes of CPU)."""

from __future__ import annotations

import json

import pytest
import torch

from bench.ssl_throughput import WARMUP_STEPS, build_parser, main, run_compute_only


def test_compute_only_loop_trains_and_times_the_steps_after_warmup() -> None:
    args = build_parser().parse_args(["--backbone", "tiny_cnn", "--image-size", "16", "--batch-size", "4",
                                      "--steps", str(WARMUP_STEPS + 2)])
    torch.manual_seed(0)
    result = run_compute_only(args)
    assert set(result) == {"images_per_second"}
    assert result["images_per_second"] > 0


def test_compute_role_prints_one_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--role", "compute", "--backbone", "tiny_cnn", "--image-size", "16", "--batch-size", "4",
                 "--steps", str(WARMUP_STEPS + 1)]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(line)["images_per_second"] > 0



def test_device_loop_runs_ssl_pretrain_with_augment_on_device(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The third loop is ssl.pretrain itself with data.augment_on=device and its own worker count."""
    import bench.ssl_throughput as bench

    commands: list[list[str]] = []

    def fake_run(command: list[str]) -> tuple[None, float]:
        commands.append(command)
        out = tmp_path / "run"
        out.mkdir(exist_ok=True)
        (out / "summary.json").write_text(json.dumps({"images_per_second": 12.5}))
        return None, 100.0

    monkeypatch.setattr(bench, "_run_measured", fake_run)
    args = build_parser().parse_args(["--workers", "2", "--device-workers", "0"])
    assert bench.measure_ours(args, tmp_path / "run", "device") == {"images_per_second": 12.5, "peak_mib": 100.0}
    assert bench.measure_ours(args, tmp_path / "run") == {"images_per_second": 12.5, "peak_mib": 100.0}
    device, workers = commands
    assert "data.augment_on=device" in device and device[device.index("--workers") + 1] == "0"
    assert "data.augment_on=workers" in workers and workers[workers.index("--workers") + 1] == "2"
