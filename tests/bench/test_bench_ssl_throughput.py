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

