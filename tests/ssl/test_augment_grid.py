"""ssl.augment_grid: views of both augmentation paths in one figure."""

from __future__ import annotations

import numpy as np

from ssl.augment_grid import draw_views, grid_image


def test_both_paths_draw_different_views_of_each_image_into_one_grid() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(2, 24, 24, 3), dtype=np.uint8)
    worker, device = draw_views(images, n_views=3, image_size=24, seed=0)
    assert worker.shape == device.shape == (2, 3, 24, 24, 3) and worker.dtype == device.dtype == np.uint8
    for views in (worker, device):
        assert not np.array_equal(views[0, 0], views[0, 1])  # random views, not copies
    grid = np.array(grid_image(images, worker, device, gap=2))
    assert grid.shape[1] == 7 * 24 + 6 * 2 + 2 * 2  # original + 3 + 3 views, gaps, a wider gap per block
    assert np.array_equal(grid[-24:, :24], images[1])  # the last row starts with its original
