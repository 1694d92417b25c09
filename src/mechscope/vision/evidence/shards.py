"""A dataset scan split into image ranges (shards) that run as tasks on ``compute.engine``, merged exactly.

``sharded_scan(model, dataset, layers, engine=..., shards=n)`` returns the same ``ScanState`` as ``scan`` over the
whole dataset: each shard scans the items with dataset index in ``[start, stop)`` and returns its streaming state
(top/bottom-k examples, statistics, random sample); the driver merges the states in dataset order:

* examples (``merge_examples``): the best ``k`` of both by value, ties broken by the smaller dataset index, so
  the merge is order-independent and equals the single pass (which breaks ties the same way);
* statistics (``UnitStats.merge``): counts, firing, min/max and histograms exactly; mean and standard deviation
  by Chan et al.'s parallel update (exact in exact arithmetic; in float64 they differ from the single pass by
  rounding only: ~1e-15 relative when the shards read the same batches as the single pass, which they do when
  dataset index = position, as in procedural worlds and folders without unreadable files, because shard
  boundaries are multiples of ``batch_size``; otherwise float32 rounding of differently composed batches,
  ~1e-7).  The histogram ranges must be the same in every shard: unless given, the
  driver fixes them from the dataset's first batch, as the single pass does;
* the random sample (``merge_samples``): the ``size`` items with the smallest seeded hash of both.

The model and the dataset travel to the engine's object store once (``shared``); each task is a ``(start, stop)``
pair.  On a Ray cluster every node must be able to read the dataset (procedural worlds always can; a folder of
images must be at the same path on each node).

Example::

    >>> import torch
    >>> from torch import nn
    >>> from mechscope.compute.engine import InProcess
    >>> from mechscope.vision.evidence.scan import scan
    >>> class Images:
    ...     def __init__(self, x): self.x = x
    ...     def __len__(self): return len(self.x)
    ...     def batches(self, batch_size, start=0):
    ...         for i in range(start, len(self.x), batch_size):
    ...             yield list(range(i, min(i + batch_size, len(self.x)))), self.x[i:i + batch_size]
    >>> torch.manual_seed(0) and None
    >>> model, data = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU()), Images(torch.rand(10, 3, 8, 8))
    >>> one = scan(model, data, ["0"], k=3, sample=4, batch_size=4, progress=False)
    >>> split = sharded_scan(model, data, ["0"], engine=InProcess(), shards=3, k=3, sample=4, batch_size=4,
    ...                      progress=False)
    >>> torch.equal(one.examples["0"].top_index, split.examples["0"].top_index), split.seen
    (True, 10)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from mechscope.capture import capture
from mechscope.compute.ranges import shard_ranges
from mechscope.devices import autocast, portable, worker_device
from mechscope.errors import MechscopeError
from mechscope.vision.evidence.examples import _NO_INDEX, ExamplesState, LayerExamples, _batch
from mechscope.vision.evidence.scan import Sample, ScanState, _names, _place, scan
from mechscope.vision.evidence.stats import _auto_range, _resolve_range

__all__ = ["sharded_scan", "shard_ranges", "merge_examples", "merge_layer_examples", "merge_samples",
           "merge_scan_states"]


# ---- exact merges ----------------------------------------------------------------------------------------------


def _best(values: torch.Tensor, index: torch.Tensor, pos: torch.Tensor, k: int, largest: bool
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The best ``k`` of candidates ``[C, n]`` (positions ``[C, n, 2]``): by value, equal values by smaller index,
    empty slots (index ``-1``) after every real item."""
    order = torch.sort(torch.where(index < 0, _NO_INDEX, index), dim=1, stable=True).indices
    by_value = torch.sort(values.gather(1, order), dim=1, descending=largest, stable=True).indices
    order = order.gather(1, by_value)[:, :k]
    return values.gather(1, order), index.gather(1, order), pos.gather(1, order[..., None].expand(-1, -1, 2))


