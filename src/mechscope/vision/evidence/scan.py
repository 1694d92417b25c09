"""One pass over a dataset for dataset examples and activation statistics together, resumable, saved to a store.

``scan`` runs the model once per batch (one ``capture``, stopped at the deepest requested layer) and feeds the
same activations to three streaming accumulators, each of constant size in the dataset's length:

* dataset examples (``vision/examples.py``): per channel the top-k / bottom-k items and positions;
* activation statistics (``vision/stats.py``): per channel moments, firing, min/max, histogram;
* a random sample of ``sample`` items (the same for every layer: the items with the smallest seeded hash of
  their dataset index, so the sample does not depend on batching or interruption) with every channel's spatial
  maximum and its position, from which ``scan_store.save_scan`` draws each unit's quilt (``vision/quilt.py``).

``ScanState`` holds all three and the scan's progress; with ``checkpoint=path`` it is saved (one ``.npz``,
atomically) every ``every`` batches, and a later call with the same ``checkpoint`` continues where it stopped
(``dataset.batches(batch_size, start=state.next_start)``), giving the same result as an uninterrupted scan.
Files the dataset could not read (``dataset.skipped``) are collected in ``state.skipped``.

``scan_store.save_scan`` writes a state into a store (``mechscope.store``): per unit its top/bottom rows with receptive-field
crops, its statistics, and for the units in ``plot_units`` a log-probability plot and a quilt, plus a per-layer
grid of those log-probability plots.

Example::

    >>> import torch
    >>> from torch import nn
    >>> from mechscope.vision.evidence.scan import scan
    >>> class Images:                                       # any object with batches(batch_size, start=)
    ...     def __init__(self, x): self.x = x
    ...     def batches(self, batch_size, start=0):
    ...         for i in range(start, len(self.x), batch_size):
    ...             yield list(range(i, min(i + batch_size, len(self.x)))), self.x[i:i + batch_size]
    >>> model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU())
    >>> state = scan(model, Images(torch.rand(10, 3, 8, 8)), ["0"], k=3, sample=4, batch_size=4, progress=False)
    >>> state.seen, state.examples["0"].top_index.shape, int(state.stats["0"].count[0]), state.sample.values["0"].shape
    (10, torch.Size([2, 3]), 360, torch.Size([4, 2]))
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from mechscope.artefacts import load_npz, save_npz
from mechscope.capture import as_map, capture
from mechscope.devices import autocast, model_device, resolve_device
from mechscope.errors import MechscopeError
from mechscope.units import parse_layers
from mechscope.vision.evidence.examples import _update as _update_examples
from mechscope.vision.evidence.examples import (
    ExamplesState,
    LayerExamples,
    _batch,
    _check_order,
    _extremes,
    _positions,
    state_arrays,
    state_from_arrays,
)
from mechscope.vision.evidence.stats import UnitStats, _accumulate, stats_arrays, stats_from_arrays

_FORMAT = 1
QUANTILES = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999)
"""Quantiles written to the store per unit."""

_GOLDEN = 0x9E3779B97F4A7C15


def _keys(index: torch.Tensor, seed: int) -> torch.Tensor:
    """A seeded hash (splitmix64) of each dataset index ``[B]`` -> uniform float64 keys in ``[0, 1)``."""
    z = index.numpy().astype(np.uint64) + np.uint64((seed * _GOLDEN + _GOLDEN) % 2**64)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return torch.from_numpy((z >> np.uint64(11)).astype(np.float64) / 2.0**53)


@dataclass(eq=False)
class Sample:
    """A random sample of ``size`` dataset items with each layer's per-channel spatial max and its position.

    ``index [S]`` (int64, ``-1`` for an empty slot), ``key [S]`` (the hash that chose them, smallest kept),
    ``values[layer] [S, C]`` (float32) and ``pos[layer] [S, C, 2]`` (int64 ``(x, y)``).
    """

    size: int
    seed: int = 0
    index: torch.Tensor = None  # type: ignore[assignment]
    key: torch.Tensor = None  # type: ignore[assignment]
    values: dict[str, torch.Tensor] = field(default_factory=dict)
    pos: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.index is None:
            self.index = torch.full((self.size,), -1, dtype=torch.int64)
            self.key = torch.full((self.size,), float("inf"), dtype=torch.float64)

    def update(self, index: torch.Tensor, maxima: Mapping[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Offer items ``index [B]`` with ``maxima[layer] = (spatial max [C, B], activations [B, C, X, Y])``."""
        keys = torch.cat([self.key, _keys(index, self.seed)])
        order = torch.sort(keys, stable=True).indices[: self.size]  # earlier (smaller) indices first on ties
        self.key, self.index = keys[order], torch.cat([self.index, index])[order]
        new = order >= self.size
        for name, (v, acts) in maxima.items():
            old_v = self.values.get(name, torch.full((self.size, v.shape[0]), float("nan")))
            old_p = self.pos.get(name, torch.full((self.size, v.shape[0], 2), -1, dtype=torch.int64))
            self.values[name] = torch.cat([old_v, v.T])[order]
            pos = old_p[order.clamp(max=self.size - 1)]
            if bool(new.any()):  # positions only for the items that came in
                flat = acts.reshape(acts.shape[0], acts.shape[1], -1)
                pos[new] = _positions(flat, acts.shape[-1], order[new] - self.size, None, True)
            self.pos[name] = pos


