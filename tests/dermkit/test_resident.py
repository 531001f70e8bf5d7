"""dermkit.data.resident: the same batches as the cached-image loaders for a seed, the same augmentation,
evaluation batches normalised as eval_transform does, and the memory check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, WeightedRandomSampler
from torchvision.transforms import v2

from dermkit.augment import ViewAugment, ViewSpec, normalize
from dermkit.config import DataConfig
from dermkit.data.datasets import CachedImageDataset
from dermkit.data.prepare import PreparedData, prepare_data
from dermkit.data.resident import (CachedArraySource, NormalizedBatches, ResidentDataset, ResidentImages, ResidentLoader,
                                   ResidentOnDevice, check_fits, resident_loader)
from dermkit.errors import DermkitError

SIZE = 32
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def prepared(demo_cache: Path) -> PreparedData:
    return prepare_data(DataConfig(name="demo", image_size=SIZE, cache_dir=str(demo_cache)))


@pytest.fixture(scope="module")
def store(prepared: PreparedData) -> ResidentImages:
    return ResidentImages.load([CachedArraySource(prepared.cache_path, prepared.labels)])


def epochs_of(loader: DataLoader, epochs: int = 2) -> list[tuple[torch.Tensor, ...]]:
    return [batch for _ in range(epochs) for batch in loader]


@pytest.mark.parametrize("workers", [0, 2])
def test_same_batches_as_the_cached_loader_for_a_seed(prepared: PreparedData, store: ResidentImages,
                                                      workers: int) -> None:
    """Shuffled with a seeded generator, two epochs: the same images, labels and rows, batch for batch, as
    the device path's loader (persistent workers, as the stages build it, or none)."""
    rows = prepared.indices("train")
    cached = DataLoader(CachedImageDataset(prepared.cache_path, rows, prepared.labels), batch_size=16, shuffle=True,
                        generator=torch.Generator().manual_seed(3), num_workers=workers,
                        persistent_workers=workers > 0)
    resident = resident_loader(ResidentDataset(store, store.rows(0, rows), ids=rows), 16, shuffle=True,
                               generator=torch.Generator().manual_seed(3), persistent=workers > 0)
    expected, got = epochs_of(cached), epochs_of(resident)
    assert len(got) == len(expected) == 2 * -(-len(rows) // 16)
    first_epoch_rows = []
    for (images, labels), (r_images, r_labels, r_ids) in zip(expected, got):
        assert r_images.dtype == torch.uint8 and torch.equal(r_images, images)  # (B, 3, S, S)
        assert torch.equal(r_labels, labels)
        assert torch.equal(torch.as_tensor(prepared.labels)[r_ids], labels)  # ids are the prepared data's rows
        first_epoch_rows += r_ids.tolist()
    assert sorted(first_epoch_rows[:len(rows)]) == sorted(rows.tolist())  # an epoch is every row once
    assert first_epoch_rows[:len(rows)] != first_epoch_rows[len(rows):]  # and the next epoch another order


def test_same_batches_with_the_class_balanced_sampler(prepared: PreparedData, store: ResidentImages) -> None:
    rows = prepared.indices("train")
    weights = 1.0 / np.bincount(prepared.labels[rows])[prepared.labels[rows]]

    def sampler() -> WeightedRandomSampler:
        return WeightedRandomSampler(torch.as_tensor(weights), 64, generator=torch.Generator().manual_seed(5))

    cached = DataLoader(CachedImageDataset(prepared.cache_path, rows, prepared.labels), batch_size=16,
                        sampler=sampler())
    resident = resident_loader(ResidentDataset(store, store.rows(0, rows)), 16, sampler=sampler())
    for (images, labels), (r_images, r_labels) in zip(epochs_of(cached), epochs_of(resident), strict=True):
        assert torch.equal(r_images, images) and torch.equal(r_labels, labels)


def test_same_augmentation_as_the_device_path(prepared: PreparedData, store: ResidentImages) -> None:
    """The augmentation is the device path's ViewAugment on the same uint8 batch: the same views for the
    same random state, hence the same distribution."""
    rows = prepared.indices("train")[:24]
    augment = ViewAugment(ViewSpec(size=SIZE, crop_scale=(0.5, 1.0), hflip_prob=0.5, vflip_prob=0.5,
                                   rotation_prob=0.5, rotation_degrees=30.0, cj_prob=1.0, brightness=0.2,
                                   contrast=0.2, saturation=0.2, mean=MEAN, std=STD))
    cached_batch, _ = next(iter(DataLoader(CachedImageDataset(prepared.cache_path, rows, prepared.labels),
                                           batch_size=24)))
    resident_batch, _ = next(iter(resident_loader(ResidentDataset(store, store.rows(0, rows)), 24)))
    torch.manual_seed(11)
    expected = augment(cached_batch)
    torch.manual_seed(11)
    got = augment(resident_batch)
    assert got.dtype == torch.float32 and torch.equal(got, expected)


def test_evaluation_batches_are_normalised_as_eval_transform_does(prepared: PreparedData,
                                                                  store: ResidentImages) -> None:
    rows = prepared.indices("val")[:20]
    eval_transform = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(MEAN),
                                                                                                list(STD))])
    expected, labels = next(iter(DataLoader(CachedImageDataset(prepared.cache_path, rows, prepared.labels,
                                                               eval_transform), batch_size=20)))
    batches = NormalizedBatches(resident_loader(ResidentDataset(store, store.rows(0, rows)), 20), MEAN, STD)
    assert len(batches) == 1
    images, got_labels = next(iter(batches))
    assert torch.equal(images, expected) and torch.equal(got_labels, labels)
    assert torch.equal(normalize(store.images[store.rows(0, rows)], MEAN, STD), expected)


