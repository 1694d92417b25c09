"""SAE activation collection fanned out on ``compute.engine``: image ranges of a dataset, each collected by
``sae.capture_activations`` in a task, concatenated on the driver in index order.

``collect_activations(model, layer, dataset, engine=...)`` returns exactly what the single pass
``capture_activations(model, layer, dataset.batches(batch_size), max_rows=max_rows)`` returns: the ranges are cut
at multiples of ``batch_size`` (``compute.ranges.shard_ranges``), so every task runs the very batches the single
pass runs, and the rows are joined in dataset order and cut at ``max_rows``.  Only the images needed for
``max_rows`` rows are read: one item's row count (``[B, d]`` -> 1, ``[B, pos, d]`` -> pos, ``[B, C, H, W]`` ->
``H*W``) is measured first on the driver.  A task runs on the device the driver asked for when its worker has
it, else on the CPU (``devices.worker_device``); its rows come back on the CPU.

Example::

    >>> import torch
    >>> from torch import nn
    >>> from mechscope.compute.engine import InProcess
    >>> class Items:
    ...     def __init__(self, x): self.x = x
    ...     def __len__(self): return len(self.x)
    ...     def batches(self, batch_size, start=0):
    ...         for lo in range(start, len(self.x), batch_size):
    ...             yield list(range(lo, min(lo + batch_size, len(self.x)))), self.x[lo:lo + batch_size]
    >>> net = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    >>> data = Items(torch.randn(10, 4))
    >>> rows = collect_activations(net, "1", data, engine=InProcess(), shards=3, batch_size=2)
    >>> rows.shape, torch.equal(rows, capture_activations(net, "1", data.batches(2)))
    (torch.Size([10, 3]), True)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from mechscope.capture import capture
from mechscope.compute.ranges import shard_ranges
from mechscope.devices import model_device, portable, worker_device
from mechscope.errors import MechscopeError
from mechscope.dictionary.sae import capture_activations

__all__ = ["collect_activations"]


def _inputs(item: Any) -> Any:
    return item[-1] if isinstance(item, (tuple, list)) else item


def _range_batches(dataset: Any, batch_size: int, start: int, stop: int) -> Iterator[Any]:
    """``dataset.batches(batch_size, start=start)`` cut off before item ``stop`` (batches counted by length)."""
    at = start
    for item in dataset.batches(batch_size, start=start):
        x = _inputs(item)
        if at + len(x) <= stop:
            yield item
        else:
            yield x[: stop - at]
            return
        at += len(x)
        if at >= stop:
            return


def _collect(shared: dict[str, Any], task: tuple[int, int]) -> torch.Tensor:
    """One task of ``engine.map``: the rows of items ``[start, stop)``, on the CPU."""
    model = shared["model"]
    device = worker_device(shared["device"])
    if model_device(model, default=None) not in (None, device):
        model.to(device)
    start, stop = task
    rows = capture_activations(model, shared["layer"], _range_batches(shared["dataset"], shared["batch_size"],
                                                                        start, stop), max_rows=shared["max_rows"])
    return rows.cpu()


@torch.no_grad()
def _rows_per_item(model: nn.Module, layer: str, dataset: Any) -> int:
    first = next(iter(dataset.batches(1, start=0)), None)
    if first is None:
        raise MechscopeError("collect_activations: the dataset yielded no batches; give it at least one item")
    x = _inputs(first)[:1]
    device = model_device(model, default=None)
    act = capture(model, x.to(device) if device is not None else x, [layer])[layer][:1]
    width = act.shape[1] if act.dim() == 4 else act.shape[-1]    # [1, C, H, W] -> H*W rows; [1, pos, d] -> pos
    return max(1, act.numel() // max(1, width))


def collect_activations(model: nn.Module, layer: str, dataset: Any, *, engine: Any = None, shards: int | None = None,
                        batch_size: int = 64, max_rows: int = 100_000) -> torch.Tensor:
    """``layer``'s activations over ``dataset`` as ``[N, d]`` rows to train an SAE on, collected on ``engine``.

    Args:
        model: any ``nn.Module`` in eval mode; on a Ray engine it travels once, as a CPU copy.
        layer: a layer name ``capture`` understands.
        dataset: ``len(dataset)`` items read by ``dataset.batches(batch_size, start=)`` (tensors or
            ``(indices, inputs)`` pairs, as the dataset loaders yield).
        engine: ``compute.engine`` (default ``engine(None)``: in this process unless ``RAY_ADDRESS`` is set).
        shards: image ranges (default: ``2 x engine.workers``, one when the engine has one worker).
        batch_size, max_rows: as the single pass ``capture_activations(model, layer, dataset.batches(batch_size),
            max_rows=max_rows)``.

    Returns:
        ``[min(N, max_rows), d]`` on the CPU, equal to the single pass's rows (``N``: rows of the whole dataset).
    """
    from mechscope.compute.engine import engine as make_engine

    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
        raise MechscopeError(f"collect_activations: max_rows must be an integer >= 1, got {max_rows!r}")
    try:
        n = len(dataset)
    except TypeError:
        raise MechscopeError("collect_activations needs a dataset with a length (len(dataset)) to cut into ranges"
                             ) from None
    runner = make_engine(None) if engine is None else engine
    needed = -(-max_rows // _rows_per_item(model, layer, dataset))
    needed = min(n, -(-needed // batch_size) * batch_size)   # whole batches: the very forwards of the single pass
    shards = shards if shards is not None else (1 if runner.workers <= 1 else 2 * runner.workers)
    ranges = shard_ranges(needed, shards, align=batch_size)
    if not ranges:
        raise MechscopeError("collect_activations: the dataset is empty; give it at least one item")
    shared = {"model": portable(model, runner.name), "layer": layer, "dataset": dataset, "batch_size": batch_size,
              "max_rows": max_rows, "device": str(model_device(model))}
    parts: list[torch.Tensor | None] = [None] * len(ranges)
    for i, rows in runner.map(_collect, ranges, shared=shared):
        parts[i] = rows
    return torch.cat([p for p in parts if p is not None])[:max_rows]