@dataclass(eq=False)
class ScanState:
    """Everything a scan keeps: ``examples`` (``ExamplesState``), ``stats`` (``{layer: UnitStats}``), ``sample``,
    the ``layers``, histogram ``bins``, caller ``settings`` (JSON, checked on resume) and ``skipped``
    (``{path: reason}`` of unreadable files)."""

    layers: list[str]
    examples: ExamplesState
    stats: dict[str, UnitStats]
    sample: Sample
    bins: int
    settings: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    seen = property(lambda self: self.examples.seen, doc="Items processed so far.")
    next_start = property(lambda self: self.examples.next_start, doc="Dataset index a resumed scan starts at.")

    def __repr__(self) -> str:
        return f"ScanState(layers={self.layers}, seen={self.seen}, k={self.examples.k}, skipped={len(self.skipped)})"


def save_scan_state(state: ScanState, path: str | os.PathLike) -> Path:
    """Save ``state`` as one ``.npz`` (atomically): a checkpoint is all of it or none of it."""
    s = state.sample
    arrays = {**state_arrays(state.examples, "ex."), **stats_arrays(state.stats, "st."),
              "sa.size": np.array(s.size), "sa.seed": np.array(s.seed), "sa.index": s.index.numpy(),
              "sa.key": s.key.numpy(), "layers": np.array(state.layers, dtype=str), "bins": np.array(state.bins),
              "settings": np.array(json.dumps(state.settings, sort_keys=True)),
              "skipped_paths": np.array(list(state.skipped), dtype=str),
              "skipped_reasons": np.array(list(state.skipped.values()), dtype=str)}
    for i, name in enumerate(state.layers):
        if name in s.values:
            arrays[f"sa.{i}.values"], arrays[f"sa.{i}.pos"] = s.values[name].numpy(), s.pos[name].numpy()
    return save_npz(path, arrays, format=_FORMAT)


def load_scan_state(path: str | os.PathLike) -> ScanState:
    """Read a state written by ``save_scan_state`` (a scan's checkpoint)."""
    def build(data: Mapping[str, np.ndarray]) -> ScanState:
        layers = [str(x) for x in data["layers"]]
        sample = Sample(size=int(data["sa.size"]), seed=int(data["sa.seed"]),
                        index=torch.from_numpy(data["sa.index"].copy()), key=torch.from_numpy(data["sa.key"].copy()))
        for i, name in enumerate(layers):
            if f"sa.{i}.values" in data:
                sample.values[name] = torch.from_numpy(data[f"sa.{i}.values"].copy())
                sample.pos[name] = torch.from_numpy(data[f"sa.{i}.pos"].copy())
        return ScanState(layers=layers, examples=state_from_arrays(data, "ex."), stats=stats_from_arrays(data, "st."),
                         sample=sample, bins=int(data["bins"]), settings=json.loads(str(data["settings"])),
                         skipped=dict(zip(map(str, data["skipped_paths"]), map(str, data["skipped_reasons"]))))

    return load_npz(path, kind="scan checkpoint", writer="scan(..., checkpoint=path)", format=_FORMAT, build=build)


def _names(layers: str | Iterable[str]) -> list[str]:
    return parse_layers(layers, "scan", "it covers every channel of a layer")


def _resume(path: Path, names: list[str], k: int, bins: int, sample: int, seed: int,
            settings: dict[str, Any]) -> ScanState:
    state = load_scan_state(path)
    wanted = {"layers": names, "k": k, "bins": bins, "sample": sample, "seed": seed, **settings}
    found = {"layers": state.layers, "k": state.examples.k, "bins": state.bins, "sample": state.sample.size,
             "seed": state.sample.seed, **state.settings}
    diff = {key: (found.get(key), wanted.get(key)) for key in wanted.keys() | found.keys()
            if found.get(key) != wanted.get(key)}
    if diff:
        said = "; ".join(f"{key}: checkpoint {a!r}, now {b!r}" for key, (a, b) in sorted(diff.items()))
        raise MechscopeError(f"the checkpoint {str(path)!r} is of a different scan ({said}); rerun with the same "
                             "settings to continue it, or delete it (or pass resume=False) to start afresh")
    return state


