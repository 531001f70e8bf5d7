"""Train a class-conditional diffusion generator: ``python -m synth.train``.

DDPM training (Ho et al., 2020, "Denoising Diffusion Probabilistic Models": a random timestep, a
mean-squared error on the network's output) of a diffusers ``UNet2DModel``, which predicts v (Salimans &
Ho, 2022) by default or the noise with ``model.prediction_type=epsilon``, conditioned on the lesion
class, with labels dropped to a null class for classifier-free guidance (Ho & Salimans, 2022), an
EMA copy of the weights (the one that is saved), and a cosine learning rate with linear warm-up.
Only the training split of the data is used; the split hash and per-class counts are saved with
the model. Re-running with the same ``out_dir`` folder resumes from ``out_dir/checkpoints/last.ckpt``
(settings must match; ``--restart`` starts over: :mod:`dermkit.resume`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DModel
from diffusers.optimization import get_cosine_schedule_with_warmup
from diffusers.training_utils import EMAModel
from pytorch_lightning.utilities import rank_zero_only
from torch.utils.data import DataLoader

from dermkit.config import AdamWOptimConfig, DataConfig, Flag, TrainerConfig, parse_config, to_container
from dermkit.console import console, entry_point
from dermkit.data.datasets import CachedImageDataset
from dermkit.data.prepare import prepare_data
from dermkit.errors import DermkitError, did_you_mean
from dermkit.flags import data_flag, out_flag, root_flag
from dermkit.out_folder import check_out_folder
from dermkit.resume import RESTART_FLAG, resume_checkpoint, runs_dir
from dermkit.runinfo import write_run_info
from dermkit.trainer import build_trainer
from synth.generator import GeneratorInfo, save_generator
from synth.model import PRESETS, get_preset, unet_config

PREDICTION_TYPES: tuple[str, ...] = ("v_prediction", "epsilon")


@dataclass
class DiffusionConfig:
    """The network and the noise process.

    Keys:
        preset: UNet size: ``tiny`` (tests), ``small`` (CPU, 32 px), ``base`` (GPU, 64 px),
            ``large`` (GPU, 128 px).
        label_dropout: probability of replacing a label by the null class (classifier-free guidance).
        num_train_timesteps: diffusion steps T of the DDPM noise schedule.
        beta_schedule: diffusers beta schedule: ``squaredcos_cap_v2`` (cosine, Nichol & Dhariwal
            2021) or ``linear`` (Ho et al. 2020).
        prediction_type: what the network predicts: ``v_prediction`` (Salimans & Ho 2022) or
            ``epsilon`` (the noise, Ho et al. 2020). With epsilon, the image estimate at high noise
            divides the network's error by sqrt(alpha_bar) (~0.03 at the first DDIM step of the cosine
            schedule), so a short training run gets each image's overall colour wrong; v stays
            well-conditioned there.
        flip: random horizontal and vertical flips (dermoscopy has no preferred orientation).
    """

    preset: str = "small"
    label_dropout: float = 0.1
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    prediction_type: str = "v_prediction"
    flip: bool = True


@dataclass
class DiffusionOptimConfig(AdamWOptimConfig):
    """The generator's optimiser (``optim`` of ``synth.train``): AdamW, cosine learning rate with
    linear warm-up, EMA of the weights (the shared keys: :class:`dermkit.config.AdamWOptimConfig`).

    Keys:
        lr: peak learning rate.
        weight_decay: AdamW weight decay.
        warmup_steps: linear warm-up steps of the learning rate.
        ema_decay: maximum EMA decay (EMA warm-up ramps up to it, power 3/4).
        grad_clip: gradient-norm clipping (0 = none).
    """

    lr: float = 5e-4
    weight_decay: float = 0.0
    warmup_steps: int = 200
    ema_decay: float = 0.999
    grad_clip: float = 1.0


@dataclass
class SynthTrainConfig:
    """``python -m synth.train``.

    Keys:
        data: :class:`dermkit.config.DataConfig` (the generator reads ``indices("train",
            data.fraction)`` only; ``data.image_size`` is the generated image size).
        trainer: :class:`dermkit.config.TrainerConfig` (``max_steps`` sets the training length and
            the cosine schedule's length; otherwise ``max_epochs`` does).
        model: :class:`DiffusionConfig`.
        optim: :class:`DiffusionOptimConfig`.
        out_dir: the generator folder (checkpoints, logs and the saved model); empty =
            ``$DERMKIT_RUNS/synth/<model.preset>_<data.name>_<image_size>px`` (``runs/`` when unset), so that
            generators of other data or sizes do not share a folder. Re-running resumes when the
            settings match (:mod:`dermkit.resume`).
        seed: seed of initialisation, noise and data order.
        checkpoint_every_n_steps: optimiser steps between resumable checkpoints.
        restart: start a new run even if ``out_dir`` holds one (its files move to
            ``out_dir/replaced-<time>/``).
    """

    data: DataConfig = field(default_factory=lambda: DataConfig(image_size=32, batch_size=64))
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(max_epochs=-1, max_steps=2000))
    model: DiffusionConfig = field(default_factory=DiffusionConfig)
    optim: DiffusionOptimConfig = field(default_factory=DiffusionOptimConfig)
    out_dir: str = ""
    seed: int = 0
    checkpoint_every_n_steps: int = 200
    restart: bool = False


FLAGS = [
    out_flag("generator folder to write (re-running with the same folder resumes)", command="synth.train"),
    Flag("--preset", "model.preset", f"UNet size: {', '.join(PRESETS)}"),
    data_flag(" (labelled: not folder)"),
    root_flag(),
    Flag("--image-size", "data.image_size", "image side in pixels", int),
    Flag("--steps", "trainer.max_steps", "optimiser steps to train", int),
    Flag("--batch-size", "data.batch_size", "images per batch and device", int),
    Flag("--seed", "seed", "random seed", int),
    RESTART_FLAG,
]


class DiffusionModule(pl.LightningModule):
    """Diffusion training (v- or noise-prediction) of a class-conditional UNet, with an EMA copy.

    Reads the config sections ``model`` (:class:`DiffusionConfig`) and ``optim`` (:class:`DiffusionOptimConfig`).

    Args:
        unet_config: ``UNet2DModel`` keyword arguments (see :func:`synth.model.unet_config`).
        num_classes: real classes C; label C is the null class.
        model_cfg: the ``model`` section.
        optim_cfg: the ``optim`` section.

    The cosine schedule spans the run's optimiser steps as the Trainer counts them
    (``trainer.estimated_stepping_batches``: ``max_steps``, or ``max_epochs`` times the batches of
    one process, which under DDP see 1/world_size of the data each).
    """

    def __init__(self, unet_config: dict[str, Any], num_classes: int, model_cfg: DiffusionConfig,
                 optim_cfg: DiffusionOptimConfig) -> None:
        super().__init__()
        self.unet = UNet2DModel(**unet_config)
        self.num_classes = num_classes
        self.model_cfg = model_cfg
        self.optim_cfg = optim_cfg
        self.noise_scheduler = make_noise_scheduler(model_cfg)
        self.ema = EMAModel(self.unet.parameters(), decay=optim_cfg.ema_decay, use_ema_warmup=True, power=3 / 4,
                            model_cls=UNet2DModel, model_config=self.unet.config)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, labels = batch  # (B, 3, S, S) uint8, (B,) int64
        x0 = images.float() / 127.5 - 1.0  # (B, 3, S, S) in [-1, 1]
        b = x0.shape[0]
        if self.model_cfg.flip:
            hflip = torch.rand(b, 1, 1, 1, device=x0.device) < 0.5
            vflip = torch.rand(b, 1, 1, 1, device=x0.device) < 0.5
            x0 = torch.where(hflip, x0.flip(3), x0)
            x0 = torch.where(vflip, x0.flip(2), x0)
        drop = torch.rand(b, device=labels.device) < self.model_cfg.label_dropout
        labels = torch.where(drop, torch.full_like(labels, self.num_classes), labels)  # (B,), C = null
        noise = torch.randn_like(x0)
        t = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (b,), device=x0.device)
        noisy = self.noise_scheduler.add_noise(x0, noise, t)  # (B, 3, S, S)
        pred = self.unet(noisy, t, class_labels=labels).sample
        if self.noise_scheduler.config.prediction_type == "v_prediction":
            target = self.noise_scheduler.get_velocity(x0, noise, t)  # sqrt(a) * noise - sqrt(1 - a) * x0
        else:
            target = noise
        loss = F.mse_loss(pred.float(), target.float())
        self.log("train/loss", loss, prog_bar=True, on_step=True, batch_size=b)
        self.log("train/lr", self.lr_schedulers().get_last_lr()[0], on_step=True, batch_size=b)
        return loss

    def on_fit_start(self) -> None:
        self.ema.to(self.device)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.ema.step(self.unet.parameters())

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["ema"] = self.ema.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.ema.load_state_dict(checkpoint["ema"])

    def configure_optimizers(self) -> dict[str, Any]:
        opt = torch.optim.AdamW(self.unet.parameters(), lr=self.optim_cfg.lr, weight_decay=self.optim_cfg.weight_decay)
        total = int(self.trainer.estimated_stepping_batches)
        sched = get_cosine_schedule_with_warmup(opt, num_warmup_steps=min(self.optim_cfg.warmup_steps, total),
                                                num_training_steps=total)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def ema_unet(self) -> UNet2DModel:
        """A CPU copy of the UNet holding the EMA weights (what the generator folder stores)."""
        unet = UNet2DModel.from_config(self.unet.config)
        self.ema.copy_to(unet.parameters())
        return unet.cpu().eval()


def make_noise_scheduler(cfg: DiffusionConfig) -> DDPMScheduler:
    """The DDPM forward-noise schedule of training (saved with the model, reused for sampling)."""
    if cfg.beta_schedule not in ("squaredcos_cap_v2", "linear"):
        raise DermkitError(f"model.beta_schedule must be squaredcos_cap_v2 or linear, got {cfg.beta_schedule!r}.")
    if cfg.prediction_type not in PREDICTION_TYPES:
        raise DermkitError(f"model.prediction_type must be one of {', '.join(PREDICTION_TYPES)}, got "
                           f"{cfg.prediction_type!r}.{did_you_mean(cfg.prediction_type, PREDICTION_TYPES)}")
    return DDPMScheduler(num_train_timesteps=cfg.num_train_timesteps, beta_schedule=cfg.beta_schedule,
                         prediction_type=cfg.prediction_type, clip_sample=True)


def generator_info(cfg: SynthTrainConfig, classes: tuple[str, ...], split_hash: str, train_counts: dict[str, int],
                   steps: int) -> GeneratorInfo:
    """What the generator folder of a run of ``cfg`` records, after ``steps`` optimiser steps."""
    return GeneratorInfo(classes=classes, split_hash=split_hash, train_counts=train_counts,
                         image_size=cfg.data.image_size, preset=cfg.model.preset, steps_trained=steps,
                         data=to_container(cfg.data), label_fraction=cfg.data.fraction)


def _write_train_state(out: Path, state: dict[str, Any]) -> None:
    """Record the data and model a new generator run trains on (``train_state.json``)."""
    path = out / "train_state.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state, indent=2) + "\n")


def generator_folder(cfg: SynthTrainConfig) -> Path:
    """``cfg.out_dir``, or where a generator of this preset, data and image size goes when it is empty."""
    if cfg.out_dir:
        return Path(cfg.out_dir)
    return runs_dir() / "synth" / f"{cfg.model.preset}_{cfg.data.name}_{cfg.data.image_size}px"


def train(cfg: SynthTrainConfig) -> Path:
    """Train (or resume) a generator and save it to :func:`generator_folder`; returns the folder."""
    get_preset(cfg.model.preset)
    make_noise_scheduler(cfg.model)  # loud errors for bad schedule keys before the run folder is written
    if not 0.0 <= cfg.model.label_dropout < 1.0:
        raise DermkitError(f"model.label_dropout must be in [0, 1), got {cfg.model.label_dropout}.")
    if cfg.trainer.max_steps < 1 and cfg.trainer.max_epochs < 1:
        raise DermkitError("Set trainer.max_steps (or --steps) or trainer.max_epochs to a positive length.")
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    prepared = prepare_data(cfg.data)
    if not prepared.classes:
        raise DermkitError(f"Dataset {cfg.data.name!r} has no labels: a class-conditional generator needs "
                           "labeled images.")
    train_idx = prepared.indices("train", cfg.data.fraction)
    counts = {c: int(n) for c, n in prepared.class_counts(train_idx).items()}
    if len(train_idx) == 0:
        raise DermkitError("The training split is empty; check data.val_fraction and data.test_fraction.")
    out = generator_folder(cfg)
    if not cfg.out_dir:  # --out is checked as it is parsed; the default folder here
        check_out_folder(out, "synth.train", "The default generator folder", other="Pass another with --out.")
    state = {"split_hash": prepared.split_hash, "classes": list(prepared.classes), "preset": cfg.model.preset,
             "image_size": cfg.data.image_size, "fraction": cfg.data.fraction,
             "prediction_type": cfg.model.prediction_type}
    # Folders written before model.prediction_type existed trained on the noise (dermkit.resume's
    # LEGACY_DEFAULTS). The generator does not read data.augment_on, so that may differ.
    resume_from = resume_checkpoint(out, cfg, SynthTrainConfig, prepared.split_hash,
                                    unread=frozenset({"data.augment_on"}))
    resuming = resume_from is not None
    # Under DDP every process runs this function; the run's files are written by the first one only.
    if rank_zero_only.rank == 0:
        if not resuming:
            _write_train_state(out, state)
        write_run_info(out, cfg, cfg.seed, {"split_hash": prepared.split_hash, "train_counts": counts,
                                            "label_fraction": cfg.data.fraction}, kind="synth.train")
    dataset = CachedImageDataset(prepared.cache_path, train_idx, prepared.labels)
    loader = DataLoader(dataset, batch_size=cfg.data.batch_size, shuffle=True, num_workers=cfg.data.num_workers,
                        drop_last=len(dataset) >= cfg.data.batch_size, persistent_workers=cfg.data.num_workers > 0)
    ucfg = unet_config(cfg.model.preset, len(prepared.classes), cfg.data.image_size)
    module = DiffusionModule(ucfg, len(prepared.classes), cfg.model, cfg.optim)
    trainer, _ = build_trainer(cfg.trainer, out, every_n_train_steps=cfg.checkpoint_every_n_steps,
                               gradient_clip_val=cfg.optim.grad_clip or None, enable_model_summary=False)
    console.print(f"[bold]synth.train[/]: {cfg.model.preset} UNet, {len(train_idx)} training images "
                  f"({', '.join(f'{c} {n}' for c, n in counts.items())}), split {prepared.split_hash}"
                  + (", resuming" if resuming else ""))
    trainer.fit(module, loader, ckpt_path=str(resume_from) if resuming else None)
    # Every process calls save_checkpoint (it waits for all of them; the first one writes).
    trainer.save_checkpoint(out / "checkpoints" / "last.ckpt")
    if trainer.is_global_zero:
        info = generator_info(cfg, tuple(prepared.classes), prepared.split_hash, counts, int(trainer.global_step))
        save_generator(out, module.ema_unet(), module.noise_scheduler, info)
        console.print(f"Saved generator ({trainer.global_step} steps) to {out}")
    return out


@entry_point
def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(SynthTrainConfig, "python -m synth.train", __doc__.splitlines()[0], argv, FLAGS)
    train(cfg)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