def merge_layer_examples(a: LayerExamples, b: LayerExamples) -> LayerExamples:
    """The top/bottom-k examples of two disjoint sets of items together (``[C, k]`` each), exactly as one scan of
    both would keep them; symmetric in ``a`` and ``b``."""
    if a.top_values.shape != b.top_values.shape:
        raise MechscopeError(f"cannot merge examples of shape {tuple(b.top_values.shape)} into "
                             f"{tuple(a.top_values.shape)}: merge states of the same layer and k")
    k = int(a.top_values.shape[1])
    out = []
    for largest, prefix in ((True, "top"), (False, "bottom")):
        parts = [torch.cat([getattr(a, f"{prefix}_{f}"), getattr(b, f"{prefix}_{f}")], 1)
                 for f in ("values", "index", "pos")]
        out.extend(_best(*parts, k, largest))
    return LayerExamples(*out)


def merge_examples(a: ExamplesState, b: ExamplesState) -> ExamplesState:
    """Two ``ExamplesState`` of disjoint items (e.g. two shards of a scan) as one; ``last_index`` is the larger."""
    if a.k != b.k:
        raise MechscopeError(f"cannot merge dataset examples with k={a.k} and k={b.k}")
    layers = {name: merge_layer_examples(a.layers[name], b.layers[name]) if name in a.layers and name in b.layers
              else (a.layers.get(name) or b.layers[name]) for name in dict.fromkeys([*a.layers, *b.layers])}
    return ExamplesState(k=a.k, layers=layers, seen=a.seen + b.seen, last_index=max(a.last_index, b.last_index))


def merge_samples(a: Sample, b: Sample) -> Sample:
    """The random sample of two disjoint sets of items: the ``size`` with the smallest keys (ties: smaller index)."""
    if (a.size, a.seed) != (b.size, b.seed):
        raise MechscopeError(f"cannot merge samples of size/seed {(b.size, b.seed)} into {(a.size, a.seed)}")
    key, index = torch.cat([a.key, b.key]), torch.cat([a.index, b.index])
    order = torch.from_numpy(np.lexsort((torch.where(index < 0, _NO_INDEX, index).numpy(), key.numpy()))[: a.size])
    out = Sample(a.size, a.seed, index=index[order], key=key[order])
    for name in a.values:
        if name not in b.values:
            raise MechscopeError(f"cannot merge samples: layer {name!r} is in one and not the other")
        out.values[name] = torch.cat([a.values[name], b.values[name]])[order]
        out.pos[name] = torch.cat([a.pos[name], b.pos[name]])[order]
    return out


def merge_scan_states(states: Sequence[ScanState]) -> ScanState:
    """The states of a scan's shards, in dataset order, as the state of one scan over all of them."""
    if not states:
        raise MechscopeError("no scan states to merge")
    total = states[0]
    for s in states[1:]:
        if s.layers != total.layers or s.bins != total.bins:
            raise MechscopeError(f"cannot merge a scan of {s.layers} (bins {s.bins}) into one of {total.layers} "
                                 f"(bins {total.bins})")
        stats = {name: total.stats[name].merge(s.stats[name]) if name in total.stats and name in s.stats
                 else total.stats.get(name) or s.stats[name] for name in dict.fromkeys([*total.stats, *s.stats])}
        total = ScanState(layers=total.layers, examples=merge_examples(total.examples, s.examples), stats=stats,
                          sample=merge_samples(total.sample, s.sample), bins=total.bins, settings=total.settings,
                          skipped={**total.skipped, **s.skipped})
    return total


# ---- the tasks ---------------------------------------------------------------------------------------------------


class _Range:
    """The items of ``dataset`` with index in ``[start, stop)``, read through its ``batches``."""

    def __init__(self, dataset: Any, start: int, stop: int) -> None:
        self.dataset, self.start, self.stop = dataset, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    @property
    def skipped(self) -> list[tuple[str, str]]:
        return list(getattr(self.dataset, "skipped", None) or [])

    def batches(self, batch_size: int, start: int = 0) -> Iterator[tuple[Any, torch.Tensor]]:
        for item in self.dataset.batches(batch_size, start=max(start, self.start)):
            index, images = _batch(item)
            keep = index < self.stop
            if bool(keep.any()):
                yield index[keep].tolist(), images[keep.to(images.device)]
            if not bool(keep.all()):
                return


