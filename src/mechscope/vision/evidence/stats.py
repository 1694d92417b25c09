"""Streaming per-unit activation statistics over a dataset: moments, firing rate, histograms, sigma units.

``activation_stats`` runs a model over a stream of batches and keeps, for every channel of every requested layer,
the count, mean and standard deviation (Welford/Chan merges of per-batch moments in float64, so the result does
not depend on how the data is batched beyond rounding), the fraction of values ``> 0`` ("fraction firing"),
the minimum and maximum, and a fixed-bin histogram.  Pass pre-ReLU layers (``"mixed3b_pre_relu"``) to see the
whole distribution of a unit; after a ReLU the histogram is a spike at zero plus the positive part.

Samples: dim 1 of a layer's output is the channel and every other position counts as a sample, so a layer
``[batch, C, H, W]`` contributes ``batch * H * W`` values per channel (every spatial position of every image)
and a layer ``[batch, C]`` contributes ``batch``.

Histograms: each channel has ``bins`` equal bins over ``[low, high]`` (the last bin includes ``high``).  By
default the range is fixed from the first batch: its per-channel min and max widened by ``margin`` times their
span on each side.  Later values outside the range are counted in ``underflow`` / ``overflow`` (``min``/``max``
stay exact; a ``nan`` counts as overflow and makes the moments ``nan``).  Give ``value_range`` to fix the range yourself, e.g. to merge the stats of two runs
(``value_range={k: s.value_range for k, s in previous.items()}``).  Quantiles are read off the histogram
(linear within a bin; the underflow/overflow counts are spread over ``[min, low]`` / ``[high, max]``).

Speed: each batch is worked on a few channels at a time in cache-sized, preallocated buffers.  float32 (and
lower) activations take a float32 path without boolean masks whose moments are corrected in float64 and whose
under/overflow counts are exact; only the bin of a value within float32 rounding of a bin edge may differ from
the float64 path that float64 activations take (``vision/scan.py`` runs this beside the dataset examples at
~0.9x the plain forward's throughput, ``benchmarks/examples_scan.py``).

``UnitStats.sigma(channel, value)`` expresses an activation in standard deviations of the dataset distribution,
as the Circuits papers do; ``log_prob_plot`` draws the Curve Detectors paper's log probability density plot.

Example::

    >>> import torch
    >>> from torch import nn
    >>> from mechscope.vision.evidence.stats import activation_stats
    >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    >>> batches = [torch.rand(2, 3, 8, 8) for _ in range(3)]
    >>> s = activation_stats(model, batches, ["0"], bins=32, progress=False)["0"]
    >>> s.channels, int(s.count[0]), s.hist.shape        # 3 batches x 2 images x 6 x 6 positions
    (4, 216, (4, 32))
    >>> round(s.sigma(0, s.mean[0] + 2 * s.std[0]), 6)  # an activation 2 std above the mean is 2 sigma
    2.0
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from mechscope.artefacts import load_npz, save_npz
from mechscope.capture import capture
from mechscope.devices import model_device, resolve_device
from mechscope.errors import MechscopeError, unknown_name
from mechscope.units import parse_layers
from mechscope.vision.evidence.stats_kernels import batch_arrays

_ARRAYS = ("count", "mean", "m2", "positive", "min", "max", "low", "high", "hist", "underflow", "overflow")
_COUNTS = ("count", "positive", "hist", "underflow", "overflow")  # int64 arrays; merge adds them
_FORMAT = 1


@dataclass(frozen=True, eq=False)
class UnitStats:
    """Statistics of every channel of one layer; each array is indexed by channel (``[C]``, ``hist`` ``[C, bins]``).

    ``count`` values per channel, ``mean``, ``m2`` (sum of squared deviations from the mean), ``positive``
    (values ``> 0``), ``min``, ``max``; histogram ``hist`` over ``[low, high]`` with ``underflow`` (values
    ``< low``) and ``overflow`` (values ``> high``).  Arrays are read-only.
    """

    layer: str
    count: np.ndarray
    mean: np.ndarray
    m2: np.ndarray
    positive: np.ndarray
    min: np.ndarray
    max: np.ndarray
    low: np.ndarray
    high: np.ndarray
    hist: np.ndarray
    underflow: np.ndarray
    overflow: np.ndarray

    def __post_init__(self) -> None:
        for name in _ARRAYS:
            array = np.array(getattr(self, name), dtype=np.int64 if name in _COUNTS else np.float64)  # own copy
            array.setflags(write=False)
            object.__setattr__(self, name, array)

    def __repr__(self) -> str:
        n = int(self.count[0]) if self.channels else 0
        return f"UnitStats(layer={self.layer!r}, channels={self.channels}, count={n}, bins={self.bins})"

    channels = property(lambda self: int(self.mean.shape[0]), doc="Number of channels ``C``.")
    bins = property(lambda self: int(self.hist.shape[1]), doc="Number of histogram bins per channel.")

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation ``[C]`` (``ddof=0``, as ``numpy.std``)."""
        return np.sqrt(self.m2 / np.maximum(self.count, 1))

    @property
    def fraction_firing(self) -> np.ndarray:
        """Fraction of values ``> 0`` per channel ``[C]``."""
        return self.positive / np.maximum(self.count, 1)

    @property
    def bin_width(self) -> np.ndarray:
        """Width of the histogram bins per channel ``[C]``."""
        return (self.high - self.low) / self.bins

    @property
    def value_range(self) -> tuple[np.ndarray, np.ndarray]:
        """``(low, high)`` per channel; pass it back as ``value_range`` to get stats that merge with these."""
        return self.low, self.high

    def bin_edges(self, channel: int) -> np.ndarray:
        """Histogram bin edges ``[bins + 1]`` of one channel."""
        c = self._check_channel(channel)
        return np.linspace(self.low[c], self.high[c], self.bins + 1)

    def merge(self, other: UnitStats) -> UnitStats:
        """The stats of both datasets together: exact for count, mean, std, firing, min/max and histogram.

        Both must come from the same layer with the same bins and ranges (see ``value_range``).
        """
        if other.layer != self.layer or other.channels != self.channels:
            raise MechscopeError(
                f"cannot merge stats of {other.layer!r} ({other.channels} channels) into {self.layer!r} "
                f"({self.channels} channels): merge stats of the same layer"
            )
        same_bins = np.array_equal(self.low, other.low) and np.array_equal(self.high, other.high)
        if other.bins != self.bins or not same_bins:
            raise MechscopeError(
                f"cannot merge stats of {self.layer!r} with different histogram bins or ranges; compute the second "
                "with bins=first.bins and value_range=first.value_range"
            )
        n_a, n = self.count.astype(np.float64), (self.count + other.count).astype(np.float64)
        frac_b = np.divide(n - n_a, n, out=np.zeros_like(n), where=n > 0)  # Chan et al.'s parallel update
        delta = other.mean - self.mean
        return UnitStats(
            layer=self.layer, mean=self.mean + delta * frac_b, m2=self.m2 + other.m2 + delta**2 * n_a * frac_b,
            min=np.minimum(self.min, other.min), max=np.maximum(self.max, other.max), low=self.low, high=self.high,
            **{k: getattr(self, k) + getattr(other, k) for k in _COUNTS},
        )

    def quantile(self, q: float | Iterable[float], channel: int | None = None) -> np.ndarray:
        """Quantiles estimated from the histogram: ``[C]`` (or a scalar with ``channel``) per ``q`` in ``[0, 1]``.

        Several ``q`` give a leading axis: ``[len(q), C]`` (``[len(q)]`` with ``channel``).  Accurate to about
        one bin width inside ``[low, high]``; outside it, underflow/overflow are spread evenly over
        ``[min, low]`` and ``[high, max]``.
        """
        qs = np.asarray(q, dtype=np.float64)
        if np.any((qs < 0) | (qs > 1)) or np.any(np.isnan(qs)):
            raise MechscopeError(f"quantiles must lie in [0, 1], got {q!r}")
        chans = range(self.channels) if channel is None else [self._check_channel(channel)]
        out = np.empty(qs.shape + (len(chans),))
        for j, c in enumerate(chans):
            outer = [min(self.min[c], self.low[c])], [max(self.max[c], self.high[c])]
            edges = np.concatenate((outer[0], self.bin_edges(c), outer[1]))
            counts = np.concatenate(([self.underflow[c]], self.hist[c], [self.overflow[c]])).astype(np.float64)
            cum = np.cumsum(counts)
            target = qs * cum[-1]
            # the bin holding rank `target`: the first whose cumulative count reaches it (q = 0: first non-empty)
            k = np.where(target > 0, np.searchsorted(cum, target, side="left"), np.searchsorted(cum, 0, side="right"))
            k = np.minimum(k, len(counts) - 1)
            before = cum[k] - counts[k]
            frac = np.divide(target - before, counts[k], out=np.zeros_like(target), where=counts[k] > 0)
            values = edges[k] + np.clip(frac, 0, 1) * (edges[k + 1] - edges[k])
            out[..., j] = np.clip(values, self.min[c], self.max[c])
        return out[..., 0] if channel is not None else out

    def sigma(self, channel: int, value: Any) -> Any:
        """``(value - mean) / std`` of ``channel``: an activation in standard deviations of the dataset distribution.

        ``value`` may be a number, an array or a tensor (the result has its type).  A constant channel
        (``std == 0``) gives ``±inf`` (``nan`` at the mean).
        """
        c = self._check_channel(channel)
        mean, std = float(self.mean[c]), float(self.std[c])
        if isinstance(value, torch.Tensor):
            return (value - mean) / std if std > 0 else (value - mean) / torch.tensor(0.0, dtype=value.dtype)
        with np.errstate(divide="ignore", invalid="ignore"):
            result = (np.asarray(value, dtype=np.float64) - mean) / np.float64(std)
        return float(result) if np.ndim(result) == 0 else result

    def density(self, channel: int) -> tuple[np.ndarray, np.ndarray]:
        """``(bin centres [bins], probability density [bins])`` of one channel, normalised by all its values."""
        c = self._check_channel(channel)
        edges = self.bin_edges(c)
        return (edges[:-1] + edges[1:]) / 2, self.hist[c] / (max(int(self.count[c]), 1) * self.bin_width[c])

    def _check_channel(self, channel: int) -> int:
        if not isinstance(channel, (int, np.integer)) or not 0 <= channel < self.channels:
            raise MechscopeError(f"channel {channel!r} is out of range for layer {self.layer!r}, which has "
                                 f"{self.channels} channels (valid: 0..{self.channels - 1})")
        return int(channel)


