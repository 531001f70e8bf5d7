"""bench.gpu_check: the GPU-sized plan resolves with each stage's schema; a tiny run on CPU writes
its JSON and markdown table (the GPU figures themselves need a GPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.probes.gpu_check import check_stage_parts, main, parse_args, plan
from dermkit.errors import DermkitError

PARTS = ["simclr_workers", "simclr_device", "simclr_resident", "synth_sampling", "finetune_resnet50",
         "finetune_resnet18"]


def test_gpu_sized_plan(tmp_path: Path) -> None:
    parts = plan(parse_args(["--data", "demo"]), "cuda", tmp_path)
    assert [p.name for p in parts] == PARTS
    by_name = {p.name: p for p in parts}
    for augment_on in ("workers", "device", "resident"):
        args = by_name[f"simclr_{augment_on}"].args
        assert {"resnet50", "224", "256", f"data.augment_on={augment_on}", "trainer.accelerator=gpu",
                "trainer.precision=bf16-mixed"} <= set(args)
    synth = by_name["synth_sampling"].args
    assert synth[synth.index("--preset") + 1] == "base" and synth[synth.index("--ddim-steps") + 1] == "50"
    assert synth[synth.index("--ddpm-steps") + 1] == "1000" and synth[synth.index("--device") + 1] == "cuda"
    assert synth[synth.index("--dpm-steps") + 1] == "20"
    assert {"resnet50", "224", "trainer.precision=bf16-mixed"} <= set(by_name["finetune_resnet50"].args)
    assert {"resnet18", "64", "trainer.precision=bf16-mixed"} <= set(by_name["finetune_resnet18"].args)
    for name in ("finetune_resnet50", "finetune_resnet18"):  # fine-tuning holds its images on the GPU by default
        assert "data.augment_on=resident" in by_name[name].args


def test_parts_picks_some_parts_and_refuses_unknown_ones(tmp_path: Path) -> None:
    args = parse_args(["--data", "demo", "--parts", "simclr_resident,finetune_resnet18", "--budget", "60"])
    assert [p.name for p in plan(args, "cuda", tmp_path)] == ["simclr_resident", "finetune_resnet18"]
    with pytest.raises(DermkitError, match="--parts simclr_gpu: choose among simclr_workers.*unknown: simclr_gpu"):
        parse_args(["--parts", "simclr_gpu"])
    with pytest.raises(DermkitError, match="the 2 parts need at least 60 s"):
        parse_args(["--parts", "simclr_resident,finetune_resnet18", "--budget", "50"])


@pytest.mark.slow  # one --check-configs process per stage: ~25 s on the loaded 2-core machine
def test_gpu_sized_stage_configs_resolve(tmp_path: Path) -> None:
    parts = plan(parse_args(["--data", "demo"]), "cuda", tmp_path)
    check_stage_parts(parts)  # raises DermkitError naming any key a stage refuses


def test_missing_ham10000_fails_before_writing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "check"
    with pytest.raises(SystemExit) as exit_info:
        main(["--device", "cpu", "--root", str(tmp_path / "nowhere"), "--out", str(out)])
    assert exit_info.value.code == 2
    assert "nowhere/HAM10000_metadata.csv not found" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow  # five stage processes: ~3 minutes on the loaded 2-core machine
def test_tiny_cpu_run_writes_json_and_table(tmp_cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "check"
    assert main(["--device", "cpu", "--tiny", "--data", "demo", "--out", str(out), "--budget", "1500"]) == 0
    report = json.loads((out / "gpu_check.json").read_text())
    assert list(report["parts"]) == PARTS and report["device"] == "cpu" and report["tiny"] is True
    for name in ("simclr_workers", "simclr_device", "simclr_resident", "finetune_resnet50", "finetune_resnet18"):
        part = report["parts"][name]
        assert "error" not in part, part
        assert part["images_per_second"] > 0, name
        assert 0.0 <= part["data_wait_fraction"] <= 1.0, name
        assert part["peak_gpu_memory_mib"] is None  # CPU: no GPU memory to report
        assert Path(part["log"]).is_file()
    synth = report["parts"]["synth_sampling"]
    assert synth["ddim_images_per_second"] > 0 and synth["ddpm_images_per_second"] > 0
    assert synth["dpm_images_per_second"] > 0 and synth["dpm_steps"] == 2
    assert synth["ddim_over_ddpm"] == pytest.approx(synth["ddim_images_per_second"] / synth["ddpm_images_per_second"])
    table = (out / "gpu_check.md").read_text()
    assert "| part | setting | images/s | data wait | peak GPU MiB | wall s |" in table
    assert "DPM-Solver++-2 (synth.generate's default) samples" in table
    for name in ("simclr_workers", "simclr_device", "simclr_resident", "synth_sampling: DDIM-2", "synth_sampling: DPM-2",
                 "synth_sampling: DDPM-4",
                 "finetune_resnet50", "finetune_resnet18"):
        assert f"| {name} |" in table, name
