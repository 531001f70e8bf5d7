"""Mixed precision for hand-written loops and for losses: one definition of what ``bf16-mixed`` means.

Lightning wraps a stage's steps in ``torch.autocast`` under ``trainer.precision=bf16-mixed``; the
benchmark scripts' plain loops use :func:`autocast` to compute in the same precision, and every SSL
loss runs through :func:`float32_call`, because bfloat16's 8-bit mantissa resolves a
temperature-scaled similarity near 5 (SimCLR, temperature 0.2) only to about 0.03, and DINO's
sharpened softmax over thousands of prototypes worse.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where it is used: the benchmark parents start without it
    import torch

PRECISIONS = ("32-true", "bf16-mixed")  # the trainer.precision values the benchmark loops reproduce


def cpu_runs_bf16_natively() -> bool:
    """Whether this CPU has bfloat16 instructions (AVX512-BF16 or AMX). Without them bfloat16 autocast is
    slower than float32: oneDNN emulates it with conversions on plain AVX-512 (2x slower, machine J) and
    falls back to reference kernels on AVX2 (24x; docs/benchmarks.md, "Training step"), so oneDNN's own
    ``_is_mkldnn_bf16_supported`` (True on plain AVX-512) is only the answer where torch cannot read the
    instruction flags. True where nothing can tell.
    """
    import torch

    avx512_bf16 = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    if avx512_bf16 is not None and amx is not None:
        return bool(avx512_bf16() or amx())
    check = getattr(getattr(torch.ops, "mkldnn", None), "_is_mkldnn_bf16_supported", None)
    return bool(check()) if check is not None else True


def slow_bf16_warning(precision: str, accelerator: str) -> str:
    """A one-line warning when ``bf16-mixed`` would run on a CPU without bfloat16 instructions, else ``""``."""
    import torch

    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    if precision != "bf16-mixed" or not on_cpu or cpu_runs_bf16_natively():
        return ""
    return ("trainer.precision=bf16-mixed on a CPU without bfloat16 instructions (no AVX512-BF16 or AMX): "
            "2-24x slower than float32 (docs/benchmarks.md, \"Training step\"); "
            "pass trainer.precision=32-true unless a run's key must keep bf16-mixed.")


def autocast(precision: str, device_type: str = "cpu") -> torch.autocast:
    """bfloat16 autocast under ``bf16-mixed``, a disabled one under ``32-true``."""
    import torch

    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")


def float32_call(criterion: Callable[..., torch.Tensor], *outputs: Any, device_type: str = "cpu",
                 **kwargs: Any) -> torch.Tensor:
    """``criterion(*outputs, **kwargs)`` on float32 copies of the outputs, with autocast off.

    Tensors and lists of tensors are cast; other arguments pass as they are.
    """
    import torch

    def to_float(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return value.float()
        if isinstance(value, list):
            return [to_float(v) for v in value]
        return value

    with torch.autocast(device_type, enabled=False):
        return criterion(*map(to_float, outputs), **kwargs)
