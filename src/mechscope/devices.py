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

import contextlib
import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import chain
from pathlib import Path
from typing import Any

import torch
from torch import nn


DEVICE_FORMS = "cpu, cuda, cuda:N (N a GPU index) or mps"


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` -> ``cuda`` when available, else ``cpu``; anything else is passed to ``torch.device``."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def checked_device(device: str | torch.device | None = None) -> torch.device:
    """``resolve_device`` for a device a user named (``--device``): a clear ``MechscopeError`` for a string that
    is no device (naming the valid forms), for ``cuda`` on a machine without CUDA and for a GPU index it lacks,
    before any work starts.

    >>> checked_device("cpu"), checked_device(None).type in ("cpu", "cuda")
    (device(type='cpu'), True)
    >>> checked_device("gpu0")
    Traceback (most recent call last):
    ...
    mechscope.errors.MechscopeError: unknown device 'gpu0'; valid: cpu, cuda, cuda:N (N a GPU index) or mps
    """
    from mechscope.errors import MechscopeError

    if device is None:
        return resolve_device(None)
    try:
        dev = torch.device(device.strip() if isinstance(device, str) else device)
    except (RuntimeError, TypeError, ValueError):
        raise MechscopeError(f"unknown device {device!r}; valid: {DEVICE_FORMS}") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise MechscopeError(f"unknown device {device!r}; valid: {DEVICE_FORMS}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise MechscopeError(f"device {str(dev)!r} asked for, but this machine has no CUDA GPU that torch "
                                 f"{torch.__version__} can use (torch.cuda.is_available() is False); "
                                 "use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise MechscopeError(f"device {str(dev)!r} asked for, but this machine has "
                                 f"{torch.cuda.device_count()} CUDA GPU(s): cuda:0 .. "
                                 f"cuda:{torch.cuda.device_count() - 1}")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise MechscopeError("device 'mps' asked for, but MPS is not available here; use --device cpu")
    return dev


def worker_device(requested: str | torch.device | None) -> torch.device:
    """Where a compute task (possibly on another machine) runs when its driver asked for ``requested``: that
    device when this machine has it (``cuda:N`` falls back to ``cuda`` when this machine has fewer GPUs), else
    the CPU, so a cluster can mix GPU and CPU workers.  ``None``: the CPU.

    >>> worker_device(None), worker_device("cpu")
    (device(type='cpu'), device(type='cpu'))
    """
    if requested is None:
        return torch.device("cpu")
    dev = torch.device(requested)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            return torch.device("cuda")
    return dev


def portable(model: nn.Module, engine_name: str) -> nn.Module:
    """The model as an engine's tasks receive it: itself in this process; for another process (a Ray worker,
    maybe without a GPU), a CPU copy when it lives elsewhere: each task moves it to its own ``worker_device``.

    >>> from torch import nn
    >>> net = nn.Linear(2, 2)
    >>> portable(net, "in-process") is net, portable(net, "ray") is net
    (True, True)
    """
    if engine_name == "in-process" or model_device(model) == torch.device("cpu"):
        return model
    import copy

    return copy.deepcopy(model).to("cpu")


def autocast(device: str | torch.device, amp: bool) -> contextlib.AbstractContextManager:
    """The mixed-precision context of a forward pass: ``torch.autocast`` in bfloat16 when ``amp`` and ``device``
    is CUDA; otherwise nothing (mixed precision is off on the CPU: bfloat16 matmuls there are slower than float32
    on most CPUs and would only cost accuracy).  Callers cast what they accumulate back to float32/float64.

    >>> import torch
    >>> with autocast("cpu", True):
    ...     (torch.ones(2, 2) @ torch.ones(2, 2)).dtype
    torch.float32
    """
    dev = torch.device(device)
    if amp and dev.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


AMP_ON_CPU = "--amp has no effect on the CPU (mixed precision is used on CUDA only); running in float32"


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
