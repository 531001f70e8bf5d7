"""dermkit.precision: the benchmark loops' autocast and float32 losses."""

from __future__ import annotations

import torch

from dermkit.precision import autocast, float32_call


def test_autocast_is_bf16_only_under_bf16_mixed() -> None:
    weight = torch.randn(4, 4)
    for precision, dtype in (("bf16-mixed", torch.bfloat16), ("32-true", torch.float32)):
        with autocast(precision):
            assert (weight @ weight).dtype == dtype, precision


def test_float32_call_casts_tensors_and_lists_and_turns_autocast_off() -> None:
    seen: list[object] = []

    def criterion(a: torch.Tensor, parts: list[torch.Tensor], scale: float = 1.0) -> torch.Tensor:
        seen.extend([a.dtype, *(p.dtype for p in parts), torch.is_autocast_enabled("cpu"), scale])
        return (a.sum() + sum(p.sum() for p in parts)) * scale

    half = torch.ones(2, dtype=torch.bfloat16)
    with autocast("bf16-mixed"):
        loss = float32_call(criterion, half, [half, half], scale=2.0)
    assert seen == [torch.float32, torch.float32, torch.float32, False, 2.0] and loss.dtype == torch.float32


def test_bf16_on_a_cpu_without_bfloat16_instructions_warns_and_nothing_else_does(monkeypatch) -> None:
    import dermkit.precision as precision

    monkeypatch.setattr(precision, "cpu_runs_bf16_natively", lambda: False)
    assert "trainer.precision=32-true" in precision.slow_bf16_warning("bf16-mixed", "cpu")
    assert precision.slow_bf16_warning("32-true", "cpu") == ""
    assert precision.slow_bf16_warning("bf16-mixed", "gpu") == ""  # a GPU has its own bf16 units
    monkeypatch.setattr(precision, "cpu_runs_bf16_natively", lambda: True)
    assert precision.slow_bf16_warning("bf16-mixed", "cpu") == ""


def test_only_bfloat16_instructions_count_as_native_not_onednn_emulation(monkeypatch) -> None:
    import dermkit.precision as precision

    # Machine J: plain AVX-512, where oneDNN reports bf16 support by emulating it (2x slower than float32).
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True, raising=False)
    for avx512_bf16, amx, native in ((False, False, False), (True, False, True), (False, True, True)):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v, raising=False)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v, raising=False)
        assert precision.cpu_runs_bf16_natively() is native, (avx512_bf16, amx)
