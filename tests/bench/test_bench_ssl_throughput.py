"""The child loops of bench.ssl_throughput (the comparison itself needs HAM10000 and minutes of CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bench.probes.ssl_throughput import WARMUP_STEPS, build_parser, main, run_compute_only


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
    import bench.probes.ssl_throughput as bench

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


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
@pytest.mark.parametrize("role", ["compute", "reference"])
def test_hand_written_loops_autocast_the_forward_pass_and_keep_nt_xent_in_float32(
        role: str, precision: str, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--precision reaches both child loops: bf16 autocast around the network, the loss in float32 outside it."""
    from PIL import Image

    import bench.probes.ssl_throughput as bench

    (tmp_path / "images").mkdir()
    for i in range(8):  # two batches of 4 per epoch for the reference loop's JPEG folder
        Image.new("RGB", (24, 24), (40 * i, 120, 200 - 20 * i)).save(tmp_path / "images" / f"{i}.jpg")
    forwards: list[tuple[bool, torch.dtype]] = []
    losses: list[tuple[bool, torch.dtype, torch.dtype]] = []
    simclr_model = bench._simclr_model

    def recording_model(args):  # the real network, optimiser and loss, with what they ran under recorded
        model, criterion, optimizer = simclr_model(args)
        model.register_forward_hook(lambda _m, _i, out: forwards.append((torch.is_autocast_enabled("cpu"), out.dtype)))

        def loss(z0: torch.Tensor, z1: torch.Tensor) -> torch.Tensor:
            losses.append((torch.is_autocast_enabled("cpu"), z0.dtype, z1.dtype))
            return criterion(z0, z1)

        return model, loss, optimizer

    monkeypatch.setattr(bench, "_simclr_model", recording_model)
    args = build_parser().parse_args(["--role", role, "--root", str(tmp_path), "--backbone", "tiny_cnn",
                                      "--image-size", "16", "--batch-size", "4", "--workers", "0",
                                      "--steps", str(WARMUP_STEPS + 2), "--precision", precision])
    result = bench.run_compute_only(args) if role == "compute" else bench.run_reference(args)
    assert result["images_per_second"] > 0
    bf16 = precision == "bf16-mixed"
    assert len(forwards) == (1 if role == "compute" else 2) * args.steps
    assert set(forwards) == {(bf16, torch.bfloat16 if bf16 else torch.float32)}
    assert len(losses) == args.steps and set(losses) == {(False, torch.float32, torch.float32)}


def test_precision_reaches_every_command_and_the_results(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both ssl.pretrain runs get trainer.precision, both child loops --precision; the JSON and title record it."""
    import subprocess

    import bench.probes.ssl_throughput as bench

    commands: list[list[str]] = []

    def fake_run(command: list[str]) -> tuple[subprocess.CompletedProcess[str], float]:
        commands.append(command)
        if "ssl.pretrain" in command:
            out = Path(command[command.index("--out") + 1])
            out.mkdir(parents=True, exist_ok=True)
            (out / "summary.json").write_text(json.dumps({"images_per_second": 20.0}))
        return subprocess.CompletedProcess(command, 0, json.dumps({"images_per_second": 10.0}) + "\n", ""), 100.0

    titles: list[str] = []
    monkeypatch.setattr(bench, "_run_measured", fake_run)
    monkeypatch.setattr(bench, "print_table", lambda title, *_: titles.append(title))
    (tmp_path / "images").mkdir()
    out = tmp_path / "results.json"
    assert main(["--root", str(tmp_path), "--steps", "6", "--rounds", "1", "--precision", "bf16-mixed",
                 "--json", str(out)]) == 0
    reference, ours, device, compute = commands
    for child in (reference, compute):
        assert child[child.index("--precision") + 1] == "bf16-mixed"
    for stage in (ours, device):
        assert "trainer.precision=bf16-mixed" in stage
    assert json.loads(out.read_text())["args"]["precision"] == "bf16-mixed"
    assert "bf16-mixed" in titles[0]
    commands.clear()
    assert main(["--root", str(tmp_path), "--steps", "6", "--rounds", "1", "--json", str(out)]) == 0
    assert all("trainer.precision=32-true" in c for c in commands[1:3])
    assert all(c[c.index("--precision") + 1] == "32-true" for c in (commands[0], commands[3]))
