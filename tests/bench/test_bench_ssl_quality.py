"""bench.ssl_quality's folders per seed and its rows (the runs themselves need HAM10000 and CPU hours)."""

from __future__ import annotations

from pathlib import Path

from bench.probes.ssl_quality import _row, _seeded


def test_seed_zero_keeps_the_plain_folder_and_others_get_a_suffix() -> None:
    assert _seeded(Path("runs/ssl/ham64_simclr_2ep"), 0) == Path("runs/ssl/ham64_simclr_2ep")
    assert _seeded(Path("runs/ssl/ham64_simclr_2ep"), 2) == Path("runs/ssl/ham64_simclr_2ep_seed2")


def test_row_gives_mean_and_t_interval_over_seeds_and_no_interval_for_one_seed() -> None:
    per_seed = [{"knn": {"balanced_accuracy": v}, "linear": {"balanced_accuracy": 0.5}} for v in (0.1, 0.2, 0.3)]
    name, n, knn, linear, steps = _row("simclr", per_seed, 108)
    # mean 0.2, sd 0.1, half-width t(0.975, 2) * 0.1 / sqrt(3) = 0.248
    assert (name, n, steps) == ("simclr", 3, 108)
    assert knn == "0.200 [-0.048, 0.448]" and linear == "0.500 [0.500, 0.500]"
    assert _row("random", per_seed[:1], "-")[2] == "0.100"