def _batch_stats(layer: str, acts: torch.Tensor, low: np.ndarray, high: np.ndarray, bins: int) -> UnitStats:
    """Stats of one batch of activations ``[batch, C, ...]`` (``stats_kernels.batch_arrays``)."""
    joined = batch_arrays(acts, low, high, bins)
    b, c = acts.shape[:2]
    n = b * int(np.prod(acts.shape[2:]))
    hist = joined["hist"]
    return UnitStats(
        layer=layer, count=np.full(c, n, dtype=np.int64), mean=joined["mean"], m2=joined["m2"],
        positive=joined["positive"].round().astype(np.int64), min=joined["min"], max=joined["max"], low=low,
        high=high, hist=hist[:, 1:-1], underflow=hist[:, 0], overflow=hist[:, -1],
    )


def _auto_range(acts: torch.Tensor, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``(low, high)`` from a batch: its min/max widened by ``margin`` x span on each side."""
    dims = [0, *range(2, acts.dim())]
    lo = torch.amin(acts.detach(), dim=dims).to("cpu", torch.float64).numpy()
    hi = torch.amax(acts.detach(), dim=dims).to("cpu", torch.float64).numpy()
    span = hi - lo
    span = np.where(span > 0, span, np.maximum(np.abs(lo), 1.0))  # constant channel: a range around it
    return lo - margin * span, hi + margin * span


def _resolve_range(value_range: Any, layer: str, channels: int) -> tuple[np.ndarray, np.ndarray] | None:
    if value_range is None:
        return None
    if isinstance(value_range, Mapping):
        if layer not in value_range:
            return None
        value_range = value_range[layer]
    low, high = (np.broadcast_to(np.asarray(v, dtype=np.float64), (channels,)).copy() for v in value_range)
    if not np.all(high > low):
        raise MechscopeError(f"value_range for {layer!r} must have high > low for every channel")
    return low, high


def _accumulate(total: dict[str, UnitStats], ranges: dict[str, tuple[np.ndarray, np.ndarray]], name: str,
                a: torch.Tensor, *, bins: int, value_range: Any, margin: float) -> None:
    """Merge one batch of layer ``name``'s output ``[batch, C, ...]`` into ``total[name]`` (in place).

    The histogram range of a layer is ``ranges[name]``, else ``total[name]``'s (a resumed scan), else fixed now
    from ``value_range`` or this batch.
    """
    if a.dim() < 2:
        raise MechscopeError(f"layer {name!r} outputs {tuple(a.shape)}; stats need [batch, C, ...]")
    if name not in ranges:
        ranges[name] = (tuple(np.array(v) for v in total[name].value_range) if name in total else
                        _resolve_range(value_range, name, a.shape[1]) or _auto_range(a, margin))
    if ranges[name][0].shape[0] != a.shape[1]:
        raise MechscopeError(f"layer {name!r} changed width to {a.shape[1]} channels")
    batch = _batch_stats(name, a, *ranges[name], bins)
    total[name] = total[name].merge(batch) if name in total else batch


def _images(item: Any) -> torch.Tensor:
    """A batch as yielded by the data: a tensor, ``(images, labels)`` or ``(indices, images)``."""
    if isinstance(item, torch.Tensor):
        return item
    if isinstance(item, (tuple, list)) and len(item) == 2 and any(isinstance(v, torch.Tensor) for v in item):
        return item[0] if isinstance(item[0], torch.Tensor) else item[1]
    raise MechscopeError(
        f"dataset_batches must yield image tensors [batch, 3, H, W], (images, labels) or (indices, images) "
        f"as ImageFolder.batches does; got {type(item).__name__}"
    )


def activation_stats(
    model: nn.Module,
    dataset_batches: Iterable[Any],
    layers: str | Iterable[str],
    *,
    bins: int = 256,
    value_range: tuple[Any, Any] | Mapping[str, tuple[Any, Any]] | None = None,
    margin: float = 0.5,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    progress: bool = True,
) -> dict[str, UnitStats]:
    """Per-channel statistics of ``layers`` of ``model`` over every batch of ``dataset_batches``.

    Args:
        model: any ``nn.Module``; run in eval mode (restored after) under ``torch.no_grad``, and stopped after
            the last requested layer.
        dataset_batches: an iterable of input batches ``[batch, 3, H, W]`` (or ``(images, labels)`` /
            ``(indices, images)`` pairs, e.g. ``ImageFolder.batches(64)``).
        layers: layer names (``"mixed3b_pre_relu"``, a module path, ...); a unit name is refused: stats cover
            every channel of a layer.
        bins: number of histogram bins per channel.
        value_range: histogram range ``(low, high)`` for every layer, or ``{layer: (low, high)}``; ``low`` and
            ``high`` are numbers or per-channel arrays ``[C]``.  Layers without one get a range fixed from the
            first batch (min/max widened by ``margin`` x span on each side).
        device, dtype: where the batches go and as what; default: the model's device, the batches' dtype.
        progress: show a progress bar.

    Returns:
        ``{layer: UnitStats}`` in the order of ``layers``.
    """
    names = parse_layers(layers, "activation_stats",
                         "stats cover every channel of a layer; index the result by channel")
    if not isinstance(bins, int) or bins < 1:
        raise MechscopeError(f"bins must be a positive int, got {bins!r}")
    device = resolve_device(device) if device is not None else model_device(model)
    total: dict[str, UnitStats] = {}
    ranges: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            for item in tqdm(dataset_batches, desc="activation stats", disable=not progress):
                x = _images(item).to(device=device, dtype=dtype)
                acts = capture(model, x, names)
                for name in names:
                    _accumulate(total, ranges, name, acts[name], bins=bins, value_range=value_range, margin=margin)
                del item, x, acts  # free this batch's tensors before the next forward allocates its own
    finally:
        for module, mode in modes:  # restore each module's own mode
            module.training = mode
    if not total:
        raise MechscopeError("dataset_batches yielded no batches; give at least one batch of inputs")
    return {name: total[name] for name in names}


def stats_arrays(stats: Mapping[str, UnitStats], prefix: str = "") -> dict[str, np.ndarray]:
    """``{layer: UnitStats}`` as plain arrays, names prefixed by ``prefix`` (to share one ``.npz``)."""
    arrays: dict[str, np.ndarray] = {prefix + "layers": np.array(list(stats), dtype=str)}
    for i, s in enumerate(stats.values()):
        for name in _ARRAYS:
            arrays[f"{prefix}{i}.{name}"] = getattr(s, name)
    return arrays


def stats_from_arrays(data: Mapping[str, np.ndarray], prefix: str = "") -> dict[str, UnitStats]:
    """The inverse of ``stats_arrays``."""
    return {
        str(layer): UnitStats(layer=str(layer), **{f: data[f"{prefix}{i}.{f}"] for f in _ARRAYS})
        for i, layer in enumerate(data[prefix + "layers"])
    }


def save_stats(stats: Mapping[str, UnitStats], path: str | os.PathLike) -> Path:
    """Save ``{layer: UnitStats}`` to an ``.npz`` file, atomically (temporary file + rename)."""
    return save_npz(path, stats_arrays(stats), format=_FORMAT)


def load_stats(path: str | os.PathLike) -> dict[str, UnitStats]:
    """Read stats written by ``save_stats``."""
    return load_npz(path, kind="stats", writer="save_stats(stats, path)", format=_FORMAT, build=stats_from_arrays)


def log_prob_plot(stats: Mapping[str, UnitStats] | UnitStats, layer: str, channel: int, *, ax: Any = None) -> Any:
    """The Curve Detectors paper's plot: log probability density of one unit's activations, from its histogram.

    One line: bin centres against ``log(density)``; empty bins are gaps (``nan``).  Returns a matplotlib
    ``Figure`` (Agg canvas, never shown); with ``ax`` it draws there and returns that axes' figure.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    curve = log_prob_curve(stats, layer, channel)
    if ax is None:
        fig = Figure(figsize=(5, 3.2))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
    ax.plot(curve.centres, curve.log_density, color="C0", linewidth=1.2)
    ax.set_xlabel(curve.xlabel)
    ax.set_ylabel("log probability density")
    ax.set_title(curve.title, fontsize=9)
    return ax.figure


@dataclass(frozen=True)
class LogProbCurve:
    """What ``log_prob_plot`` draws: bin ``centres [bins]``, ``log_density [bins]`` (``nan`` for empty bins), the
    x-axis label and the title (unit, mean, std, fraction firing)."""

    centres: np.ndarray
    log_density: np.ndarray
    xlabel: str
    title: str


def log_prob_curve(stats: Mapping[str, UnitStats] | UnitStats, layer: str, channel: int) -> LogProbCurve:
    """The data of one unit's log-probability plot (``log_prob_plot`` draws it with matplotlib; the Microscope's
    build draws it with ``mechscope.raster``)."""
    if not isinstance(stats, UnitStats) and layer not in stats:
        raise unknown_name("layer", layer, list(stats), where="these stats")
    s = stats if isinstance(stats, UnitStats) else stats[layer]
    centres, density = s.density(channel)
    with np.errstate(divide="ignore"):
        log_density = np.where(s.hist[channel] > 0, np.log(density), np.nan)
    return LogProbCurve(np.asarray(centres), log_density,
                        "pre-activation value" if "pre_relu" in s.layer else "activation value",
                        f"{s.layer}:{channel}  mean {s.mean[channel]:.3g}  std {s.std[channel]:.3g}  "
                        f"firing {100 * s.fraction_firing[channel]:.1f}%")


__all__ = ["UnitStats", "activation_stats", "save_stats", "load_stats", "log_prob_plot", "log_prob_curve",
           "LogProbCurve"]
