"""The shared flags (dermkit.flags): names from the registries, one spelling in every command."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dermkit.backbones import BACKBONES
from dermkit.config import BackboneConfig, DataConfig, Flag, parse_config
from dermkit.data.readers import reader_names
from dermkit.errors import DermkitError
from dermkit.flags import backbone_flag, check_backbone, data_flag, out_flag, root_flag, weights_flag

# Every command parsed with dermkit.config, by module (dermkit.data runs its __main__).
COMMANDS = ["ssl.pretrain", "ssl.evaluate", "synth.train", "synth.generate", "synth.evaluate", "synth.speed",
            "synth.snapshot",
            "finetune.train", "finetune.evaluate", "finetune.filter_synthetic", "finetune.export",
            "dermkit.data.__main__",
            "bench.label_efficiency"]


@dataclass
class Schema:
    data: DataConfig = field(default_factory=DataConfig)
    model: BackboneConfig = field(default_factory=BackboneConfig)
    weights: str = ""
    out_dir: str = ""


FLAGS = [data_flag(), backbone_flag(weights_option="--weights"), weights_flag("w"), out_flag("o")]


def parse(*argv: str) -> Schema:
    return parse_config(Schema, "test", "test", list(argv), FLAGS)


def test_help_lists_the_registered_names() -> None:
    assert reader_names() == sorted(reader_names()) and {"demo", "ham10000", "folder"} <= set(reader_names())
    assert data_flag().help == f"dataset format: {', '.join(reader_names())}"
    assert backbone_flag().help == f"architecture: {', '.join(BACKBONES)}"
    assert (data_flag().option, data_flag().key, backbone_flag().key, out_flag("x").key) == \
        ("--data", "data.name", "model.backbone", "out_dir")


@pytest.mark.parametrize("name", list(BACKBONES))
def test_every_registered_backbone_is_accepted(name: str) -> None:
    assert parse("--backbone", name).model.backbone == name
    check_backbone(name)


def test_an_unknown_backbone_lists_the_registry() -> None:
    with pytest.raises(DermkitError, match=r"'resnet19'.*Did you mean: resnet18.*Known: resnet18, resnet50"):
        parse("--backbone", "resnet19")
    with pytest.raises(DermkitError, match="model.backbone='vit'"):  # from an override too, not only the flag
        parse("model.backbone=vit")


@pytest.mark.parametrize("value", ["runs/ssl/x/backbone.safetensors", "backbone.safetensors", "imagenet.pth"])
def test_a_weights_file_given_as_backbone_names_the_weights_flag(value: str) -> None:
    with pytest.raises(DermkitError, match=f"--backbone names an architecture.*--weights {value}"):
        parse("--backbone", value)
    with pytest.raises(DermkitError, match=f"--init {value}"):
        check_backbone(value)  # the training commands take a weights file as --init


def test_random_is_no_backbone_and_no_weights() -> None:
    with pytest.raises(DermkitError, match="'random'.*without --weights"):
        parse("--backbone", "random")
    with pytest.raises(DermkitError, match="weights='random'.*leave out --weights"):
        parse("--weights", "random")
    assert parse().weights == ""


def test_out_is_checked_before_any_work(tmp_path: Path) -> None:
    file = tmp_path / "a-file"
    file.write_text("x")
    with pytest.raises(DermkitError, match=r"--out \(out_dir\) .*a-file is a file"):
        parse("--out", str(file))
    with pytest.raises(DermkitError, match="is a file"):  # as an override too
        parse(f"out_dir={file}")
    assert parse("--out", str(tmp_path / "new")).out_dir == str(tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_an_old_flag_names_its_new_spelling(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse("--arch", "resnet18")
    assert exit_info.value.code == 2
    assert "--arch is now called --backbone" in capsys.readouterr().err


@pytest.mark.parametrize("module", COMMANDS)
def test_every_command_takes_its_shared_flags_from_the_library(module: str) -> None:
    flags: list[Flag] = importlib.import_module(module).FLAGS
    by_option = {flag.option: flag for flag in flags}
    assert "--out" in by_option
    assert by_option["--out"].key == "out_dir" and by_option["--out"].check is not None
    if "--data" in by_option:
        assert by_option["--data"].help.startswith(data_flag().help)
        assert by_option["--root"] == root_flag()
    if "--backbone" in by_option:
        assert by_option["--backbone"].help.startswith(backbone_flag().help) and by_option["--backbone"].check
    assert "--arch" not in by_option
