"""Config parsing: YAML file, flags and dotlist overrides in order; unknown keys and bad types rejected."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dermkit.config import DataConfig, Flag, TrainerConfig, parse_config
from dermkit.errors import DermkitError


@dataclass
class Schema:
    data: DataConfig = field(default_factory=DataConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    out: str = "runs/x"


FLAGS = [Flag("--root", "data.root", "dataset folder"), Flag("--epochs", "trainer.max_epochs", "epochs", type=int),
         Flag("--skip-bad", "data.skip_bad", "skip bad files", type=bool)]


def parse(*argv: str) -> Schema:
    return parse_config(Schema, "test", "test command", list(argv), FLAGS)


def test_defaults() -> None:
    cfg = parse()
    assert cfg.data.name == "demo" and cfg.trainer.max_epochs == 10 and cfg.out == "runs/x"


def test_dotlist_overrides() -> None:
    cfg = parse("trainer.max_epochs=5", "data.root=/x", "out=/y")
    assert cfg.trainer.max_epochs == 5 and cfg.data.root == "/x" and cfg.out == "/y"


def test_flags() -> None:
    cfg = parse("--root", "/data", "--epochs", "3", "--skip-bad")
    assert cfg.data.root == "/data" and cfg.trainer.max_epochs == 3 and cfg.data.skip_bad is True


def test_yaml_file_then_flags_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  root: /from-file\n  image_size: 32\ntrainer:\n  max_epochs: 7\n")
    cfg = parse("--config", str(path))
    assert (cfg.data.root, cfg.data.image_size, cfg.trainer.max_epochs) == ("/from-file", 32, 7)
    cfg = parse("--config", str(path), "--root", "/from-flag", "trainer.max_epochs=2")
    assert (cfg.data.root, cfg.data.image_size, cfg.trainer.max_epochs) == ("/from-flag", 32, 2)
    assert parse("--config", str(path), "--root", "/a", "data.root=/b").data.root == "/b"


def test_unknown_key_names_it_and_closest_keys() -> None:
    with pytest.raises(DermkitError, match=r"Unknown config key 'data.rooot'.*data\.root") as err:
        parse("data.rooot=/x")
    assert "command-line overrides" in str(err.value)
    with pytest.raises(DermkitError, match=r"'trainer.max_epoch'.*trainer\.max_epochs"):
        parse("trainer.max_epoch=3")


def test_misspelt_nested_key_in_yaml(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n  batchsize: 3\n")
    with pytest.raises(DermkitError, match=r"'data.batchsize' in .*bad.yaml.*data\.batch_size"):
        parse("--config", str(path))


def test_misspelt_section() -> None:
    with pytest.raises(DermkitError, match=r"Unknown config key 'dta.*Closest valid keys: data"):
        parse("dta.root=/x")


@pytest.mark.parametrize("override", ["data.image_size=abc", "trainer.max_epochs=1.5x", "data.skip_bad=maybe"])
def test_bad_type(override: str) -> None:
    key = override.split("=")[0]
    with pytest.raises(DermkitError, match=f"Bad value for config key '{key}'"):
        parse(override)


def test_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(DermkitError, match="does not exist"):
        parse("--config", str(tmp_path / "missing.yaml"))
    bad = tmp_path / "list.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(DermkitError, match="must hold a mapping"):
        parse("--config", str(bad))


def test_override_without_equals() -> None:
    with pytest.raises(DermkitError, match="not of the form key=value"):
        parse("trainer.max_epochs")


def test_resolved_config_rejects_new_keys() -> None:
    cfg = parse()
    with pytest.raises(Exception):
        cfg.data.not_a_key = 1  # type: ignore[attr-defined]


@dataclass
class OneNameSchema:
    out_dir: str = "runs/x"
    checkpoint_every_n_steps: int = 0


@pytest.mark.parametrize(("old", "new"), [("out", "out_dir"), ("checkpoint_every", "checkpoint_every_n_steps")])
def test_old_spelling_names_the_new_key(old: str, new: str, tmp_path: Path) -> None:
    with pytest.raises(DermkitError, match=f"'{old}' in command-line overrides is now called '{new}'"):
        parse_config(OneNameSchema, "test", "", [f"{old}=1"])
    path = tmp_path / "old.yaml"
    path.write_text(f"{old}: 1\n")
    with pytest.raises(DermkitError, match=f"'{old}' in .*old.yaml is now called '{new}'"):
        parse_config(OneNameSchema, "test", "", ["--config", str(path)])