def test_under_ddp_each_process_draws_its_share(prepared: PreparedData, store: ResidentImages) -> None:
    """What Lightning does to a training loader under DDP (a DistributedSampler in a re-made loader of the same
    class and arguments): each process gets a disjoint half of the rows, gathered as whole resident batches."""
    from pytorch_lightning.utilities.data import _update_dataloader
    from torch.utils.data import DistributedSampler

    rows = prepared.indices("train")
    loader = resident_loader(ResidentDataset(store, store.rows(0, rows), ids=rows), 16, shuffle=True)
    seen = []
    for rank in (0, 1):
        sampler = DistributedSampler(loader.dataset, num_replicas=2, rank=rank, shuffle=True, seed=0, drop_last=True)
        per_rank = _update_dataloader(loader, sampler)
        assert isinstance(per_rank, ResidentLoader) and per_rank.num_workers == 0
        seen.append([i for _, _, ids in per_rank for i in ids.tolist()])
    assert not set(seen[0]) & set(seen[1]) and len(seen[0]) == len(seen[1]) == len(rows) // 2


def test_a_second_source_follows_the_first(prepared: PreparedData) -> None:
    both = ResidentImages.load([CachedArraySource(prepared.cache_path, prepared.labels),
                                CachedArraySource(prepared.cache_path, np.full(len(prepared.labels), 6))])
    n = len(prepared.labels)
    assert both.offsets == [0, n] and both.images.shape == (2 * n, 3, SIZE, SIZE)
    assert both.images.is_contiguous() and both.images.dtype == torch.uint8
    assert torch.equal(both.images[both.rows(1, np.array([4]))], both.images[[4]])
    images, labels = ResidentDataset(both, both.rows(1, np.array([2, 4]))).__getitems__([1, 0])
    assert labels.tolist() == [6, 6] and torch.equal(images, both.images[[4, 2]])


def test_the_memory_check_refuses_an_array_that_does_not_fit_in_one_line() -> None:
    check_fits(100 * 2**20, 300 * 2**20, "cuda:0", "10,015 images of 64 px")  # fits: nothing happens
    check_fits(100 * 2**20, None, "mps", "images")  # free memory unknown: accepted
    with pytest.raises(DermkitError) as error:
        check_fits(490 * 2**20, 600 * 2**20, "cuda:0", "10,015 images of 128 px")
    message = str(error.value)
    assert "\n" not in message
    assert "490 MiB" in message and "600 MiB free" in message and "cuda:0" in message
    assert "data.augment_on=device" in message  # the fallback


def test_loading_refuses_images_larger_than_the_available_memory(prepared: PreparedData,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("dermkit.data.resident.free_memory", lambda device: 2**20)  # 1 MiB free
    with pytest.raises(DermkitError, match=r"resident: .* MiB on the host \(RAM\), which has 1 MiB free.*"
                                           r"data.augment_on=device"):
        ResidentImages.load([CachedArraySource(prepared.cache_path, prepared.labels)])


def test_the_callback_moves_the_images_to_the_trainers_device(store: ResidentImages) -> None:
    class Strategy:
        root_device = torch.device("cpu")

    class Trainer:
        strategy = Strategy()

    ResidentOnDevice(store).setup(Trainer(), None, "fit")  # type: ignore[arg-type]
    assert store.device == torch.device("cpu")


@pytest.mark.gpu
def test_on_a_gpu_batches_are_gathered_there(store: ResidentImages, prepared: PreparedData) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    gpu = ResidentImages(store.images.clone(), store.labels.clone(), store.offsets)
    gpu.to("cuda")
    rows = prepared.indices("train")[:8]
    images, labels = ResidentDataset(gpu, gpu.rows(0, rows)).__getitems__(list(range(8)))
    assert images.is_cuda and labels.is_cuda
    assert torch.equal(images.cpu(), store.images[rows])
