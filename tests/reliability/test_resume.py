"""One resume behaviour in every stage (issue 16, issue 11): same command continues, changed settings refused.

Each case is a real stage command on the demo data with tiny models (tiny_cnn, 32 px, a few steps),
run in-process through the stage's ``main``. "Killed" runs are stopped with a KeyboardInterrupt
inside a training step (what Ctrl-C does); the checkpoint written then is what a re-run resumes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from dermkit.backbones import BackboneCard, build_backbone, save_backbone
from dermkit.config import REPO_ROOT, parse_config
from dermkit.console import console
from dermkit.resume import changed_settings
from finetune.config import FinetuneConfig
from finetune.module import ClassifierModule
from finetune.train import main as finetune_main

TINY_FINETUNE = ["--backbone", "tiny_cnn", "model.small_stem=true", "data.image_size=32", "data.batch_size=16",
                 "data.num_workers=0", "trainer.max_epochs=1", "trainer.limit_train_batches=4",
                 "trainer.accelerator=cpu"]


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Error lines are not wrapped, so a message can be matched whole."""
    monkeypatch.setattr(console, "width", 10_000)


def finetune_argv(out: Path | None, cache: Path, *extra: str) -> list[str]:
    return [*TINY_FINETUNE, f"data.cache_dir={cache}", *(["--out", str(out)] if out else []), *extra]


def saved_step(checkpoint: Path) -> int:
    return int(torch.load(checkpoint, map_location="cpu", weights_only=False)["global_step"])


def interrupt_at(monkeypatch: pytest.MonkeyPatch, module: type, step: int) -> None:
    """Make ``module.training_step`` raise KeyboardInterrupt at global step ``step`` (Ctrl-C)."""
    original = module.training_step

    def interrupted(self, batch, batch_idx):  # type: ignore[no-untyped-def]
        if self.global_step == step:
            raise KeyboardInterrupt
        return original(self, batch, batch_idx)

    monkeypatch.setattr(module, "training_step", interrupted)


def sigterm_at(monkeypatch: pytest.MonkeyPatch, module: type, step: int) -> None:
    """Make ``module.training_step`` send this process SIGTERM at global step ``step`` (``kill PID``)."""
    original = module.training_step

    def killed(self, batch, batch_idx):  # type: ignore[no-untyped-def]
        if self.global_step == step:
            os.kill(os.getpid(), signal.SIGTERM)  # Lightning's handler, registered for the fit, takes it
        return original(self, batch, batch_idx)

    monkeypatch.setattr(module, "training_step", killed)


