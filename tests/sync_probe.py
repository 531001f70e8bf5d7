"""Find, on a CPU, the operations of a training step that would make the host wait for a GPU.

On a GPU the host queues kernels ahead of the device, unless something needs a value the device has
computed: ``.item()`` / ``float()`` / ``bool()`` of a tensor (``aten._local_scalar_dense``), an output
whose size depends on values (``nonzero``, a boolean-mask index, ``unique``, ``masked_select``), a
comparison to a Python bool (``equal``). A :class:`SyncProbe` callback records every such operation
dispatched during ``fit`` (a ``TorchDispatchMode``), with the stack that called it, and the step it
fell in, so a test on the CPU can say which steps would wait on a GPU and where.

Left out: torch's optimisers read their step counters with ``.item()``, but keep those counters on the
CPU whatever the parameters' device (unless ``capturable`` or ``fused``): no wait for a GPU.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils._python_dispatch import TorchDispatchMode

WAITING_OPS = frozenset({"_local_scalar_dense", "nonzero", "equal", "is_nonzero", "masked_select", "unique",
                         "_unique", "_unique2", "unique_dim", "unique_consecutive"})
CPU_COUNTERS = "torch/optim/"  # frames of torch's optimisers (their step counters live on the CPU)
WRAPPERS = ("torch/_compile.py", "torch/_dynamo/", "torch/utils/_python_dispatch.py")  # frames that only pass calls on


@dataclass
class Wait:
    """One operation that would wait for a GPU: its name and the frames that called it (innermost last)."""

    op: str
    stack: list[str]


def _bool_index(name: str, args: tuple[Any, ...]) -> bool:
    """A boolean-mask index (``index``, ``index_put``): its output size is the mask's count."""
    if not name.startswith(("index", "_index_put")):
        return False
    lists = [a for a in args if isinstance(a, (list, tuple))]
    return any(isinstance(t, torch.Tensor) and t.dtype == torch.bool for items in lists for t in items)


def _from_optimizer(stack: list[str]) -> bool:
    """Whether the innermost frame that does more than pass the call on is torch's optimiser code (its CPU
    step counters). Not any frame: the training step itself runs inside ``optimizer.step(closure)``."""
    callers = [frame for frame in stack if not any(w in frame for w in WRAPPERS)]
    return bool(callers) and CPU_COUNTERS in callers[-1]


class _Recorder(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.waits: list[Wait] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        name = func.overloadpacket.__name__
        if name in WAITING_OPS or _bool_index(name, args):
            stack = traceback.format_stack(limit=25)[:-1]
            if not _from_optimizer(stack):
                self.waits.append(Wait(name if name in WAITING_OPS else f"{name} (boolean mask)", stack))
        return func(*args, **(kwargs or {}))


class SyncProbe(pl.Callback):
    """Records the waiting operations of a ``fit`` and where each training batch ended.

    ``steady_waits(skip_first, skip_last)`` returns those between the ends of training batches, leaving
    out the first ``skip_first`` intervals (first progress-bar read, warm-up) and the last ``skip_last``
    (the epoch's end).
    """

    def __init__(self) -> None:
        self.recorder = _Recorder()
        self.batch_ends: list[int] = []

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.recorder.__enter__()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.batch_ends.append(len(self.recorder.waits))

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.recorder.__exit__(None, None, None)

    def steady_waits(self, skip_first: int = 2, skip_last: int = 1) -> list[Wait]:
        ends = self.batch_ends
        if len(ends) < skip_first + skip_last + 2:
            raise AssertionError(f"only {len(ends)} training batches: too few for a steady state")
        return self.recorder.waits[ends[skip_first]:ends[len(ends) - 1 - skip_last]]


def describe(waits: list[Wait]) -> str:
    """The first waits, each with the innermost frames of its stack outside torch's own (for an assertion
    message)."""
    def frames(stack: list[str]) -> list[str]:
        return [frame for frame in stack if "/torch/" not in frame][-4:]

    return "\n".join(f"{w.op}:\n" + "".join(frames(w.stack)) for w in waits[:3])