def scan(
    model: nn.Module,
    dataset: Any,
    layers: str | Iterable[str],
    *,
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
    checkpoint: str | os.PathLike | None = None,
    every: int = 20,
    resume: bool = True,
    settings: Mapping[str, Any] | None = None,
) -> ScanState:
    """Dataset examples, activation statistics and a random sample of ``layers``, from one forward per batch.

    Args:
        model: any ``nn.Module``; run in eval mode (restored after) under ``torch.no_grad``, stopped after the
            deepest requested layer.
        dataset: an object with ``batches(batch_size, start=)`` yielding ``(indices, images [B, 3, H, W])`` with
            strictly increasing dataset indices (``ImageFolder``, ``ShapesDataset``) and optionally ``skipped``
            (``[(path, reason)]``) and ``len``.
        layers: layer names; outputs ``[B, C, x, y]`` or ``[B, C]``.
        k: top/bottom examples kept per channel.  bins, value_range, margin: histograms, as ``activation_stats``.
        sample: size of the random sample (quilts); seed: its hash seed.
        device: where the model runs (the model is moved there, in place, when it lives elsewhere); default: the
            model's device.  The accumulators (top-k, statistics in float64, the sample) stay on the CPU.
        amp: the forward pass in bfloat16 autocast on CUDA (``devices.autocast``; nothing on the CPU); the
            activations are cast to float32 before anything accumulates them, so only the forward is rounded
            (to ~3 significant digits: near-ties in the top-k can swap).
        checkpoint: ``.npz`` path of the checkpoint, written every ``every`` batches and at the end.  If it
            exists and ``resume``, the scan continues it (its settings must match, else ``MechscopeError``).
        settings: JSON-able facts about the scan (model, weights, dataset) stored in the checkpoint and
            compared on resume.

    Returns:
        ``ScanState``.
    """
    names = _names(layers)
    for name, value in (("k", k), ("bins", bins), ("sample", sample), ("batch_size", batch_size), ("every", every)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise MechscopeError(f"{name} must be a positive int, got {value!r}")
    settings = json.loads(json.dumps(dict(settings or {}), sort_keys=True))  # as it reads back from a checkpoint
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and resume and path.exists():
        state = _resume(path, names, k, bins, sample, seed, settings)
    else:
        state = ScanState(layers=names, examples=ExamplesState(k=k), stats={}, sample=Sample(sample, seed), bins=bins,
                          settings=settings)
    device = _place(model, device)
    ranges: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    try:
        total = len(dataset)
    except TypeError:
        total = None
    bar = tqdm(total=total, initial=state.seen, desc="scan", unit="img", disable=not progress)
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    count = 0
    try:
        with torch.no_grad():
            for item in dataset.batches(batch_size, start=state.next_start):
                index, images = _batch(item)
                if len(index) == 0:
                    continue
                _check_order(index, state.examples.last_index)
                with autocast(device, amp):
                    acts = capture(model, images.to(device), names)
                if amp:   # accumulate float32 (statistics: float64) values, not bfloat16 ones
                    acts = {name: a.float() for name, a in acts.items()}
                _update(state, acts, index, ranges, value_range, margin)
                del item, images, acts  # free this batch's tensors before the next forward allocates its own
                bar.update(len(index))
                count += 1
                if path is not None and count % every == 0:
                    _note_skipped(state, dataset)
                    save_scan_state(state, path)
        if total is not None and bar.n < total:
            bar.update(total - bar.n)  # the files skipped as unreadable: the scan is complete
    finally:
        bar.close()
        for module, mode in modes:
            module.training = mode
    _note_skipped(state, dataset)
    if path is not None:
        save_scan_state(state, path)
    return state


def _place(model: nn.Module, device: str | torch.device | None) -> torch.device:
    """The device a scan runs on: ``device`` (the model moved there when it lives elsewhere), else the model's."""
    if device is None:
        return model_device(model)
    device = resolve_device(device)
    if model_device(model, default=None) not in (None, device):
        model.to(device)
    return device


def _update(state: ScanState, acts: Mapping[str, torch.Tensor], index: torch.Tensor, ranges: dict,
            value_range: Any, margin: float) -> None:
    """Merge one batch's activations (``{layer: [B, C, ...]}``) of items ``index [B]`` into every accumulator."""
    maxima = {}
    ex = state.examples
    for name in state.layers:
        raw = acts[name]
        _accumulate(state.stats, ranges, name, raw, bins=state.bins, value_range=value_range, margin=margin)
        a = as_map(raw.detach(), name, "scan")
        layer = ex.layers.get(name) or LayerExamples.empty(a.shape[1], ex.k)
        if layer.channels != a.shape[1]:
            raise MechscopeError(f"layer {name!r} has {a.shape[1]} channels; the checkpoint has {layer.channels}")
        top_v = _extremes(a, True)
        ex.layers[name] = _update_examples(layer, a, index, (top_v, _extremes(a, False)))
        maxima[name] = (top_v, a)
    state.sample.update(index, maxima)
    ex.seen += len(index)
    ex.last_index = int(index[-1])


def _note_skipped(state: ScanState, dataset: Any) -> None:
    for p, reason in getattr(dataset, "skipped", None) or []:
        state.skipped[str(p)] = reason


def skipped_summary(skipped: Mapping[str, str]) -> dict[str, int]:
    """``{reason kind: count}`` of skipped files (the kind is the text before the first ``:``)."""
    out: dict[str, int] = {}
    for reason in skipped.values():
        kind = reason.split(":", 1)[0]
        out[kind] = out.get(kind, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


__all__ = ["scan", "ScanState", "Sample", "save_scan_state", "load_scan_state", "skipped_summary", "QUANTILES"]