def refused(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    """Run finetune.train, expect exit status 2, return its error output."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        finetune_main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_sigterm_saves_the_step_and_the_same_command_continues(tmp_path: Path, demo_cache: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """``kill PID`` (how a background job, or the grid, stops a stage): the batch under way finishes, its
    state is saved, the exit status says the run did not finish, and the same command continues."""
    out = tmp_path / "run"
    argv = finetune_argv(out, demo_cache)
    sigterm_at(monkeypatch, ClassifierModule, 1)
    with pytest.raises(SystemExit) as exit_info:
        finetune_main(argv)
    assert exit_info.value.code == 128 + signal.SIGTERM
    last = out / "checkpoints" / "last.ckpt"
    assert saved_step(last) == 2  # step 1 finished before Lightning stopped the loop
    monkeypatch.undo()
    assert finetune_main(argv) == 0
    assert saved_step(last) == 4


def test_a_weight_average_is_checkpointed_tested_and_resumed(tmp_path: Path, demo_cache: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """``optim.ema_decay``: checkpoints hold the average as their weights (the trained ones beside it),
    and a resumed run continues the average rather than restarting it from the checkpoint's weights."""
    out = tmp_path / "run"
    argv = finetune_argv(out, demo_cache, "optim.ema_decay=0.5")
    interrupt_at(monkeypatch, ClassifierModule, 2)
    with pytest.raises(SystemExit):
        finetune_main(argv)
    monkeypatch.undo()
    assert finetune_main(argv) == 0
    last = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert int(last["averaging_state"]["n_averaged"]) == 4  # steps 1-2, then 3-4 after the resume
    averaged, trained = last["state_dict"], last["current_model_state"]
    assert any(not torch.equal(averaged[k], trained[k]) for k in averaged if averaged[k].is_floating_point())
    best = json.loads((out / "metrics.json").read_text())["best_checkpoint"]
    assert "current_model_state" in torch.load(best, map_location="cpu", weights_only=False)  # tested: the average


def test_finetune_stopped_then_same_command_continues(tmp_path: Path, demo_cache: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    argv = finetune_argv(out, demo_cache)
    interrupt_at(monkeypatch, ClassifierModule, 2)
    with pytest.raises(SystemExit):
        finetune_main(argv)
    last = out / "checkpoints" / "last.ckpt"
    assert saved_step(last) == 2
    monkeypatch.undo()
    assert finetune_main(argv) == 0  # the same command, no --resume
    assert saved_step(last) == 4  # continued from step 2, not started over
    assert sorted(p.name for p in (out / "checkpoints").glob("last*.ckpt")) == ["last.ckpt", "last.prev.ckpt"]
    assert (out / "metrics.json").is_file()


HOLD_FOLDER = """
import sys, time
from dermkit.resume import claim_run_folder
claim_run_folder(sys.argv[1])
print("held", flush=True)
time.sleep(600)
"""


def test_a_second_process_in_a_run_folder_is_refused_naming_the_first(tmp_path: Path, demo_cache: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    """A resume typed while the run still goes on stops before writing anything; the lock survives
    --restart's move and goes with its process."""
    from dermkit.resume import LOCK_FILE, move_aside

    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_FOLDER, str(out)], stdout=subprocess.PIPE, text=True,
                              cwd=REPO_ROOT)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        err = refused(capsys, finetune_argv(out, demo_cache))
        assert f"{out.resolve()} is in use by another process (pid {holder.pid} on " in err and "kill PID" in err
        assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]  # nothing written
        assert move_aside(out) is None  # the lock file is not one of the run's files
    finally:
        holder.kill()
        holder.wait()
    assert finetune_main(finetune_argv(out, demo_cache)) == 0  # the kernel dropped the dead process's lock


