"""Saving a scan into a store (``mechscope.store``): per unit its top/bottom-k rows with receptive-field crops,
its statistics, and for chosen units a log-probability plot and a quilt, plus a per-layer grid of the plots.

``save_scan(store, state, model, dataset, model_name=, input_size=)`` writes one transaction per layer, PNGs
first (content-addressed), so an interrupted save leaves the index as it was.  Items are read back from the
dataset by index (``dataset[i]``, or ``dataset.sample(indices)`` in batches where the dataset offers it).

Example::

    >>> import tempfile, torch
    >>> from torch import nn
    >>> from mechscope.store import open_store, read_rows
    >>> from mechscope.vision.evidence.scan import scan
    >>> from mechscope.vision.evidence.scan_store import save_scan
    >>> images = torch.rand(6, 3, 8, 8)
    >>> class Data:
    ...     skipped = []
    ...     def __len__(self): return 6
    ...     def __getitem__(self, i): return images[i]
    ...     def batches(self, n, start=0):
    ...         for lo in range(start, 6, n): yield list(range(lo, min(lo + n, 6))), images[lo:lo + n]
    >>> net = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1))
    >>> state = scan(net, Data(), "0", k=2, progress=False)
    >>> with tempfile.TemporaryDirectory() as d, open_store(d) as store:
    ...     written = save_scan(store, state, net, Data(), model_name="toy", input_size=8, plot_units=0,
    ...                         progress=False)
    ...     len(read_rows(store, "examples", model="toy", layer="0"))
    8
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from mechscope import raster
from mechscope.errors import MechscopeError
from mechscope.images import png_bytes
from mechscope.store import Store, delete_rows, put_png, put_rows, transaction
from mechscope.vision.evidence.crops import crops_at
from mechscope.vision.evidence.quilt import quilt
from mechscope.vision.evidence.scan import QUANTILES, ScanState
from mechscope.vision.evidence.stats import UnitStats, log_prob_curve


LAYER_PLOT_UNITS = 16
"""At most this many units in a layer's grid of log-probability plots."""


class _Items:
    """Dataset items by index, each read once per layer: ``dataset[i]`` or, lacking it, ``batches(1, start=i)``."""

    def __init__(self, dataset: Any) -> None:
        self.dataset, self.cache = dataset, {}

    def prefetch(self, indices: Sequence[int], chunk: int = 256) -> None:
        """Read many items at once where the dataset can (``dataset.sample(indices) -> (images, ...)``, as the
        procedural ``ShapesDataset``, whose per-item cost is mostly fixed overhead)."""
        if not hasattr(self.dataset, "sample"):
            return
        missing = sorted({int(i) for i in indices if int(i) >= 0} - set(self.cache))
        for lo in range(0, len(missing), chunk):
            part = missing[lo:lo + chunk]
            images = self.dataset.sample(part)[0]
            self.cache.update(zip(part, images, strict=True))

    def __getitem__(self, i: int) -> torch.Tensor:
        if i not in self.cache:
            if hasattr(self.dataset, "__getitem__"):
                self.cache[i] = self.dataset[i]
            else:
                (got, images), *_ = [next(iter(self.dataset.batches(1, start=i)))]
                if int(got[0]) != i:
                    raise MechscopeError(f"dataset item {i} cannot be read back (got item {got[0]})")
                self.cache[i] = images[0]
        return self.cache[i]


def _log_prob_image(stats: UnitStats, channel: int, size: tuple[int, int] = (400, 250)) -> Image.Image:
    """``log_prob_plot``'s figure drawn with ``mechscope.raster`` (an image, made per unit by the thousand)."""
    curve = log_prob_curve(stats, stats.layer, channel)
    return raster.line_plot(curve.centres, curve.log_density, title=curve.title, xlabel=curve.xlabel,
                            ylabel="log probability density", size=size)


def _log_prob_png(stats: UnitStats, channel: int) -> bytes:
    return raster.png(_log_prob_image(stats, channel))


def _layer_plot(stats: UnitStats, channels: Sequence[int]) -> bytes:
    """The log-probability plots of ``channels`` in a grid of four columns."""
    return raster.png(raster.tile([_log_prob_image(stats, c, (320, 220)) for c in channels],
                                  columns=min(4, len(channels)), gap=10))


