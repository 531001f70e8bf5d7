"""synth.train: a tiny UNet trains on the demo training split and saves a loadable generator."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from dermkit.config import DataConfig, parse_config
from dermkit.data.prepare import prepare_data
from dermkit.errors import DermkitError
from synth.generator import load_generator, read_info
from synth.model import unet_config
from synth.sampling import make_sampler
from synth.train import FLAGS, DiffusionConfig, DiffusionModule, DiffusionOptimConfig, SynthTrainConfig, train
from synth.train import main as train_main
from tests.synth.conftest import tiny_train_argv
from tests.synth.test_sampling import OracleUNet


def test_generator_stores_split_hash_and_training_counts(tiny_generator: Path, demo_cache: Path) -> None:
    unet, scheduler, info = load_generator(tiny_generator)
    prepared = prepare_data(DataConfig(image_size=16, cache_dir=str(demo_cache)))
    assert info.split_hash == prepared.split_hash
    assert info.train_counts == prepared.class_counts(prepared.indices("train"))
    assert sum(info.train_counts.values()) < len(prepared.indices("all"))  # training split only
    assert info.classes == prepared.classes and info.steps_trained == 2
    assert unet.config.num_class_embeds == len(info.classes) + 1 and unet.config.sample_size == 16
    assert scheduler.config.num_train_timesteps == 1000
    assert (tiny_generator / "run.json").is_file() and (tiny_generator / "config.yaml").is_file()


def test_rerun_with_same_folder_resumes(tmp_path: Path, demo_cache: Path) -> None:
    out = tmp_path / "gen"
    assert train_main(tiny_train_argv(out, demo_cache, steps=2)) == 0
    assert train_main(tiny_train_argv(out, demo_cache, steps=2)) == 0  # finished: resumes, trains nothing
    assert read_info(out).steps_trained == 2
    state = json.loads((out / "train_state.json").read_text())
    with pytest.raises(SystemExit) as exit_info:  # another preset into the same folder: refused
        train_main([*tiny_train_argv(out, demo_cache, steps=2), "--preset", "small"])
    assert exit_info.value.code == 2 and state["preset"] == "tiny"
    with pytest.raises(SystemExit) as exit_info:  # a longer run: another cosine schedule, refused
        train_main(tiny_train_argv(out, demo_cache, steps=3))
    assert exit_info.value.code == 2


def test_unknown_preset_is_an_error(tmp_path: Path, demo_cache: Path) -> None:
    cfg = parse_config(SynthTrainConfig, "t", "t", [*tiny_train_argv(tmp_path / "x", demo_cache), "--preset", "tinny"],
                       FLAGS)
    with pytest.raises(DermkitError, match="Did you mean: tiny"):
        train(cfg)


def test_ctrl_c_saves_the_running_step_and_the_rerun_resumes(tmp_path: Path, demo_cache: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    original = DiffusionModule.training_step

    def interrupted_at_step_2(self, batch, batch_idx):  # type: ignore[no-untyped-def]
        if self.global_step == 2:
            raise KeyboardInterrupt
        return original(self, batch, batch_idx)

    out = tmp_path / "gen"
    # no regular save before the end
    argv = [*tiny_train_argv(out, demo_cache, steps=4), "checkpoint_every_n_steps=100"]
    monkeypatch.setattr(DiffusionModule, "training_step", interrupted_at_step_2)
    with pytest.raises(SystemExit):
        train_main(argv)
    assert torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["global_step"] == 2
    assert not (out / "dermkit_generator.json").exists()  # no generator is saved from an interrupted run
    monkeypatch.setattr(DiffusionModule, "training_step", original)
    assert train_main(argv) == 0
    assert read_info(out).steps_trained == 4


@pytest.mark.parametrize("prediction_type", ["v_prediction", "epsilon"])
def test_training_target_follows_the_prediction_type(prediction_type: str) -> None:
    torch.manual_seed(0)
    model_cfg = DiffusionConfig(preset="tiny", label_dropout=0.0, prediction_type=prediction_type)
    module = DiffusionModule(unet_config("tiny", 2, 8), 2, model_cfg, DiffusionOptimConfig())
    module.log = lambda *args, **kwargs: None  # type: ignore[method-assign]  # no Trainer here
    module.lr_schedulers = lambda: SimpleNamespace(get_last_lr=lambda: [0.0])  # type: ignore[method-assign]
    images = torch.full((4, 3, 8, 8), 255, dtype=torch.uint8)  # every image is the constant 1.0
    labels = torch.tensor([0, 1, 0, 1])
    right = OracleUNet(module.noise_scheduler, [1.0, 1.0])  # predicts what the scheduler says
    other_type = "epsilon" if prediction_type == "v_prediction" else "v_prediction"
    wrong = OracleUNet(SimpleNamespace(alphas_cumprod=module.noise_scheduler.alphas_cumprod,
                                       config=SimpleNamespace(prediction_type=other_type)), [1.0, 1.0])
    module.unet = right  # type: ignore[assignment]
    assert module.training_step((images, labels), 0).item() < 1e-8
    module.unet = wrong  # type: ignore[assignment]
    assert module.training_step((images, labels), 0).item() > 1e-3


def test_generator_records_its_prediction_type(tiny_generator: Path) -> None:
    _, scheduler, _ = load_generator(tiny_generator)
    assert scheduler.config.prediction_type == "v_prediction"  # the default
    assert make_sampler("ddim", scheduler).config.prediction_type == "v_prediction"
    assert make_sampler("ddpm", scheduler).config.prediction_type == "v_prediction"


def test_bad_prediction_type_is_an_error_before_anything_is_written(tmp_path: Path, demo_cache: Path) -> None:
    out = tmp_path / "x"
    cfg = parse_config(SynthTrainConfig, "t", "t", [*tiny_train_argv(out, demo_cache), "model.prediction_type=v"],
                       FLAGS)
    with pytest.raises(DermkitError, match="v_prediction"):
        train(cfg)
    assert not out.exists()


def test_epsilon_folder_is_not_resumed_as_v_prediction(tmp_path: Path, demo_cache: Path) -> None:
    out = tmp_path / "gen"
    assert train_main([*tiny_train_argv(out, demo_cache, steps=1), "model.prediction_type=epsilon"]) == 0
    with pytest.raises(SystemExit) as exit_info:  # the default is v_prediction: refused, not mixed
        train_main(tiny_train_argv(out, demo_cache, steps=1))
    assert exit_info.value.code == 2
    assert train_main([*tiny_train_argv(out, demo_cache, steps=1), "model.prediction_type=epsilon"]) == 0
    assert read_info(out).steps_trained == 1


def test_augment_on_of_a_recorded_run_does_not_refuse_its_resume(tmp_path: Path, demo_cache: Path) -> None:
    """The generator does not read data.augment_on: a run started when its default was workers
    resumes under the default device (issue 13)."""
    out = tmp_path / "gen"
    assert train_main([*tiny_train_argv(out, demo_cache, steps=1), "data.augment_on=workers"]) == 0
    assert train_main(tiny_train_argv(out, demo_cache, steps=1)) == 0
    assert read_info(out).steps_trained == 1
