"""Device, dtype and mode helpers shared by every compute entry point: CUDA when available, else CPU.

Example::

    >>> import torch
    >>> from torch import nn
    >>> from mechscope.devices import eval_mode, placement
    >>> net = nn.Sequential(nn.Dropout(), nn.Linear(2, 2)).train()
    >>> with eval_mode(net):
    ...     net[0].training
    False
    >>> net[0].training, placement(net)["dtype"]
    (True, torch.float32)
    >>> from mechscope.devices import model_device
    >>> model_device(net), model_device(nn.ReLU()), model_device(nn.ReLU(), default=None)
    (device(type='cpu'), device(type='cpu'), None)
"""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import chain
from pathlib import Path
from typing import Any

import torch
from torch import nn


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` -> ``cuda`` when available, else ``cpu``; anything else is passed to ``torch.device``."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Every module in eval mode for the duration; each module's own flag restored afterwards (a model left
    half in train mode stays so)."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def _first_floating(model: nn.Module) -> torch.Tensor | None:
    return next((t for t in chain(model.parameters(), model.buffers()) if t.is_floating_point()), None)


def placement(model: nn.Module) -> dict[str, Any]:
    """``device`` and ``dtype`` of the model's first floating tensor (CPU float32 for a model with none)."""
    t = _first_floating(model)
    if t is not None:
        return {"device": t.device, "dtype": t.dtype}
    return {"device": torch.device("cpu"), "dtype": torch.float32}


def model_device(model: nn.Module, default: str | torch.device | None = "cpu") -> torch.device | None:
    """The device of the model's first floating parameter or buffer; ``default`` (as a ``torch.device``, or
    ``None``) for a model with none.  The one place that asks a model where it lives."""
    t = _first_floating(model)
    if t is not None:
        return t.device
    return None if default is None else torch.device(default)


def machine_info() -> dict:
    """Where a result was measured: CPU model, logical cores, torch's intra-op threads and the versions (the
    reproduce report and the benchmarks record it).

    >>> sorted(machine_info())
    ['cores', 'cpu', 'platform', 'python', 'threads', 'torch']
    """
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform(terse=True)}