def _scan_shard(shared: Mapping[str, Any], task: tuple[int, int]) -> ScanState:
    """One shard's scan (a module-level task for ``engine.map``), on this worker's device: the driver's when this
    machine has it (a GPU worker for a ``cuda`` scan), else the CPU (``devices.worker_device``); its state comes
    back on the CPU."""
    options = dict(shared["options"])
    options["device"] = worker_device(options["device"])
    return scan(shared["model"], _Range(shared["dataset"], *task), shared["layers"], progress=False, **options)


def _first_ranges(model: nn.Module, dataset: Any, names: list[str], batch_size: int, device: Any,
                  value_range: Any, margin: float, amp: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each layer's histogram range as the single pass fixes it: given, else from the dataset's first batch."""
    first = next(iter(dataset.batches(batch_size, start=0)), None)
    if first is None:
        raise MechscopeError("the dataset yielded no batches; give it at least one image")
    _, images = _batch(first)
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad(), autocast(device, amp):
            acts = capture(model, images.to(device), names)
        if amp:
            acts = {name: a.float() for name, a in acts.items()}
    finally:
        for module, mode in modes:
            module.training = mode
    return {name: _resolve_range(value_range, name, acts[name].shape[1]) or _auto_range(acts[name], margin)
            for name in names}


def sharded_scan(
    model: nn.Module,
    dataset: Any,
    layers: str | Iterable[str],
    *,
    engine: Any = None,
    shards: int | None = None,
    k: int = 16,
    bins: int = 256,
    sample: int = 64,
    seed: int = 0,
    batch_size: int = 64,
    value_range: Any = None,
    margin: float = 0.5,
    device: str | torch.device | None = None,
    amp: bool = False,
    progress: bool = True,
    settings: Mapping[str, Any] | None = None,
) -> ScanState:
    """``scan`` of ``dataset`` (``len`` and ``batches(batch_size, start=)``) over ``shards`` index ranges run on
    ``engine`` (``compute.engine``; default ``engine(None)``: in-process unless ``RAY_ADDRESS`` is set), merged.

    Args:
        shards: number of image ranges (default: ``2 x engine.workers``, one when the engine has one worker).
        k, bins, sample, seed, batch_size, value_range, margin, device, amp, settings: as ``scan``; a Ray task
            runs on ``device`` when its worker has it, else on the CPU.
        progress: a bar over the shards.

    Returns:
        the ``ScanState`` of one scan over the whole dataset (see the module docstring for what "equal" means).
    """
    from mechscope.compute.engine import engine as make_engine

    names = _names(layers)
    runner = make_engine(None) if engine is None else engine
    try:
        n = len(dataset)
    except TypeError:
        raise MechscopeError("a sharded scan needs a dataset with a length (len(dataset)) to cut into ranges"
                             ) from None
    shards = shards if shards is not None else (1 if runner.workers <= 1 else 2 * runner.workers)
    ranges = shard_ranges(n, shards, align=batch_size)
    if not ranges:
        raise MechscopeError("the dataset is empty; give it at least one image")
    device = _place(model, device)
    fixed = _first_ranges(model, dataset, names, batch_size, device, value_range, margin, amp)
    options = {"k": k, "bins": bins, "sample": sample, "seed": seed, "batch_size": batch_size,
               "value_range": {name: tuple(r.tolist() for r in fixed[name]) for name in names},
               "margin": margin, "device": str(device), "amp": amp, "settings": dict(settings or {})}
    shared = {"model": portable(model, runner.name), "dataset": dataset, "layers": names, "options": options}
    states: list[ScanState | None] = [None] * len(ranges)
    with tqdm(total=n, desc=f"scan ({len(ranges)} shards, {runner.name})", unit="img", disable=not progress) as bar:
        for i, state in runner.map(_scan_shard, ranges, shared=shared):
            states[i] = state
            bar.update(ranges[i][1] - ranges[i][0])
    return merge_scan_states([s for s in states if s is not None])
