"""``optim.freeze_backbone=true``: a whole run trains the head only, from any initialisation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dermkit.backbones import build_backbone
from finetune.train import main
from tests.finetune.helpers import IMAGE_SIZE


@pytest.mark.slow  # a 2-epoch demo fine-tune (~15-30 s on 2 cores)
def test_a_frozen_run_changes_only_the_head(demo_cache: Path, tmp_path: Path) -> None:
    torch.manual_seed(1)
    backbone = build_backbone("tiny_cnn", True, IMAGE_SIZE)
    with torch.no_grad():  # batch-norm statistics unlike a fresh layer's, so a reset or an update would show
        for name, buffer in backbone.net.named_buffers():
            if "running_mean" in name:
                buffer.uniform_(-0.1, 0.1)
            elif "running_var" in name:
                buffer.uniform_(0.5, 1.5)
    weights = tmp_path / "weights.pth"
    torch.save(backbone.net.state_dict(), weights)
    out = tmp_path / "run"
    assert main(["--out", str(out), "--backbone", "tiny_cnn", "--init", str(weights), f"data.cache_dir={demo_cache}",
                 f"data.image_size={IMAGE_SIZE}", "data.batch_size=32", "data.num_workers=0", "model.small_stem=true",
                 "trainer.max_epochs=2", "trainer.limit_train_batches=2", "trainer.accelerator=cpu",
                 "optim.freeze_backbone=true", "optim.lr=0.01", "report.explain=0", "report.bootstrap=100"]) == 0
    checkpoint = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    state = checkpoint["state_dict"]
    for name, value in backbone.net.state_dict().items():  # weights, batch-norm statistics and batch counts
        assert torch.equal(state[f"backbone.net.{name}"], value), name
    # Nothing else trainable: the head and the loss's class weights (a buffer) are the rest.
    assert set(state) - {f"backbone.net.{n}" for n in backbone.net.state_dict()} == {"head.weight", "head.bias",
                                                                                    "criterion.alpha"}
    # The optimiser held the head alone (weight and bias), and moved it.
    optimiser = checkpoint["optimizer_states"][0]
    assert [group["params"] for group in optimiser["param_groups"]] == [[0, 1]]
    assert all(s["exp_avg"].abs().sum() > 0 for s in optimiser["state"].values())
    assert json.loads((out / "run.json").read_text())["backbone"]["frozen"] is True
    assert checkpoint["hyper_parameters"]["freeze_backbone"] is True  # finetune.evaluate rebuilds it frozen