def save_scan(
    store: Store,
    state: ScanState,
    model: nn.Module,
    dataset: Any,
    *,
    model_name: str,
    input_size: int | tuple[int, int],
    examples: bool = True,
    stats: bool = True,
    plot_units: int | Sequence[int] | Mapping[str, Sequence[int]] = 4,
    quilt_bins: int = 6,
    quilt_per_bin: int = 8,
    settings: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, int]:
    """Write ``state`` into ``store``, one transaction per layer (the layer's old rows of each kind written are replaced).

    Args:
        store: an open store (``mechscope.store.open_store``).
        state: the result of ``scan``.
        model, dataset: those the state was computed with (for receptive fields and crops; ``dataset[i]`` or
            ``dataset.batches(1, start=i)`` reads item ``i``).
        model_name: the ``model`` key of the rows.
        input_size: ``H`` or ``(H, W)`` of the images.
        examples: write top/bottom rows with receptive-field crop PNGs.
        stats: write per-unit statistics.
        plot_units: figures (a log-probability plot and a quilt per unit, and a per-layer grid of the plots) for
            the first ``plot_units`` channels, or for these channels, or ``{layer: channels}`` per layer (a layer
            not named gets none); ``0`` or ``[]`` for none.  The layer grid shows at most the first
            ``LAYER_PLOT_UNITS`` of them.
        quilt_bins, quilt_per_bin: rows and columns of each quilt.
        settings: extra JSON-able facts stored in the ``layers`` rows.

    Returns:
        rows written per table.
    """
    written = {"layers": 0, "stats": 0, "examples": 0, "figures": 0}
    base = {**state.settings, **dict(settings or {}), "k": state.examples.k, "bins": state.bins,
            "sample": state.sample.size, "seen": state.seen, "skipped": len(state.skipped)}
    for name in tqdm(state.layers, desc="save", disable=not progress):
        if name not in state.stats:
            raise MechscopeError(f"the scan has seen no items of layer {name!r}; nothing to save")
        s, ex, items = state.stats[name], state.examples[name], _Items(dataset)
        if examples:
            items.prefetch(np.concatenate([ex.top_index.reshape(-1), ex.bottom_index.reshape(-1)]).tolist())
        wanted = plot_units.get(name, []) if isinstance(plot_units, Mapping) else plot_units
        if wanted:
            items.prefetch(state.sample.index.tolist())
        key = {"model": model_name, "layer": name}
        rows: dict[str, list[dict[str, Any]]] = {"stats": [], "examples": [], "figures": []}
        if stats:
            qs = s.quantile(QUANTILES)
            for c in range(s.channels):
                rows["stats"].append({**key, "channel": c, "count": int(s.count[c]), "mean": float(s.mean[c]),
                                      "std": float(s.std[c]), "fraction_firing": float(s.fraction_firing[c]),
                                      "min": float(s.min[c]), "max": float(s.max[c]),
                                      "quantiles": {str(q): float(v) for q, v in zip(QUANTILES, qs[:, c])},
                                      "histogram": {"low": float(s.low[c]), "high": float(s.high[c]),
                                                    "underflow": int(s.underflow[c]), "overflow": int(s.overflow[c]),
                                                    "counts": s.hist[c].tolist()}})
        if examples:
            for c in range(ex.channels):
                for which in ("top", "bottom"):
                    index, pos = getattr(ex, f"{which}_index")[c], getattr(ex, f"{which}_pos")[c]
                    values, n = getattr(ex, f"{which}_values")[c], int((index >= 0).sum())
                    if n == 0:
                        continue
                    crops = crops_at(items, index[:n].tolist(), pos[:n].tolist(), model, name, input_size=input_size)
                    for rank in range(n):
                        rows["examples"].append({**key, "channel": c, "which": which, "rank": rank,
                                                 "dataset_index": int(index[rank]), "value": float(values[rank]),
                                                 "x": int(pos[rank, 0]), "y": int(pos[rank, 1]),
                                                 "png": put_png(store, png_bytes(crops[rank]))})
        chosen = list(range(min(wanted, s.channels))) if isinstance(wanted, int) else list(wanted)
        bad = [c for c in chosen if not 0 <= c < s.channels]
        if bad:
            raise MechscopeError(f"plot_units {bad} are out of range for layer {name!r} (valid: 0..{s.channels - 1})")
        have = state.sample.index >= 0
        for c in chosen:
            plot = put_png(store, _log_prob_png(s, c))
            rows["figures"].append({**key, "channel": c, "kind": "log_prob", "png": plot, "settings": {}})
            if bool(have.any()):
                idx, pos = state.sample.index[have], state.sample.pos[name][have, c]
                crops = crops_at(items, idx.tolist(), pos.tolist(), model, name, input_size=input_size)
                image = quilt(crops, state.sample.values[name][have, c], bins=quilt_bins, per_bin=quilt_per_bin)
                rows["figures"].append({**key, "channel": c, "kind": "quilt", "png": put_png(store, png_bytes(image)),
                                        "settings": {"bins": quilt_bins, "per_bin": quilt_per_bin,
                                                     "sample": int(have.sum()), "value": "spatial max"}})
        if chosen:
            shown = chosen[:LAYER_PLOT_UNITS]
            rows["figures"].append({**key, "channel": -1, "kind": "log_prob", "settings": {"channels": shown},
                                    "png": put_png(store, _layer_plot(s, shown))})
        with transaction(store):
            for table, replaced in (("stats", stats), ("examples", examples)):
                if replaced:  # what this call writes replaces the layer's old rows; the rest is kept
                    delete_rows(store, table, **key)
            for kind in ("log_prob", "quilt") if chosen else ():  # only the figure kinds written here
                delete_rows(store, "figures", **key, kind=kind)
            put_rows(store, "layers", [{**key, "channels": s.channels, "settings": base}])
            for table, r in rows.items():
                written[table] += put_rows(store, table, r)
        written["layers"] += 1
    return written


__all__ = ["save_scan"]
