"""Validating fewer epochs (``val.every_n_epochs``, ``val.start``) trains the same and picks the same best epoch."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from finetune.train import main
from tests.finetune.helpers import IMAGE_SIZE

EPOCHS = 6


def test_a_schedule_with_max_steps_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "val.every_n_epochs=2", "trainer.max_steps=10"])
    assert "trainer.max_steps" in capsys.readouterr().err
    assert not (tmp_path / "run.json").exists()


def _demo_run(out: Path, cache: Path, *settings: str) -> tuple[dict[int, float], dict]:
    """A 6-epoch demo fine-tune (tiny_cnn, 32 px, 2 steps an epoch): (validation balanced accuracy per validated
    epoch, metrics.json)."""
    assert main(["--out", str(out), "--backbone", "tiny_cnn", f"data.cache_dir={cache}",
                 f"data.image_size={IMAGE_SIZE}", "data.batch_size=32", "data.num_workers=0", "model.small_stem=true", f"trainer.max_epochs={EPOCHS}",
                 "trainer.limit_train_batches=2", "trainer.accelerator=cpu", "optim.lr=0.003", "report.explain=0",
                 "report.bootstrap=100", *settings]) == 0
    with open(out / "logs" / "metrics.csv", newline="") as handle:
        scores = {int(r["epoch"]): float(r["val/balanced_accuracy"]) for r in csv.DictReader(handle)
                  if r.get("val/balanced_accuracy")}
    return scores, json.loads((out / "metrics.json").read_text())


def _cadence_validating(best: int, last: int) -> list[str]:
    """Settings that validate epoch ``best`` (and the last) but skip at least one epoch."""
    if last - best >= 2:
        return [f"val.every_n_epochs={last - best}"]
    if last - best == 1:  # best >= 1 with 6 epochs: start there, skipping the epochs before
        return [f"val.start={best / (last + 1)}"]
    return ["val.every_n_epochs=2"]


@pytest.mark.slow  # two 6-epoch demo fine-tunes (~30-60 s on 2 cores)
def test_a_cheaper_cadence_selects_the_same_best_epoch(demo_cache: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)  # the same arithmetic in both runs
    every, full = _demo_run(tmp_path / "every", demo_cache)
    assert sorted(every) == list(range(EPOCHS))
    best = max(every, key=lambda epoch: (every[epoch], -epoch))  # the first best, as the checkpoint keeps it
    assert Path(full["best_checkpoint"]).name == f"best-epoch{best:02d}.ckpt"
    settings = _cadence_validating(best, EPOCHS - 1)
    fewer, cheap = _demo_run(tmp_path / "fewer", demo_cache, *settings)
    # Only the scheduled epochs were validated, and fewer than all of them.
    assert sorted(fewer) == cheap["validated_epochs"] and best in fewer and len(fewer) < EPOCHS
    assert cheap["cpu_seconds"]["validations"] == len(fewer)
    # The same training: every validated epoch scores as in the run validating every epoch...
    assert all(fewer[epoch] == pytest.approx(every[epoch], abs=1e-6) for epoch in fewer), settings
    # ... so the best validated epoch is the best epoch, and its checkpoint is the one tested.
    assert Path(cheap["best_checkpoint"]).name == f"best-epoch{best:02d}.ckpt"
    assert cheap["best_val_balanced_accuracy"] == pytest.approx(full["best_val_balanced_accuracy"], abs=1e-6)
    assert cheap["balanced_accuracy"] == pytest.approx(full["balanced_accuracy"], abs=1e-6)
    # An epoch that is not validated writes no checkpoint: the last one is the last epoch's.
    assert torch.load(tmp_path / "fewer" / "checkpoints" / "last.ckpt", weights_only=False)["epoch"] == EPOCHS - 1
