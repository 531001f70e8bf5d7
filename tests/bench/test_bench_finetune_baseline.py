"""bench.finetune_baseline on the demo data: both loops train, test and report their speed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bench.probes.finetune_baseline import main, plain_transforms


@pytest.mark.slow
def test_plain_loop_and_finetune_train_side_by_side(demo_cache: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DERMKIT_CACHE", str(demo_cache))
    out = tmp_path / "baseline"
    assert main(["--data", "demo", "--backbone", "tiny_cnn", "--image-size", "32", "--batch-size", "8",
                 "--workers", "0", "--epochs", "1", "--max-batches", "9", "--out", str(out),
                 f"data.cache_dir={demo_cache}"]) == 0
    results = json.loads((out / "results.json").read_text())["results"]
    assert [r["role"] for r in results] == ["plain", "ours"]
    for result in results:
        assert 0.0 <= result["test_balanced_accuracy"] <= 1.0
        assert result["train_images_per_second"] > 0  # 9 steps: 3 timed after the 5-step warm-up
        assert result["cpu_seconds"] > 0
    assert "finetune.train" in results[1]["command"] and "--loss ce" in results[1]["command"]
    assert (out / "results.md").read_text().count("|") > 10


def test_plain_transforms_keep_size_and_normalise() -> None:
    from PIL import Image

    train, evaluate = plain_transforms()
    image = Image.new("RGB", (32, 32), (200, 120, 100))
    assert train(image).shape == evaluate(image).shape == (3, 32, 32)
    assert torch.allclose(evaluate(image)[:, 0, 0], torch.tensor([(200 / 255 - 0.485) / 0.229,
                                                                  (120 / 255 - 0.456) / 0.224,
                                                                  (100 / 255 - 0.406) / 0.225]), atol=1e-4)


def test_precision_reaches_finetune_train_and_the_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--precision bf16-mixed gives the stage trainer.precision=bf16-mixed (before the user's overrides, which
    still win); results.json and results.md record it. The subprocess is faked: this checks the wiring only."""
    import bench.probes.finetune_baseline as bench

    commands: list[list[str]] = []

    def fake_run(command: list[str], check: bool) -> None:
        commands.append(command)
        run_dir = Path(command[command.index("--out") + 1])
        run_dir.mkdir(parents=True)
        (run_dir / "metrics.json").write_text(json.dumps({"balanced_accuracy": 0.5, "train_images_per_second": 9.0}))

    monkeypatch.setattr(bench.subprocess, "run", fake_run)
    out = tmp_path / "baseline"
    assert main(["--role", "ours", "--data", "demo", "--precision", "bf16-mixed", "--out", str(out),
                 "trainer.max_epochs=1"]) == 0
    command = commands[0]
    assert "trainer.precision=bf16-mixed" in command
    assert command.index("trainer.precision=bf16-mixed") < command.index("trainer.max_epochs=1")
    assert json.loads((out / "results.json").read_text())["args"]["precision"] == "bf16-mixed"
    assert (out / "results.md").read_text().startswith("fine-tuning against a plain loop, bf16-mixed\n")
    assert bench.build_parser().parse_args([]).precision == "32-true"


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_plain_loop_runs_forward_and_loss_under_the_precision(precision: str, demo_cache: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Every forward pass of the plain loop (training, validation, test) and its loss run under bf16 autocast
    with --precision bf16-mixed, and under none with 32-true; one training batch, tiny CNN."""
    import bench.probes.finetune_baseline as bench

    monkeypatch.setenv("DERMKIT_CACHE", str(demo_cache))
    forwards: list[tuple[bool, bool, torch.dtype]] = []
    losses: list[bool] = []
    build_backbone = bench.build_backbone

    def recording_backbone(*args, **kwargs):  # the real backbone, with the autocast state of each call recorded
        backbone = build_backbone(*args, **kwargs)
        backbone.register_forward_hook(lambda module, _i, out: forwards.append(
            (module.training, torch.is_autocast_enabled("cpu"), out.dtype)))
        return backbone

    class RecordingLoss(torch.nn.CrossEntropyLoss):
        def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            losses.append(torch.is_autocast_enabled("cpu"))
            return super().forward(logits, target)

    monkeypatch.setattr(bench, "build_backbone", recording_backbone)
    monkeypatch.setattr(bench.nn, "CrossEntropyLoss", RecordingLoss)
    args = bench.build_parser().parse_args(["--data", "demo", "--backbone", "tiny_cnn", "--image-size", "32",
                                            "--batch-size", "8", "--workers", "0", "--epochs", "1",
                                            "--max-batches", "1", "--precision", precision])
    assert 0.0 <= bench.run_plain(args)["test_balanced_accuracy"] <= 1.0
    bf16 = precision == "bf16-mixed"
    assert {training for training, _, _ in forwards} == {True, False}  # training and validation/test passes
    assert {(enabled, dtype) for _, enabled, dtype in forwards} == {(bf16, torch.bfloat16 if bf16 else torch.float32)}
    assert losses == [bf16]