def test_finetune_changed_setting_is_refused_with_the_keys_named(tmp_path: Path, demo_cache: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    assert finetune_main(finetune_argv(out, demo_cache)) == 0
    err = refused(capsys, finetune_argv(out, demo_cache, "optim.lr=0.01", "--fraction", "0.5"))
    assert "optim.lr: 0.001 -> 0.01" in err and "data.fraction: 1.0 -> 0.5" in err and "--restart" in err
    err = refused(capsys, finetune_argv(out, demo_cache, "data.split_seed=1"))
    assert "data.split_seed: 0 -> 1" in err and "split hash" in err  # other data: the split differs too
    err = refused(capsys, finetune_argv(out, demo_cache, "trainer.max_epochs=2"))
    assert "trainer.max_epochs: 1 -> 2" in err and "learning-rate schedule" in err
    assert saved_step(out / "checkpoints" / "last.ckpt") == 4  # nothing was trained by the refused runs


def test_finetune_neutral_keys_and_keys_missing_from_an_old_config_still_resume(
        tmp_path: Path, demo_cache: Path) -> None:
    out = tmp_path / "run"
    assert finetune_main(finetune_argv(out, demo_cache)) == 0
    recorded = out / "config.yaml"
    old = OmegaConf.to_container(OmegaConf.load(recorded))
    del old["restart"], old["loss"]["beta"]  # as written before these keys existed (defaults)
    recorded.write_text(OmegaConf.to_yaml(old))
    # Logging frequency and how the report is drawn cannot change the result: the run resumes (nothing left to train).
    assert finetune_main(finetune_argv(out, demo_cache, "trainer.log_every_n_steps=3", "report.bootstrap=200")) == 0
    assert saved_step(out / "checkpoints" / "last.ckpt") == 4
    assert not list((out / "checkpoints").glob("last-v*.ckpt"))


def test_restart_starts_a_new_run_and_keeps_the_old_one(tmp_path: Path, demo_cache: Path) -> None:
    out = tmp_path / "run"
    interrupt_at_step = 3
    with pytest.MonkeyPatch.context() as patch:
        interrupt_at(patch, ClassifierModule, interrupt_at_step)
        with pytest.raises(SystemExit):
            finetune_main(finetune_argv(out, demo_cache))
    assert finetune_main(finetune_argv(out, demo_cache, "optim.lr=0.01", "--restart")) == 0
    assert saved_step(out / "checkpoints" / "last.ckpt") == 4  # a full new run, from step 0
    assert OmegaConf.load(out / "config.yaml").optim.lr == 0.01
    replaced = list(out.glob("replaced-*"))
    assert len(replaced) == 1
    assert saved_step(replaced[0] / "checkpoints" / "last.ckpt") == interrupt_at_step
    assert OmegaConf.load(replaced[0] / "config.yaml").optim.lr == 0.001


def test_default_run_folder_lies_under_dermkit_runs(tmp_path: Path, demo_cache: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    runs, cwd = tmp_path / "runs-elsewhere", tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("DERMKIT_RUNS", str(runs))
    assert finetune_main(finetune_argv(None, demo_cache)) == 0
    assert (runs / "finetune" / "tiny_cnn_demo_32px" / "metrics.json").is_file()  # <backbone>_<data>_<size>px
    assert not (cwd / "runs").exists()


def _finetune_folder(argv: list[str]) -> Path:
    from finetune.config import run_folder
    from finetune.train import FLAGS
    return run_folder(parse_config(FinetuneConfig, "python -m finetune.train", "", argv, FLAGS))


def _generator_folder(argv: list[str]) -> Path:
    from synth.train import FLAGS, SynthTrainConfig, generator_folder
    return generator_folder(parse_config(SynthTrainConfig, "python -m synth.train", "", argv, FLAGS))


@pytest.mark.parametrize(("folder_of", "argv", "expected"), [
    (_finetune_folder, [], "finetune/resnet18_demo_64px"),
    (_finetune_folder, ["--data", "ham10000", "--image-size", "128"], "finetune/resnet18_ham10000_128px"),
    (_generator_folder, [], "synth/small_demo_32px"),
    (_generator_folder, ["--data", "ham10000", "--image-size", "64", "--preset", "base"], "synth/base_ham10000_64px"),
])
def test_the_default_folder_is_named_by_model_data_and_size(folder_of: Callable[[list[str]], Path], argv: list[str],
                                                            expected: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # It was $DERMKIT_RUNS/finetune/demo (synth/default) whatever --data said: a HAM10000 run without --out landed in
    # "demo", and a demo run after it was refused there for its changed settings. --out still wins.
    monkeypatch.setenv("DERMKIT_RUNS", str(tmp_path))
    assert folder_of(argv) == tmp_path / expected
    assert folder_of([*argv, "--out", str(tmp_path / "mine")]) == tmp_path / "mine"


def test_truncated_checkpoint_is_one_clear_error_and_the_previous_one_is_kept(
        tmp_path: Path, demo_cache: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    argv = finetune_argv(out, demo_cache, "trainer.max_epochs=2", "trainer.limit_train_batches=2")
    assert finetune_main(argv) == 0
    last, previous = out / "checkpoints" / "last.ckpt", out / "checkpoints" / "last.prev.ckpt"
    assert saved_step(previous) == 2 and saved_step(last) == 4  # the save at step 4 kept the one of step 2
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])  # a copy cut short
    err = refused(capsys, argv)
    assert f"{last} is truncated" in err and f"mv {previous} {last}" in err
    assert [line for line in err.splitlines() if "error" in line.lower()] == [err.splitlines()[-1]]
    assert "Traceback" not in err
    previous.replace(last)  # what the message says to do
    assert finetune_main(argv) == 0 and saved_step(last) == 4
    last.write_bytes(b"")  # an empty file, and no earlier checkpoint left
    err = refused(capsys, argv)
    assert f"{last} is empty" in err and "--restart" in err


def test_truncated_files_in_evaluation_are_one_clear_error(tmp_path: Path, demo_cache: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    from finetune.evaluate import main as evaluate_main
    from ssl.evaluate import main as ssl_evaluate_main

    out = tmp_path / "run"
    assert finetune_main(finetune_argv(out, demo_cache)) == 0
    best = next((out / "checkpoints").glob("best-*.ckpt"))
    best.write_bytes(best.read_bytes()[:1000])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        evaluate_main(["--checkpoint", str(best), "--data", "demo", f"data.cache_dir={demo_cache}"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and f"{best} is truncated" in err and "Traceback" not in err

    weights = tmp_path / "backbone" / "backbone.safetensors"
    save_backbone(weights, build_backbone("tiny_cnn", True, 32), BackboneCard(architecture="tiny_cnn", input_size=32,
                                                                              small_stem=True))
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(SystemExit) as exit_info:
        ssl_evaluate_main(["--weights", str(weights), "--data", "demo", f"data.cache_dir={demo_cache}"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and f"{weights} is truncated" in err and "ssl.pretrain" in err


def test_changed_settings_counts_missing_keys_as_defaults_and_ignores_neutral_keys() -> None:
    defaults = {"trainer": {"max_epochs": 10, "devices": "auto"}, "data": {"num_workers": 2}, "restart": False}
    new = {"trainer": {"max_epochs": 10, "devices": "2"}, "data": {"num_workers": 8}, "restart": True}
    old = {"trainer": {"devices": "auto"}, "data": {"num_workers": 2}}  # written before max_epochs/restart existed
    assert changed_settings(old, new, defaults) == {"trainer.devices": ("auto", "2")}


def test_a_run_started_on_a_gpu_resumes_on_the_cpu_but_not_with_other_devices() -> None:
    # A long step started on a lent GPU goes on here (issue 12's generators); the device count sets the
    # global batch under DDP, so it stays a setting.
    defaults = {"trainer": {"accelerator": "auto", "devices": "auto"}}
    on_gpu = {"trainer": {"accelerator": "gpu", "devices": "auto"}}
    assert changed_settings(on_gpu, {"trainer": {"accelerator": "cpu", "devices": "auto"}}, defaults) == {}
    assert changed_settings(on_gpu, {"trainer": {"accelerator": "cpu", "devices": "2"}}, defaults) == \
        {"trainer.devices": ("auto", "2")}


def test_a_run_recorded_with_the_old_key_names_still_resumes(tmp_path: Path) -> None:
    """synth.train's ``out`` and ``checkpoint_every`` became ``out_dir`` and ``checkpoint_every_n_steps``
    (issue 14): a run folder whose config.yaml has the old names resumes, and is still compared."""
    from dermkit.config import parse_config, to_container
    from dermkit.errors import DermkitError
    from dermkit.resume import resume_checkpoint
    from synth.train import FLAGS, SynthTrainConfig

    run = tmp_path / "generator"

    def config(*extra: str) -> SynthTrainConfig:
        return parse_config(SynthTrainConfig, "t", "t", ["--out", str(run), "checkpoint_every_n_steps=50", *extra],
                            FLAGS)

    recorded = to_container(config())
    recorded["out"] = recorded.pop("out_dir")
    recorded["checkpoint_every"] = 25  # and changed: checkpoint frequency may differ on resume
    del recorded["checkpoint_every_n_steps"]
    last = run / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    torch.save({"global_step": 3}, last)
    (run / "config.yaml").write_text(OmegaConf.to_yaml(recorded))
    assert resume_checkpoint(run, config(), SynthTrainConfig) == last
    with pytest.raises(DermkitError, match=r"seed: 0 -> 1"):  # the old file is read, not skipped
        resume_checkpoint(run, config("--seed", "1"), SynthTrainConfig)


def _recorded_run(run: Path, recorded: dict) -> Path:
    """A run folder holding ``recorded`` as its config.yaml and a checkpoint at step 3."""
    last = run / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    torch.save({"global_step": 3}, last)
    (run / "config.yaml").write_text(OmegaConf.to_yaml(recorded))
    return last


# (stage module, its config class, key, the value runs had before the key existed, today's default)
LEGACY_CASES = [
    ("ssl.pretrain", "PretrainConfig", "data.augment_on", "workers", "device"),
    ("finetune.train", "FinetuneConfig", "data.augment_on", "workers", "device"),
    ("finetune.train", "FinetuneConfig", "augment.rotation", 180.0, 0.0),
    ("synth.train", "SynthTrainConfig", "model.prediction_type", "epsilon", "v_prediction"),
]


def test_every_legacy_default_has_a_case() -> None:
    from dermkit.resume import LEGACY_DEFAULTS

    assert {(key, value) for _, _, key, value, _ in LEGACY_CASES} == set(LEGACY_DEFAULTS.items())


@pytest.mark.parametrize(("module", "schema_name", "key", "old", "default"), LEGACY_CASES,
                         ids=[f"{case[0]}-{case[2]}" for case in LEGACY_CASES])
def test_a_run_recorded_before_a_key_existed_resumes_only_with_the_old_value(
        tmp_path: Path, module: str, schema_name: str, key: str, old: object, default: object) -> None:
    """A key whose default changed after it was added: a folder recorded before it existed trained with
    the old value, so resuming it with today's default is refused naming the key, and the old value is
    accepted (dermkit.resume.LEGACY_DEFAULTS)."""
    import importlib

    from dermkit.config import parse_config, to_container
    from dermkit.errors import DermkitError
    from dermkit.resume import resume_checkpoint

    stage = importlib.import_module(module)
    schema = getattr(stage, schema_name)
    run = tmp_path / "run"

    def config(*extra: str) -> object:
        return parse_config(schema, "t", "t", ["--out", str(run), *extra], stage.FLAGS)

    section, name = key.split(".")
    assert getattr(getattr(config(), section), name) == default
    recorded = to_container(config())
    del recorded[section][name]  # as written before the key existed
    if not recorded[section]:
        del recorded[section]
    last = _recorded_run(run, recorded)
    with pytest.raises(DermkitError, match=rf"{re.escape(key)}: {re.escape(repr(old))} -> {re.escape(repr(default))}"):
        resume_checkpoint(run, config(), schema)
    assert resume_checkpoint(run, config(f"{key}={old}"), schema) == last


def test_pretraining_resumes_from_a_folder_outside_the_repository(tmp_path: Path, demo_cache: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from ssl.pretrain import run_pretraining
    from ssl.simclr_module import SimCLRModule
    from tests.ssl.conftest import TINY

    runs, cwd = tmp_path / "runs", tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("DERMKIT_RUNS", str(runs))
    from dermkit.config import parse_config
    from ssl.pretrain import FLAGS, PretrainConfig

    def config() -> PretrainConfig:
        return parse_config(PretrainConfig, "t", "t", [*TINY, f"data.cache_dir={demo_cache}", "--max-steps", "5"],
                            FLAGS)

    with pytest.MonkeyPatch.context() as patch:
        interrupt_at(patch, SimCLRModule, 3)
        with pytest.raises(SystemExit):
            run_pretraining(config())
    folder = runs / "ssl" / "simclr_tiny_cnn_demo32"
    assert saved_step(folder / "checkpoints" / "last.ckpt") == 3
    resumed = run_pretraining(config())
    assert resumed.out_dir == folder and resumed.start_step == 3 and resumed.global_step == 5
    assert not (cwd / "runs").exists()


@pytest.mark.slow
def test_grid_resumes_from_a_folder_outside_the_repository(tmp_path: Path, demo_cache: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A one-cell demo grid under $DERMKIT_RUNS; a cell stopped before its done marker resumes, not restarts."""
    from bench.grid.keys import DONE_FILE
    from bench.label_efficiency import main as grid_main

    runs = tmp_path / "runs"
    monkeypatch.setenv("DERMKIT_RUNS", str(runs))
    monkeypatch.setenv("DERMKIT_CACHE", str(demo_cache))
    config = tmp_path / "bench.yaml"
    config.write_text(OmegaConf.to_yaml({
        "preset": "resume-test", "about": "one-cell resume test",
        "data": {"name": "demo", "image_size": 32, "batch_size": 16, "num_workers": 0},
        "model": {"backbone": "tiny_cnn", "small_stem": True},
        "grid": {"fractions": [1.0], "inits": ["random"], "synthetic": [False], "seeds": [0]},
        "finetune": {"overrides": ["trainer.max_steps=2", "trainer.max_epochs=1", "trainer.accelerator=cpu"]},
        "run": {"jobs": 1, "threads": 0}, "report": {"n_bootstrap": 200},
    }))
    assert grid_main(["--config", str(config)]) == 0
    cell = runs / "bench" / "resume-test" / "cells" / "f1-random-real-s0"
    last = cell / "checkpoints" / "last.ckpt"
    assert (cell / DONE_FILE).is_file() and saved_step(last) == 2
    (cell / DONE_FILE).unlink()  # as if the grid was killed after the cell's last checkpoint
    assert grid_main(["--config", str(config)]) == 0
    assert (cell / DONE_FILE).is_file() and saved_step(last) == 2  # resumed at its end, not trained again
    assert not list((cell / "checkpoints").glob("last-v*.ckpt"))
    assert "Resuming from" in (cell / "stage.log").read_text()
